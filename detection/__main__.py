import sys

from detection.simulate import main

sys.exit(main())

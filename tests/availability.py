"""What a test does when something it needs from outside the project (a binary, kubectl, the reference data)
is missing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """A user's clone may lack it: skip with the reason. CI always has it: there it is a failure."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)

"""The WSGI entry point: ``gunicorn -c app/gunicorn.conf.py app.wsgi:app``."""

from app.factory import create_app

app = create_app()

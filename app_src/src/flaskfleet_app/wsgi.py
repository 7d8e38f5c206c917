"""WSGI entry point for gunicorn: `gunicorn flaskfleet_app.wsgi:app`."""

from flaskfleet_app import create_app

app = create_app()

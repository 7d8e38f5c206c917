"""WSGI entry point of a plain source tree: gunicorn wsgi:app."""

from flask import Flask
from site_app.views import bp

app = Flask(__name__, static_folder="site_app/static")
app.register_blueprint(bp)

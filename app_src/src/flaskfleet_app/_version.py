"""The package version, single-sourced from pyproject.toml via the installed metadata."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flaskfleet-app")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

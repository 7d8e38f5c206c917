#!/usr/bin/env bash
# One clear line when the lab or the tests are started without root.
if [ "$(id -u)" -ne 0 ]; then
  echo "flaskfleet: this needs root (it installs Debian packages and runs the Docker engine): run it as root or with sudo." >&2
  exit 1
fi

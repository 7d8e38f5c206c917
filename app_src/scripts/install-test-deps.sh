#!/usr/bin/env bash
# Install the PostgreSQL and Redis server binaries that the app_src test suite starts itself.
# Idempotent: installs only what is missing. The tests never use the Debian-packaged system
# services: they run their own postgres/redis processes on free 127.0.0.1 ports, so any
# system instance that the packages started is stopped here (best effort; no systemd needed).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  # Keep package postinst scripts from starting the system services (policy-rc.d 101 = deny).
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    created_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ "$created_policy" -eq 1 ]; then
    $SUDO rm -f "$policy"
  fi
else
  echo "install-test-deps: postgresql-15 and redis-server already installed"
fi

# Do not leave the packaged services running as the system ones (best effort: this may be a
# container without systemd as PID 1, where these commands fail harmlessly).
for svc in postgresql redis-server; do
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1; then
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  fi
done

/usr/lib/postgresql/15/bin/initdb --version
redis-server --version

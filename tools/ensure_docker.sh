#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's docker.io
# when dockerd is missing and start it when it is not running. Idempotent.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "flaskfleet: the lab needs root (it installs docker.io/debootstrap and runs dockerd); re-run as root or with sudo." >&2
  exit 1
fi

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "flaskfleet: installing ${need_pkgs[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" iptables >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

# Hosts booted with systemd get the packaged unit; others (CI sandboxes,
# containers) get dockerd started in the background with a log file.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl enable --now docker.service
else
  mkdir -p /var/log
  nohup dockerd >/var/log/flaskfleet-dockerd.log 2>&1 &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "flaskfleet: docker engine is up"
    exit 0
  fi
  sleep 1
done
echo "flaskfleet: dockerd did not come up; see /var/log/flaskfleet-dockerd.log" >&2
tail -n 20 /var/log/flaskfleet-dockerd.log >&2 || true
exit 1

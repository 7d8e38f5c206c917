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

# Every lab host runs its own systemd, which takes several inotify instances;
# the kernel default (128 per user) runs out at about a dozen hosts, and a host
# whose systemd cannot start exits at once. Raise the limits if they are lower.
raise_sysctl() {
  local key="$1" want="$2" have
  have="$(sysctl -n "$key" 2>/dev/null || echo 0)"
  if [ "$have" -lt "$want" ]; then
    sysctl -qw "$key=$want" || echo "flaskfleet: could not raise $key to $want (have $have)" >&2
  fi
}
raise_sysctl fs.inotify.max_user_instances 8192
raise_sysctl fs.inotify.max_user_watches 524288

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

#!/bin/sh
# Runs inside the debootstrapped tree (chroot) to finish the image.
set -eu
mirror="$1"

cat > /etc/apt/sources.list <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES

update-ca-certificates >/dev/null

install -m 0644 /tmp/files/proc-sys-rw.service /etc/systemd/system/proc-sys-rw.service
install -m 0644 /tmp/files/ssh-hostkeys.service /etc/systemd/system/ssh-hostkeys.service
ln -sf /etc/systemd/system/proc-sys-rw.service /etc/systemd/system/sysinit.target.wants/proc-sys-rw.service
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf /etc/systemd/system/ssh-hostkeys.service /etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service

# Units that have nothing to do in a container (no consoles, no udev-managed
# devices, no kernel modules); everything else boots as on a VM.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
            systemd-udev-trigger.service systemd-modules-load.service \
            systemd-firstboot.service sys-kernel-config.mount; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done

# Per-host identity is created at first boot, not shared through the image.
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

# Package lists ship with the image so the first converge need not refresh them.
apt-get update -qq
apt-get clean
rm -rf /var/log/*.log /var/cache/debconf/*-old

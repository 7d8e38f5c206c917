#!/usr/bin/env bash
# Build the Debian 12 systemd base image for lab hosts and molecule platforms:
# debootstrap -> tar -> `docker import`. No image registry is involved.
# The image tag carries a hash of this folder, so the image is rebuilt only
# when its recipe changes; `flaskfleet/debian12-systemd:latest` follows it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="flaskfleet/debian12-systemd"
mirror="${FLASKFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

"$here/../ensure_docker.sh"

recipe_hash="$( (cd "$here" && cat build.sh rootfs.sh files/*) | sha256sum | cut -c1-12)"
tag="$repo:$recipe_hash"

if docker image inspect "$tag" >/dev/null 2>&1; then
  docker tag "$tag" "$repo:latest"
  echo "flaskfleet: image $tag is current"
  exit 0
fi

work="$(mktemp -d /var/tmp/flaskfleet-image.XXXXXX)"
trap 'umount -R "$work/rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "flaskfleet: debootstrap bookworm into $work/rootfs (a few minutes)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,openssh-server,ca-certificates,iproute2,procps,less,curl \
  bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# The CA bundle this machine trusts (a TLS-inspecting proxy's CA included)
# goes into the image so apt and pip inside the hosts work as they do here.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
fi
cp -r "$here/files" "$work/files"
chroot_env=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive)
install -m 0755 "$here/rootfs.sh" "$work/rootfs/tmp/rootfs.sh"
cp -r "$here/files" "$work/rootfs/tmp/files"
mount -t proc proc "$work/rootfs/proc"
"${chroot_env[@]}" chroot "$work/rootfs" /tmp/rootfs.sh "$mirror"
umount "$work/rootfs/proc"
rm -rf "$work/rootfs/tmp/rootfs.sh" "$work/rootfs/tmp/files"

echo "flaskfleet: importing $tag"
tar -C "$work/rootfs" --numeric-owner -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  - "$tag" >/dev/null
docker tag "$tag" "$repo:latest"
echo "flaskfleet: built $tag"

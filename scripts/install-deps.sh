#!/bin/sh
# Install everything ramzswap needs to build, test and benchmark, from Debian's archive.
# Safe to run again; does nothing when all packages are present.
set -eu
PKGS="gcc libc6-dev meson ninja-build pkg-config
      nbdkit nbdkit-plugin-dev liblzo2-dev libcap-dev libcap2-bin
      libnbd-dev libnbd-bin libcmocka-dev util-linux perl
      qemu-system-x86 busybox-static nbd-client cpio kmod shellcheck"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages:$missing (run as root, or install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing

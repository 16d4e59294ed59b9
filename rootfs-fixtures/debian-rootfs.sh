#!/bin/sh
# Build a Debian bookworm minbase root filesystem with debootstrap (the base
# layer of the debian fixtures), cleaned the way Docker's official images
# are: no device nodes (the runtime makes /dev), no apt lists or caches.
#
# usage: debian-rootfs.sh OUTDIR [EXTRA_PACKAGES]   (OUTDIR/rootfs is created)
# env:   BERTH_DEBIAN_MIRROR (default http://deb.debian.org/debian)
set -eu

out=${1:?usage: debian-rootfs.sh OUTDIR [EXTRA_PACKAGES]}
include=${2:-}
mirror=${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || {
    echo "debian-rootfs.sh: debootstrap is missing: apt-get install debootstrap" >&2
    exit 1
}

stage="$out/rootfs.tmp.$$"
unmount_below() {
    # debootstrap mounts /proc and /sys inside the target; never rm -rf across them.
    awk -v p="$1" '$2 == p || index($2, p "/") == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" || true; done
}
cleanup() { unmount_below "$stage"; rm -rf "$stage"; }
trap cleanup EXIT
mkdir -p "$out"
rm -rf "$stage"

debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$stage" "$mirror"
unmount_below "$stage"

rm -rf "$stage"/dev/* "$stage"/var/lib/apt/lists/* "$stage"/var/cache/apt/*.bin \
    "$stage"/var/cache/apt/archives/*.deb "$stage"/var/log/apt/* "$stage"/var/log/dpkg.log \
    "$stage"/var/log/bootstrap.log "$stage"/var/cache/ldconfig/aux-cache
mv "$stage" "$out/rootfs"
trap - EXIT

#!/bin/sh
# Build the test fixture images into the cache directory, skipping what is
# already there. Nothing here is committed: every output is rebuilt from
# Debian's packages by these scripts.
#
# usage: rootfs-fixtures/build.sh [busybox|debian|all]   (default: all)
# env:   BERTH_FIXTURES  cache directory (default /var/cache/berth-fixtures)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${BERTH_FIXTURES:-/var/cache/berth-fixtures}
what=${1:-all}

build_busybox() {
    mkdir -p "$cache/busybox"
    if [ ! -d "$cache/busybox/rootfs" ]; then
        echo "fixtures: building busybox rootfs in $cache/busybox/rootfs"
        "$here/busybox-rootfs.sh" "$cache/busybox"
    fi
}

case "$what" in
    busybox) build_busybox ;;
    all) build_busybox ;;
    *) echo "usage: $0 [busybox|debian|all]" >&2; exit 2 ;;
esac

#!/bin/sh
# Build the test fixture images into the cache directory, skipping what is
# already there. Nothing here is committed: every output is rebuilt from
# Debian's packages by these scripts and berth's own archive writers
# (the berth-fixtures binary). Layout: rootfs-fixtures/README.md.
#
# usage: rootfs-fixtures/build.sh [busybox|debian|debian-python|all]
#        (default: busybox and debian; "all" adds debian-python)
# env:   BERTH_FIXTURES       cache directory (default /var/cache/berth-fixtures)
#        BERTH_FIXTURES_BIN   a built berth-fixtures binary (default: cargo run --release)
#        BERTH_DEBIAN_MIRROR  Debian mirror for debootstrap
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${BERTH_FIXTURES:-/var/cache/berth-fixtures}
what=${1:-default}

if [ "$(id -u)" != 0 ]; then
    echo "build.sh: run as root (debootstrap, overlayfs mounts, file ownership)" >&2
    exit 1
fi

fixtures() {
    if [ -n "${BERTH_FIXTURES_BIN:-}" ]; then
        "$BERTH_FIXTURES_BIN" "$@"
    else
        cargo run --quiet --release --manifest-path "$here/../Cargo.toml" -p berth-fixtures -- "$@"
    fi
}

# write_image DIR TAG CONFIG LAYER...: the archives, unless DIR/oci exists.
write_image() {
    dir=$1 tag=$2 config=$3
    shift 3
    if [ -f "$dir/oci/index.json" ]; then
        return
    fi
    echo "fixtures: writing $tag archives in $dir"
    rm -rf "$dir/oci" "$dir/oci-zstd" "$dir/oci-plain" "$dir/oci-archive.tar" "$dir/docker-archive.tar" \
        "$dir/docker-archive-classic.tar" "$dir/config.json" "$dir/image-id" "$dir"/.work-*
    set -- $(for layer in "$@"; do printf -- '--layer %s ' "$layer"; done)
    fixtures image --out "$dir" --tag "$tag" --config "$config" "$@"
}

build_busybox() {
    mkdir -p "$cache/busybox"
    if [ ! -d "$cache/busybox/rootfs" ]; then
        echo "fixtures: building busybox rootfs in $cache/busybox/rootfs"
        "$here/busybox-rootfs.sh" "$cache/busybox"
    fi
    write_image "$cache/busybox" busybox:latest "$here/busybox-config.json" "$cache/busybox/rootfs"
}

# build_debian NAME TAG [EXTRA_PACKAGES]
build_debian() {
    name=$1 tag=$2 include=${3:-}
    dir="$cache/$name"
    mkdir -p "$dir"
    if [ ! -d "$dir/rootfs" ]; then
        echo "fixtures: debootstrap bookworm minbase${include:+ + $include} into $dir/rootfs"
        "$here/debian-rootfs.sh" "$dir" "$include"
    fi
    if [ ! -d "$dir/layers" ]; then
        echo "fixtures: making the upper layers in $dir/layers"
        "$here/debian-layers.sh" "$dir"
    fi
    sed "s/BERTH_FIXTURE=debian/BERTH_FIXTURE=$name/" "$here/debian-config.json" > "$dir/config.in.json"
    write_image "$dir" "$tag" "$dir/config.in.json" \
        "$dir/rootfs" "$dir/layers/1" "$dir/layers/2" "$dir/layers/3"
}

case "$what" in
    busybox) build_busybox ;;
    debian) build_debian debian debian:bookworm ;;
    debian-python) build_debian debian-python debian-python:bookworm python3 ;;
    default) build_busybox; build_debian debian debian:bookworm ;;
    all)
        build_busybox
        build_debian debian debian:bookworm
        build_debian debian-python debian-python:bookworm python3
        ;;
    *) echo "usage: $0 [busybox|debian|debian-python|all]" >&2; exit 2 ;;
esac

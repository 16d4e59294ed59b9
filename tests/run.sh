#!/bin/sh
# The whole test suite, as root: build every binary, build the fixture images
# that are missing (cached in $BERTH_FIXTURES, default /var/cache/berth-fixtures),
# then run every unit and end-to-end test.
#
# usage: tests/run.sh [extra cargo test arguments]
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: the end-to-end tests need root (namespaces, mounts, cgroups): run with sudo" >&2
    exit 1
fi
./build.sh
rootfs-fixtures/build.sh all
cargo test --workspace "$@"

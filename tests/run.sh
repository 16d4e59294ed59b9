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
# Containers' cgroups sit under a /berth parent in every hierarchy, which
# berth keeps between containers (as docker keeps /docker). The parents this
# run made are removed when it ends, passed or failed, if empty; a /berth
# that was there before the run stays.
parents_before=$(ls -d /sys/fs/cgroup/*/berth 2>/dev/null || true)
remove_parents_this_run_made() {
    for dir in /sys/fs/cgroup/*/berth; do
        [ -d "$dir" ] || continue
        printf '%s\n' $parents_before | grep -qx "$dir" && continue
        rmdir "$dir" 2>/dev/null || true
    done
}
trap remove_parents_this_run_made EXIT
./build.sh
rootfs-fixtures/build.sh all
cargo test --workspace "$@"

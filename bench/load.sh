#!/bin/sh
# Benchmark: unpack the debian fixture image with berth and with its peers,
# side by side, in one run. Not a test: it prints numbers, it asserts nothing.
#
#   berth load (OCI gzip)   berth load -i <fixture>/oci: every blob digest and
#                           diff_id verified, layers unpacked in parallel, store commit
#   berth load (docker)     the same from docker-archive.tar (uncompressed layers)
#   tar -xzf per layer      GNU tar (spawning gzip), each layer into a fresh directory
#   pigz -dc | tar -x       the same with parallel gzip decompression
#   umoci unpack            umoci (Debian's package) of the same OCI layout
#
# Each tool runs RUNS times (default 5) into a fresh directory; the median is
# printed with the throughput in MB/s of uncompressed layer data and the
# ratio to `tar -xzf`. Page cache is warm for every tool (the inputs are read
# before timing); `sync` runs between runs, outside the timing.
#
# usage: bench/load.sh [RUNS]        (as root; installs umoci if missing)
# env:   BERTH_FIXTURES, CARGO_TARGET_DIR, BENCH_DIR (scratch, default /var/tmp)
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5}
if [ "$(id -u)" != 0 ]; then
    echo "bench/load.sh: run as root (layer ownership, device nodes)" >&2
    exit 1
fi
for tool in umoci pigz; do
    command -v "$tool" >/dev/null || apt-get install -y -q "$tool" >/dev/null
done

cargo build --release -q -p berth
berth="${CARGO_TARGET_DIR:-$PWD/target}/release/berth"
rootfs-fixtures/build.sh debian >/dev/null
fixture="${BERTH_FIXTURES:-/var/cache/berth-fixtures}/debian"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/berth-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The layer blobs in order, from the manifest (first digest is the config).
index_manifest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$fixture/oci/index.json" | head -1 | cut -d: -f3 | tr -d '"')
layers=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$fixture/oci/blobs/sha256/$index_manifest" | tail -n +2 | cut -d: -f3 | tr -d '"')
layer_count=$(echo "$layers" | wc -l)
uncompressed=0
compressed=0
for digest in $layers; do
    blob="$fixture/oci/blobs/sha256/$digest"
    compressed=$((compressed + $(stat -c %s "$blob")))
    uncompressed=$((uncompressed + $(gzip -dc "$blob" | wc -c)))
done
cat "$fixture"/oci/blobs/sha256/* "$fixture/docker-archive.tar" >/dev/null # warm the page cache

now() { date +%s%N; }

# The tools, as NAME|PREPARE|COMMAND lines. Runs are interleaved (round 1 of
# every tool, then round 2, ...) so background activity on the machine
# weighs on all tools alike.
export BERTH_ROOT="$work/berth/root" BERTH_STATE="$work/berth/state"
tar_layers=""
pigz_layers=""
n=0
for digest in $layers; do
    blob="$fixture/oci/blobs/sha256/$digest"
    tar_layers="$tar_layers mkdir '$work/tar/$n' && tar -xzf '$blob' -C '$work/tar/$n' &&"
    pigz_layers="$pigz_layers mkdir '$work/tar/$n' && pigz -dc '$blob' | tar -x -C '$work/tar/$n' &&"
    n=$((n + 1))
done
tools="berth load (OCI gzip)|rm -rf '$work/berth'|'$berth' load -q -i '$fixture/oci'
berth load (docker archive)|rm -rf '$work/berth'|'$berth' load -q -i '$fixture/docker-archive.tar'
tar -xzf per layer|rm -rf '$work/tar' && mkdir '$work/tar'|$tar_layers true
pigz -dc + tar -x per layer|rm -rf '$work/tar' && mkdir '$work/tar'|$pigz_layers true
umoci unpack|rm -rf '$work/umoci'|umoci unpack --image '$fixture/oci:bookworm' '$work/umoci/bundle'"

times="$work/times"
: > "$times"
round=0
while [ "$round" -lt "$runs" ]; do
    echo "$tools" | while IFS='|' read -r name prepare command; do
        sh -c "$prepare"
        sync
        start=$(now)
        sh -c "$command" >/dev/null
        end=$(now)
        echo "$name|$(( (end - start) / 1000000 ))" >> "$times"
    done
    round=$((round + 1))
done
results=$(echo "$tools" | while IFS='|' read -r name _ _; do
    median=$(awk -F'|' -v n="$name" '$1 == n { print $2 }' "$times" | sort -n |
        awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    echo "$name|$median"
done)

tar_ms=$(echo "$results" | awk -F'|' '$1 == "tar -xzf per layer" { print $2 }')
echo
echo "debian fixture: $layer_count layers, $((uncompressed / 1000000)) MB uncompressed, $((compressed / 1000000)) MB gzip; median of $runs runs; $(nproc) CPUs"
printf '%-30s %10s %10s %12s\n' "tool" "time (s)" "MB/s" "vs tar -xzf"
echo "$results" | while IFS='|' read -r name ms; do
    [ -n "$name" ] || continue
    awk -v n="$name" -v ms="$ms" -v bytes="$uncompressed" -v tar="$tar_ms" 'BEGIN {
        printf "%-30s %10.3f %10.0f %11.2fx\n", n, ms / 1000, bytes / 1e6 / (ms / 1000), tar / ms }'
done
echo "(vs tar -xzf > 1 means faster than tar)"

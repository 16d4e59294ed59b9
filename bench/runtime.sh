#!/bin/bash
# Benchmark: /bin/true in the same busybox bundle, N times, with
# berth-runtime, crun and runc side by side, in two ways:
#   run                   `RUNTIME run ID` (create + start + wait + delete in one process)
#   create+start+delete   three invocations, as conmon/containerd drive a runtime
# plus the floor: `unshare -fpmiu --mount-proc chroot ROOTFS /bin/true`.
# Prints the median of each and the ratios to crun and runc.
#
# usage: bench/runtime.sh [N]        (default 50; needs root, hyperfine, python3)
#
# crun 1.8.1 refuses this project's CI host layout (hybrid cgroups with only
# hugetlb on the cgroup2 mount). If /sys/fs/cgroup/hugetlb does not exist,
# this script binds the hugetlb controller to a v1 hierarchy there for the
# benchmark — it says so — and undoes it on exit. Nothing else of the host
# changes; every container and state directory is temporary.
#
# Environment: BERTH_RUNTIME (default: the release build, built if missing),
# BERTH_FIXTURES (default /var/cache/berth-fixtures).
set -eu

N=${1:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${BERTH_FIXTURES:-/var/cache/berth-fixtures}
rootfs_src="$fixtures/busybox/rootfs"
[ "$(id -u)" = 0 ] || { echo "bench/runtime.sh: run as root (containers need it)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "bench/runtime.sh: install hyperfine" >&2; exit 1; }
[ -d "$rootfs_src" ] || { echo "bench/runtime.sh: $rootfs_src missing: run rootfs-fixtures/build.sh busybox" >&2; exit 1; }

berth=${BERTH_RUNTIME:-}
if [ -z "$berth" ]; then
    target=${CARGO_TARGET_DIR:-$here/target}
    berth="$target/release/berth-runtime"
    if [ ! -x "$berth" ]; then
        echo "building berth-runtime (release)..." >&2
        (cd "$here" && cargo build --release -p berth-runtime >&2)
    fi
fi

work=$(mktemp -d /tmp/berth-bench-runtime.XXXXXX)
source "$(dirname "$0")/host.sh"
cleanup() {
    for rt in berth crun runc; do
        for id in $(ls "$work/state-$rt" 2>/dev/null); do
            "$(runtime_bin $rt)" --root "$work/state-$rt" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    unbind_hugetlb
    rm -rf "$work"
}
runtime_bin() {
    case $1 in berth) echo "$berth" ;; *) command -v "$1" ;; esac
}
trap cleanup EXIT INT TERM

bundle="$work/bundle"
mkdir -p "$bundle"
cp -a "$rootfs_src" "$bundle/rootfs"
"$berth" spec --bundle "$bundle"
python3 - "$bundle/config.json" <<'EOF'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["ociVersion"] = "1.0.2-dev"  # crun 1.8.1 knows no later version
json.dump(c, open(path, "w"), indent=1)
EOF

runtimes="berth"
if command -v crun >/dev/null; then
    if grep -q hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
        bind_hugetlb_to_v1 >&2 || echo "NOTE: could not bind hugetlb; crun may fail on this host" >&2
    fi
    runtimes="$runtimes crun"
fi
command -v runc >/dev/null && runtimes="$runtimes runc"

for rt in $runtimes; do
    mkdir -p "$work/state-$rt"
    bin=$(runtime_bin $rt)
    # A warm-up run that must succeed, so a broken runtime is reported, not timed.
    if ! "$bin" --root "$work/state-$rt" run --bundle "$bundle" warmup >/dev/null 2>"$work/err-$rt"; then
        echo "$rt cannot run the bundle here, leaving it out: $(tail -1 "$work/err-$rt")" >&2
        runtimes=$(echo "$runtimes" | sed "s/\b$rt\b//")
        continue
    fi
    cat > "$work/cycle-$rt.sh" <<EOF
#!/bin/sh
id=c\$\$
"$bin" --root "$work/state-$rt" create --bundle "$bundle" \$id </dev/null >/dev/null 2>&1 || exit 1
"$bin" --root "$work/state-$rt" start \$id || exit 1
"$bin" --root "$work/state-$rt" delete --force \$id
EOF
    chmod +x "$work/cycle-$rt.sh"
done

echo "benchmarking $N runs each: $runtimes (+ unshare floor)" >&2
args=""
for rt in $runtimes; do
    bin=$(runtime_bin $rt)
    hyperfine -N --warmup 3 --runs "$N" --export-json "$work/run-$rt.json" \
        "$bin --root $work/state-$rt run --bundle $bundle r1" >/dev/null 2>&1 \
        || echo "hyperfine failed for $rt run" >&2
    hyperfine -N --warmup 3 --runs "$N" --export-json "$work/cycle-$rt.json" \
        "$work/cycle-$rt.sh" >/dev/null 2>&1 \
        || echo "hyperfine failed for $rt create+start+delete" >&2
done
hyperfine -N --warmup 3 --runs "$N" --export-json "$work/floor.json" \
    "unshare -fpmiu --mount-proc chroot $bundle/rootfs /bin/true" >/dev/null 2>&1

python3 - "$work" $runtimes <<'EOF'
import json, os, sys
work, runtimes = sys.argv[1], sys.argv[2:]
def median_ms(name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return None
    return json.load(open(path))["results"][0]["median"] * 1000
rows = {rt: (median_ms(f"run-{rt}.json"), median_ms(f"cycle-{rt}.json")) for rt in runtimes}
floor = median_ms("floor.json")
print(f"{'runtime':<10} {'run (ms)':>10} {'create+start+delete (ms)':>26}")
for rt, (run, cycle) in rows.items():
    fmt = lambda v: f"{v:.1f}" if v is not None else "-"
    print(f"{rt:<10} {fmt(run):>10} {fmt(cycle):>26}")
print(f"{'floor':<10} {floor:>10.1f}   (unshare -fpmiu --mount-proc chroot)")
berth = rows.get("berth")
for peer in ("crun", "runc"):
    if peer in rows and berth and rows[peer][0]:
        r_run = berth[0] / rows[peer][0]
        r_cyc = berth[1] / rows[peer][1] if rows[peer][1] and berth[1] else float("nan")
        print(f"berth/{peer}: run {r_run:.2f}x, create+start+delete {r_cyc:.2f}x (below 1 = berth faster)")
EOF

#!/bin/bash
# The container lifecycle's speed, side by side in one run (issue 4):
#   1. `run --rm IMAGE /bin/true`: berth, docker, podman, pelagos, and crun
#      running a bundle of the same busybox rootfs (the floor for an engine);
#   2. `stop` of a container that exits on SIGTERM;
#   3. `ps -a` with 100 containers;
#   4. memory of the per-container monitor (berth) vs conmon and containerd-shim.
# Prints medians and ratios to berth. Not a test: nothing here asserts a time.
#
# Everything it starts uses its own state directories under a temporary
# directory and is stopped (by pid) and removed at the end: its own dockerd,
# podman storage, crun state. Missing peers are installed from Debian
# (docker.io, podman, crun, hyperfine) or crates.io (pelagos); a peer that
# cannot run here is reported as such and skipped.
#
# crun 1.8.1 refuses this kind of host's cgroup layout (hugetlb on cgroup2);
# the script binds hugetlb to a v1 hierarchy for the crun and podman runs
# (mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb) and undoes it.
#
# usage: bench/lifecycle.sh            env: RUNS (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
[ "$(id -u)" = 0 ] || { echo "bench/lifecycle.sh: run as root" >&2; exit 1; }

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
results="$work/results.txt"
: > "$results"
pelagos_created=""
pelagos=""
# docker and podman leave iptables chains (DOCKER*, CNI-*), bridges and
# parent cgroups behind: removed at exit when the host had none before.
source bench/host.sh
source bench/peers.sh
note_peer_rules

cleanup() {
    set +e
    stop_dockerd
    remove_podman_state
    if [ -x "${BERTH:-}" ]; then
        "$BERTH" rm -f $("$BERTH" ps -aq 2>/dev/null) >/dev/null 2>&1
        table=$("$BERTH" network inspect -f '{{json .Options}}' bridge 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin).get("berth.nftables.table",""))' 2>/dev/null)
        ip link del "$BERTH_BRIDGE" 2>/dev/null
        [ -n "$table" ] && nft delete table ip "$table" 2>/dev/null
    fi
    remove_peer_rules
    if [ -n "$pelagos_created" ]; then
        "$pelagos" image rm busybox >/dev/null 2>&1
        ip link del pelagos0 2>/dev/null
        rm -rf /var/lib/pelagos /run/pelagos
    fi
    unbind_hugetlb
    [ -n "${state_dir:-}" ] && rm -rf "$state_dir"
    grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
    rm -rf "$work"
}
trap cleanup EXIT

need hyperfine hyperfine
need python3 python3

# -- berth ------------------------------------------------------------------
[ -x target/release/berth ] || ./build.sh --release
rootfs-fixtures/build.sh busybox >/dev/null
archive=${BERTH_FIXTURES:-/var/cache/berth-fixtures}/busybox/docker-archive.tar
rootfs=${BERTH_FIXTURES:-/var/cache/berth-fixtures}/busybox/rootfs
BERTH=$PWD/target/release/berth
# The state directory on tmpfs, as berth's default /run/berth is.
state_dir=/run/berth-bench.$$
export BERTH_ROOT=$work/berth/root BERTH_STATE=$state_dir
# A default network of its own, beside any berth0 of the host.
export BERTH_BRIDGE=btbench$$ BERTH_SUBNET=10.227.251.0/24
"$BERTH" load -i "$archive" >/dev/null

measure() { # measure LABEL COMMAND...
    local label=$1; shift
    local json="$work/$(echo "$label" | tr -c 'a-zA-Z0-9' _).json"
    if hyperfine -N -w 3 -r "$RUNS" --export-json "$json" "$*" >/dev/null 2>&1; then
        echo "$label $(median_ms "$json")" >> "$results"
    else
        echo "$label failed" >> "$results"
    fi
}

# -- peers ------------------------------------------------------------------
# podman gives root containers nofile and nproc limits of 1048576, above this
# kind of host's hard limits (no CAP_SYS_RESOURCE): runc then refuses them.
PODMAN_ULIMITS="--ulimit nofile=1024:1024 --ulimit nproc=4096:4096"

# -- 1. run --rm /bin/true ----------------------------------------------------
echo "1. run --rm busybox /bin/true ($RUNS runs each)"
measure "berth --network none" "$BERTH" run --rm --network none busybox /bin/true
measure "berth (default network)" "$BERTH" run --rm busybox /bin/true

if start_dockerd && docker_cli load -i "$archive" >/dev/null; then
    measure "docker --network none" /usr/bin/docker -H "unix://$work/docker/docker.sock" run --rm --network none busybox /bin/true
    measure "docker (default network)" /usr/bin/docker -H "unix://$work/docker/docker.sock" run --rm busybox /bin/true
else
    echo "docker could-not-start" >> "$results"
fi

bind_hugetlb_to_v1 || echo "note: could not bind hugetlb to v1; crun may refuse this host"
need podman podman
mkdir -p "$work/podman"
if podman_cli load -i "$archive" >/dev/null 2>&1; then
    measure "podman --network none" podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" --cgroup-manager cgroupfs --events-backend file --runtime runc run $PODMAN_ULIMITS --rm --network none busybox /bin/true
    measure "podman (default network)" podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" --cgroup-manager cgroupfs --events-backend file --runtime runc run $PODMAN_ULIMITS --rm busybox /bin/true
else
    echo "podman could-not-load" >> "$results"
fi

if [ -z "${SKIP_PELAGOS:-}" ]; then
    if ! command -v pelagos >/dev/null && [ ! -x "$HOME/.cargo/bin/pelagos" ]; then
        cargo install pelagos >/dev/null 2>&1 || echo "pelagos install-failed" >> "$results"
    fi
    pelagos=$(command -v pelagos || echo "$HOME/.cargo/bin/pelagos")
    if [ -x "$pelagos" ]; then
        # pelagos keeps its store in /var/lib/pelagos and refuses to start
        # until these exist (mode 2775); removed again at exit if we made it.
        [ -d /var/lib/pelagos ] || pelagos_created=1
        for d in "" images layers containers volumes blobs build-cache networks rootfs; do
            mkdir -p "/var/lib/pelagos/$d" && chmod 2775 "/var/lib/pelagos/$d"
        done
        if "$pelagos" image load -i "${archive%/*}/oci-archive.tar" --tag busybox >/dev/null 2>&1; then
            measure "pelagos --network none" "$pelagos" run --rm --network none busybox /bin/true
            # Without pasta installed, pelagos's default network is loopback only.
            measure "pelagos (default network)" "$pelagos" run --rm busybox /bin/true
        else
            echo "pelagos could-not-load-image" >> "$results"
        fi
    fi
fi

need crun crun
bundle="$work/crun-bundle"
mkdir -p "$bundle" && cp -a "$rootfs" "$bundle/rootfs"
(cd "$bundle" && crun spec && python3 - <<'EOF'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open("config.json", "w"))
EOF
)
measure "crun run (bundle)" crun --root "$work/crun-state" run --bundle "$bundle" bench-crun
measure "berth-runtime run (bundle)" "$PWD/target/release/berth-runtime" --root "$work/berth-runtime-state" run --bundle "$bundle" bench-berth

# Back to back (as hyperfine runs them) every run lands within the previous
# run's RCU grace period, which a cgroup v1 move would otherwise wait for
# (docs/runtime.md). A user's start is usually isolated: measure that too.
isolated() { # isolated LABEL COMMAND... -> median ms of RUNS single runs 0.4 s apart
    local label=$1; shift
    local times=() t0 t1
    for _ in $(seq "$RUNS"); do
        sleep 0.4
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1 || { echo "isolated:$label failed" >> "$results"; return; }
        t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000 )))
    done
    echo "isolated:$label $(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}')" >> "$results"
}
echo "1b. the same, isolated starts"
isolated "berth --network none" "$BERTH" run --rm --network none busybox /bin/true
isolated "crun run (bundle)" crun --root "$work/crun-state" run --bundle "$bundle" bench-crun
isolated "berth-runtime run (bundle)" "$PWD/target/release/berth-runtime" --root "$work/berth-runtime-state" run --bundle "$bundle" bench-berth
if [ -x "${pelagos:-}" ] && ! grep -q '^pelagos could' "$results"; then
    isolated "pelagos --network none" "$pelagos" run --rm --network none busybox /bin/true
fi

# -- 2. stop of a container that exits on SIGTERM ------------------------------
stop_median() { # stop_median CLI... -> median ms of `stop` over 10 containers
    local times=()
    for _ in $(seq 10); do
        local id
        id=$("$@" run ${RUN_FLAGS:-} -d busybox sh -c 'trap "exit 0" TERM; while true; do sleep 0.01; done') || { echo failed; return; }
        local t0 t1
        t0=$(date +%s%N); "$@" stop "$id" >/dev/null || { echo failed; return; }; t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000 )))
        "$@" rm -f "$id" >/dev/null 2>&1 || true
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}
echo "2. stop of a SIGTERM-trapping container"
echo "stop:berth $(stop_median "$BERTH")" >> "$results"
[ -n "$dockerd_pid" ] && echo "stop:docker $(stop_median docker_cli)" >> "$results"
# podman's default nofile limit (1048576) is above this host's hard limit.
echo "stop:podman $(RUN_FLAGS="$PODMAN_ULIMITS" stop_median podman_cli)" >> "$results"

# -- 3. ps -a with 100 containers ---------------------------------------------
echo "3. ps -a with 100 containers"
for _ in $(seq 100); do "$BERTH" create busybox true >/dev/null; done
measure "ps:berth" "$BERTH" ps -a
if [ -n "$dockerd_pid" ]; then
    for _ in $(seq 100); do docker_cli create busybox true >/dev/null; done
    measure "ps:docker" /usr/bin/docker -H "unix://$work/docker/docker.sock" ps -a
fi
"$BERTH" rm $("$BERTH" ps -aq) >/dev/null

# -- 4. monitor memory ---------------------------------------------------------
echo "4. memory per running container's monitor"
rss_pss() { # rss_pss PID... -> "avgRSSkB avgPSSkB"
    python3 - "$@" <<'EOF'
import sys
rss = pss = n = 0
for pid in sys.argv[1:]:
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            k, v = line.split(":", 1)
            if k == "Rss": rss += int(v.split()[0])
            if k == "Pss": pss += int(v.split()[0])
        n += 1
    except OSError:
        pass
print("%d %d" % (rss // max(n, 1), pss // max(n, 1)))
EOF
}
for _ in $(seq 10); do "$BERTH" run -d busybox sleep 1000 >/dev/null; done
monitors=$(for id in $("$BERTH" ps -q --no-trunc); do "$BERTH" inspect -f '{{.State.MonitorPid}}' "$id"; done)
echo "mem:berth-monitor $(rss_pss $monitors)" >> "$results"
if [ -n "$dockerd_pid" ]; then
    for _ in $(seq 10); do docker_cli run -d --network none busybox sleep 1000 >/dev/null; done
    echo "mem:containerd-shim $(rss_pss $(pgrep -f containerd-shim-runc-v2))" >> "$results"
fi
for _ in $(seq 10); do podman_cli run $PODMAN_ULIMITS -d --network none busybox sleep 1000 >/dev/null 2>&1 || true; done
echo "mem:conmon $(rss_pss $(pgrep -x conmon))" >> "$results"

# -- report ------------------------------------------------------------------
python3 - "$results" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
def table(prefix, base_label, unit):
    items = []
    for r in rows:
        label = " ".join(r[:-1]) if r[-1].replace(".", "").isdigit() else " ".join(r)
        if prefix and not label.startswith(prefix): continue
        if not prefix and ":" in label: continue
        value = float(r[-1]) if r[-1].replace(".", "").isdigit() else None
        items.append((label.replace(prefix, ""), value))
    base = next((v for l, v in items if l == base_label), None)
    for label, v in items:
        if v is None:
            print(f"  {label}")
        else:
            ratio = f"{v / base:5.2f}x berth" if base else ""
            print(f"  {label:32s} {v:8.1f} {unit}  {ratio}")
print("run --rm /bin/true (median):"); table("", "berth --network none", "ms")
print("the same, isolated starts 0.4 s apart (median):"); table("isolated:", "berth --network none", "ms")
print("stop of a SIGTERM-trapping container (median of 10):"); table("stop:", "berth", "ms")
print("ps -a with 100 containers (median):"); table("ps:", "berth", "ms")
print("memory per container's monitor (average RSS kB, PSS kB):")
for r in rows:
    if r[0].startswith("mem:"):
        print(f"  {r[0][4:]:32s} RSS {r[1]:>6s} kB  PSS {r[2] if len(r) > 2 else '?':>6s} kB")
EOF

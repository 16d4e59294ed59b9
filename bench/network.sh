#!/bin/bash
# Networking speed, side by side in one run (issue 5):
#   1. throughput of a 1 GiB transfer into a container, through a port
#      published on 127.0.0.1 and straight to the container's address, and
#      the ratio published/direct: berth (kernel DNAT, its default), berth
#      with BERTH_USERLAND_PROXY=1, docker (its userland proxy, the default),
#      docker --userland-proxy=false, podman (its default network backend:
#      CNI on Debian 12, netavark where installed);
#   2. start latency, on the default bridge network vs `--network none`, and
#      the difference (what the bridge adds): `run -d` alone, and the whole
#      `run --rm busybox /bin/true` cycle.
# Prints medians and ratios. Not a test: nothing here asserts a time.
#
# Traffic goes only to 127.0.0.1 and to containers on bridges this script's
# engines made on this machine; no container looks anything up or sends
# anything elsewhere. Everything runs in its own state directories under a
# temporary directory and is stopped (by pid) and removed at the end: berth's
# containers, bridge and nftables table, its own dockerd (and docker0),
# podman's storage. docker and podman are installed from Debian when
# missing; an engine that cannot run here is reported and skipped. dockerd
# and podman's CNI plugin leave iptables chains (DOCKER*, CNI-*), bridges
# (docker0, cni-podman0) and parent cgroups behind: the script removes those
# the host did not have before it ran, and give FORWARD its policy back
# (bench/host.sh, bench/peers.sh). The br_netfilter module dockerd loads
# stays loaded.
#
# usage: bench/network.sh      env: RUNS (start latency, default 20),
#                                   TRIES (transfers per target, default 7),
#                                   SIZE_MB (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
TRIES=${TRIES:-7}
SIZE_MB=${SIZE_MB:-1024}
[ "$(id -u)" = 0 ] || { echo "bench/network.sh: run as root" >&2; exit 1; }

work=$(mktemp -d /tmp/berth-netbench.XXXXXX)
results="$work/results.txt"
: > "$results"
berth_bridge=btbench0
berth_table=""
source bench/host.sh
source bench/peers.sh

cleanup() {
    set +e
    stop_dockerd
    remove_podman_state
    if [ -n "${BERTH:-}" ] && [ -x "$BERTH" ]; then
        "$BERTH" rm -f -v $("$BERTH" ps -aq 2>/dev/null) >/dev/null 2>&1
        ip link del "$berth_bridge" 2>/dev/null
        [ -n "$berth_table" ] && nft delete table ip "$berth_table" 2>/dev/null
    fi
    unbind_hugetlb
    remove_peer_rules
    grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
    rm -rf "$work"
}
trap cleanup EXIT
note_peer_rules

need hyperfine hyperfine
need python3 python3
need nft nftables

fixtures=${BERTH_FIXTURES:-/var/cache/berth-fixtures}
rootfs-fixtures/build.sh busybox >/dev/null
rootfs-fixtures/build.sh debian-python >/dev/null
busybox_archive=$fixtures/busybox/docker-archive.tar
python_archive=$fixtures/debian-python/docker-archive.tar

# The sink inside the container: count bytes to EOF, answer with the count.
cat > "$work/sink.py" <<'EOF'
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001))
s.listen(16)
buf = bytearray(1 << 20)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        r = c.recv_into(buf)
        if not r:
            break
        n += r
    c.sendall(str(n).encode())
    c.close()
EOF
sink=$(cat "$work/sink.py")

# The sender on the host: SIZE bytes to each target in turn (direct,
# published, direct, ...: interleaved, so a slow moment of this shared
# machine hits both alike), waiting each time for the sink's count.
# Prints the median Gbit/s of each target.
cat > "$work/send.py" <<'EOF'
import socket, sys, time
size, tries = int(sys.argv[1]), int(sys.argv[2])
targets = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[3:]]
for host, port in targets:  # wait for the sink (a refused connect means not yet)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"nothing listens on {host}:{port}")
            time.sleep(0.05)
chunk = memoryview(bytearray(1 << 20))
rates = {t: [] for t in targets}
for _ in range(tries):
    for target in targets:
        c = socket.create_connection(target)
        t0 = time.monotonic()
        left = size
        while left:
            left -= c.send(chunk[: min(len(chunk), left)])
        c.shutdown(socket.SHUT_WR)
        got = int(c.recv(64))
        t = time.monotonic() - t0
        c.close()
        assert got == size, f"sink counted {got} of {size} bytes"
        rates[target].append(size * 8 / t / 1e9)
print(" ".join("%.3f" % sorted(r)[len(r) // 2] for r in rates.values()))
EOF
size=$((SIZE_MB * 1024 * 1024))

# throughput LABEL DIRECT_IP PUBLISHED_PORT: record the median Gbit/s of
# transfers straight to the container's port 5001 and through 127.0.0.1.
throughput() {
    local rates
    if rates=$(python3 "$work/send.py" "$size" "$TRIES" "$2:5001" "127.0.0.1:$3" 2>"$work/send.err"); then
        set -- "$1" $rates
        echo "tp:$1 direct $2" >> "$results"
        echo "tp:$1 published $3" >> "$results"
    else
        echo "tp:$1 failed: $(tail -1 "$work/send.err")" >> "$results"
    fi
}

# measure KIND LABEL PREPARE COMMAND: the median of COMMAND over RUNS runs,
# PREPARE (not timed) run before each.
measure() {
    local kind=$1 label=$2 prepare=$3; shift 3
    local json="$work/$kind-$(echo "$label" | tr -c 'a-zA-Z0-9' _).json"
    if hyperfine -N -w 3 -r "$RUNS" --prepare "$prepare" --export-json "$json" "$*" >/dev/null 2>&1; then
        echo "$kind:$label $(median_ms "$json")" >> "$results"
    else
        echo "$kind:$label failed" >> "$results"
    fi
}

# start_latency ENGINE CLI...: (a) `run -d` of a sleeping container, every
# container removed before each run (untimed), so no earlier teardown
# competes with it: the start alone; (b) the whole `run --rm /bin/true`
# cycle, back to back, teardown included.
start_latency() {
    local engine=$1; shift
    local cli="$*"
    local clean="sh -c '$cli rm -f \$($cli ps -aq) >/dev/null 2>&1; true'"
    measure start "$engine --network none" "$clean" $cli run -d --network none busybox sleep 1000
    measure start "$engine bridge" "$clean" $cli run -d busybox sleep 1000
    measure cycle "$engine --network none" true $cli run --rm --network none busybox /bin/true
    measure cycle "$engine bridge" true $cli run --rm busybox /bin/true
    sh -c "$clean"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# -- berth -------------------------------------------------------------------
echo "berth..."
./build.sh --release >/dev/null 2>&1
BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
export BERTH_ROOT=$work/berth/root BERTH_STATE=$work/berth/state
export BERTH_BRIDGE=$berth_bridge BERTH_SUBNET=10.231.0.0/24 BERTH_IP_FORWARD=0
"$BERTH" load -i "$busybox_archive" >/dev/null
"$BERTH" load -i "$python_archive" >/dev/null
berth_table=$("$BERTH" network inspect bridge | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Options"]["berth.nftables.table"])')

berth_case() { # berth_case LABEL [ENV=VALUE]
    local label=$1 port
    shift
    port=$(free_port)
    env "$@" "$BERTH" run -d --name sink -u root -p "127.0.0.1:$port:5001" debian-python:bookworm python3 -c "$sink" >/dev/null
    local ip
    ip=$("$BERTH" inspect -f '{{.NetworkSettings.IPAddress}}' sink)
    throughput "$label" "$ip" "$port"
    "$BERTH" rm -f sink >/dev/null
}
berth_case "berth"
berth_case "berth userland-proxy" BERTH_USERLAND_PROXY=1
start_latency berth "$BERTH"
unset BERTH_ROOT BERTH_STATE BERTH_BRIDGE BERTH_SUBNET BERTH_IP_FORWARD

# -- podman ------------------------------------------------------------------
echo "podman..."
need podman podman
bind_hugetlb_to_v1 || echo "note: could not bind hugetlb to v1; podman may refuse this host"
mkdir -p "$work/podman"
if podman_cli load -i "$busybox_archive" >/dev/null 2>&1 && podman_cli load -i "$python_archive" >/dev/null 2>&1; then
    port=$(free_port)
    if podman_cli run -d --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --name sink -u root -p "127.0.0.1:$port:5001" debian-python:bookworm python3 -c "$sink" >/dev/null 2>"$work/podman.err"; then
        ip=$(podman_cli inspect -f '{{.NetworkSettings.IPAddress}}' sink)
        throughput podman "$ip" "$port"
        podman_cli rm -f sink >/dev/null 2>&1
    else
        echo "tp:podman failed: $(tail -1 "$work/podman.err")" >> "$results"
    fi
    P="podman --root $work/podman/root --runroot $work/podman/run --tmpdir $work/podman/tmp --cgroup-manager cgroupfs --events-backend file --runtime ${PODMAN_RUNTIME:-runc}"
    # (podman's default ulimits exceed this host's hard limits; root here
    # lacks CAP_SYS_RESOURCE, so its runc could not raise them.)
    cat > "$work/podman-run" <<EOS
#!/bin/sh
if [ "\$1" = run ]; then shift; exec $P run --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "\$@"; fi
exec $P "\$@"
EOS
    chmod +x "$work/podman-run"
    start_latency podman "$work/podman-run"
else
    echo "tp:podman could-not-load-images" >> "$results"
fi

# -- docker ------------------------------------------------------------------
echo "docker..."
docker_case() { # docker_case LABEL
    local port ip
    port=$(free_port)
    if ! docker_cli run -d --name sink -u root -p "127.0.0.1:$port:5001" debian-python:bookworm python3 -c "$sink" >/dev/null 2>"$work/docker.err"; then
        echo "tp:$1 failed: $(tail -1 "$work/docker.err")" >> "$results"
        return
    fi
    ip=$(docker_cli inspect -f '{{.NetworkSettings.IPAddress}}' sink)
    throughput "$1" "$ip" "$port"
    docker_cli rm -f sink >/dev/null
}
if start_dockerd; then
    docker_cli load -i "$busybox_archive" >/dev/null
    docker_cli load -i "$python_archive" >/dev/null
    docker_case "docker"
    D="/usr/bin/docker -H unix://$work/docker/docker.sock"
    start_latency docker $D
    stop_dockerd
    if start_dockerd --userland-proxy=false; then
        docker_case "docker no-userland-proxy"
        stop_dockerd
    fi
else
    echo "tp:docker could-not-start: $(tail -2 "$work/docker/log" | tr '\n' ' ')" >> "$results"
    stop_dockerd
fi

# -- report ------------------------------------------------------------------
python3 - "$results" "$SIZE_MB" <<'EOF'
import sys
rows = [l.rstrip("\n") for l in open(sys.argv[1])]
def value(text):
    try:
        return float(text)
    except ValueError:
        return None
tp, start, cycle, notes = {}, {}, {}, []
for row in rows:
    kind, _, body = row.partition(":")
    label, _, last = body.rpartition(" ")
    v = value(last)
    if v is None or kind not in ("tp", "start", "cycle"):
        notes.append(row)
    else:
        {"tp": tp, "start": start, "cycle": cycle}[kind][label] = v
# Throughput: each engine's published and direct, and the ratio.
print(f"1. throughput of a {sys.argv[2]} MiB transfer into a container (median Gbit/s)")
engines = []
for label in tp:
    name = label.rsplit(" ", 1)[0]
    if name not in engines:
        engines.append(name)
print(f"  {'engine':28s} {'direct':>8s} {'published':>10s} {'published/direct':>17s}")
for e in engines:
    d, p = tp.get(e + " direct"), tp.get(e + " published")
    ratio = f"{p / d:17.2f}" if d and p else f"{'-':>17s}"
    print(f"  {e:28s} {d or 0:8.2f} {p or 0:10.2f} {ratio}")
def latency(title, data):
    print(title)
    pairs = {}
    for label, v in data.items():
        engine, _, mode = label.partition(" ")
        pairs.setdefault(engine, {})[mode] = v
    print(f"  {'engine':10s} {'--network none':>15s} {'bridge':>10s} {'bridge adds':>12s}")
    for engine, modes in pairs.items():
        none, bridge = modes.get("--network none"), modes.get("bridge")
        adds = f"{bridge - none:10.1f}ms" if none is not None and bridge is not None else "-"
        print(f"  {engine:10s} {none or 0:13.1f}ms {bridge or 0:8.1f}ms {adds:>12s}")
latency("2. start: run -d busybox sleep (median ms; nothing else running)", start)
latency("3. cycle: run --rm busybox /bin/true, back to back (median ms; teardown included)", cycle)
for n in notes:
    print("  note:", n)
EOF

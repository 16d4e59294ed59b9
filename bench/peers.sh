# How the benchmarks drive their peers (docker, podman) and hyperfine.
# Sourced by bench/lifecycle.sh and bench/network.sh (bash), after they set
# $work, the temporary directory everything here keeps its state in.
#
# - need COMMAND PACKAGE installs a missing tool from Debian;
# - docker_cli / podman_cli talk to the bench's own dockerd and podman
#   storage under $work, never the host's;
# - start_dockerd [FLAGS] starts that dockerd (pid in $dockerd_pid) and
#   waits until it answers; stop_dockerd removes its containers, stops it by
#   pid and removes the docker0 bridge if the host did not have one before;
# - remove_podman_state undoes what podman made (containers, storage, its
#   parent cgroups, its bridge if new);
# - median_ms JSON reads hyperfine's median, in milliseconds.

dockerd_pid=""
# Bridges docker and podman make; removed at the end only if they were not
# there before (a developer's own docker or podman may be using them).
links_before_peers=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1)
# Likewise the parent cgroups they make (/docker, /libpod_parent).
cgroups_before_peers=$(ls -d /sys/fs/cgroup/*/docker /sys/fs/cgroup/*/libpod_parent 2>/dev/null || true)

need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >/dev/null
}

median_ms() { # median_ms JSON -> milliseconds
    python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"
}

docker_cli() { /usr/bin/docker -H "unix://$work/docker/docker.sock" "$@"; }

podman_cli() {
    podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" \
        --cgroup-manager cgroupfs --events-backend file --runtime "${PODMAN_RUNTIME:-runc}" "$@"
}

remove_link_we_made() { # remove_link_we_made NAME
    if ! printf '%s\n' $links_before_peers | grep -qx "$1"; then
        ip link del "$1" 2>/dev/null || true
    fi
}

remove_parent_cgroups_we_made() { # remove_parent_cgroups_we_made NAME
    local h
    for h in /sys/fs/cgroup/*/"$1"; do
        [ -d "$h" ] || continue
        printf '%s\n' $cgroups_before_peers | grep -qx "$h" && continue
        rmdir "$h"/* "$h" 2>/dev/null || true
    done
}

start_dockerd() { # start_dockerd [DOCKERD FLAGS]
    need dockerd docker.io
    mkdir -p "$work/docker"
    dockerd --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
        -H "unix://$work/docker/docker.sock" --pidfile "$work/docker/pid" "$@" \
        > "$work/docker/log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 150); do docker_cli version >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "note: dockerd did not answer; see the end of its log:" >&2
    tail -3 "$work/docker/log" >&2
    stop_dockerd
    return 1
}

stop_dockerd() {
    [ -n "$dockerd_pid" ] || return 0
    docker_cli rm -f $(docker_cli ps -aq) >/dev/null 2>&1 || true
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    dockerd_pid=""
    remove_link_we_made docker0
    remove_parent_cgroups_we_made docker
}

remove_podman_state() {
    command -v podman >/dev/null && [ -d "$work/podman" ] || return 0
    podman_cli rm -af >/dev/null 2>&1 || true
    podman_cli system reset -f >/dev/null 2>&1 || true
    remove_parent_cgroups_we_made libpod_parent
    remove_link_we_made cni-podman0
    remove_link_we_made podman0
}

# What the benchmarks borrow from the host for their peers, and give back.
# Sourced by bench/lifecycle.sh, bench/network.sh and bench/runtime.sh (bash).
#
# - crun 1.8.1 and podman refuse this kind of host's cgroup layout (hugetlb
#   on cgroup2): bind_hugetlb_to_v1 moves hugetlb to a v1 hierarchy at
#   /sys/fs/cgroup/hugetlb; unbind_hugetlb gives it back to cgroup2.
# - docker and podman leave iptables chains (DOCKER*, CNI-*) behind, and
#   dockerd may set the FORWARD policy to DROP; through iptables-nft that
#   also makes nft tables (ip filter, ip nat, ip6 nat): note_peer_rules
#   before they start, remove_peer_rules at exit.

hugetlb_mounted=""
hugetlb_was_enabled=""

bind_hugetlb_to_v1() {
    [ -d /sys/fs/cgroup/hugetlb ] && return 0
    mkdir -p /sys/fs/cgroup/hugetlb
    if ! mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null; then
        # berth's cgroup driver enabled hugetlb in the unified root; take it
        # back for now (unbind_hugetlb enables it again).
        grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.subtree_control 2>/dev/null && hugetlb_was_enabled=1
        echo -hugetlb > /sys/fs/cgroup/unified/cgroup.subtree_control 2>/dev/null || true
        mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || { rmdir /sys/fs/cgroup/hugetlb; return 1; }
    fi
    hugetlb_mounted=1
    echo "note: bound the hugetlb controller to a v1 hierarchy for crun/podman (undone at exit)"
}

unbind_hugetlb() {
    [ -n "$hugetlb_mounted" ] || return 0
    # Every cgroup in the hierarchy was made while it was bound here (berth's
    # and libpod's parents stay after their containers): remove them, or the
    # unmounted hierarchy lives on and keeps hugetlb from cgroup2.
    find /sys/fs/cgroup/hugetlb -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
    umount /sys/fs/cgroup/hugetlb
    # The kernel frees the hierarchy after the unmount, asynchronously, and
    # only if it found no cgroups; one removed just before may still have
    # been going away. Wait for /proc/cgroups to show hugetlb back on
    # cgroup2 (hierarchy 0); if it does not come, mount and unmount once more.
    local attempt
    for attempt in 1 2; do
        for _ in $(seq 30); do
            grep -qE '^hugetlb[[:space:]]+0[[:space:]]' /proc/cgroups && break 2
            sleep 0.1
        done
        [ "$attempt" = 1 ] && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb && umount /sys/fs/cgroup/hugetlb
    done
    rmdir /sys/fs/cgroup/hugetlb
    if [ -n "$hugetlb_was_enabled" ]; then
        # The kernel frees the v1 hierarchy asynchronously.
        for _ in $(seq 50); do
            echo +hugetlb > /sys/fs/cgroup/unified/cgroup.subtree_control 2>/dev/null && break
            sleep 0.1
        done
    fi
    hugetlb_mounted=""
}

peer_rules_before=""
forward_policy_before=""
nft_tables_before=""
note_peer_rules() {
    nft_tables_before=$(nft list tables 2>/dev/null || true)
    peer_rules_before=$(iptables-save 2>/dev/null | grep -cE '^:(DOCKER|CNI-)' || true)
    forward_policy_before=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}' || true)
}

# The rules and chains docker and podman made, if the host had none before.
remove_peer_rules() {
    [ "$peer_rules_before" = 0 ] || return 0
    for table in filter nat; do
        iptables -t "$table" -S 2>/dev/null | grep -E '^-A ' | grep -E 'DOCKER|CNI-|docker0' |
            sed 's/^-A /-D /' | while read -r rule; do eval iptables -t "$table" "$rule"; done
        iptables -t "$table" -S 2>/dev/null | grep -E '^-N (DOCKER|CNI-)' | awk '{print $2}' |
            while read -r chain; do iptables -t "$table" -F "$chain"; iptables -t "$table" -X "$chain"; done
    done
    local policy
    policy=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}' || true)
    if [ -n "$forward_policy_before" ] && [ "$policy" != "$forward_policy_before" ]; then
        iptables -P FORWARD "$forward_policy_before" 2>/dev/null || true
    fi
    # The iptables-nft tables the peers made, once no rule is left in them.
    local family name
    nft list tables 2>/dev/null | while read -r _ family name; do
        case "$family $name" in "ip filter" | "ip nat" | "ip6 filter" | "ip6 nat") ;; *) continue ;; esac
        printf '%s\n' "$nft_tables_before" | grep -qx "table $family $name" && continue
        nft -j list table "$family" "$name" | grep -q '"rule"' && continue
        nft delete table "$family" "$name"
    done
}

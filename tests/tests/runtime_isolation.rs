//! Each isolation property of a berth-runtime container, checked from inside
//! a real container (root needed): processes, hostname, memory and pids
//! limits, capabilities, masked and read-only paths, seccomp, inherited fds,
//! and that nothing is left after delete — also after a failed create.

mod runtime_support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use berth_tests::describe;
use runtime_support::*;
use serde_json::json;

#[test]
fn only_the_containers_processes_are_visible() {
    let rt = Runtime::new();
    // `; true` keeps sh from exec'ing ps itself.
    let bundle = Bundle::new(&["sh", "-c", "ps -o pid,comm; true"]);
    let id = unique_id("pidns");
    let out = rt.run_bundle(&bundle, &id);
    assert!(out.status.success(), "{}", describe(&out));
    let lines: Vec<String> = stdout(&out)
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(lines, vec!["1 sh", "2 ps"], "only sh (pid 1) and its ps");
}

#[test]
fn the_hostname_is_the_configs() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&["hostname"]);
    bundle.config["hostname"] = json!("box-4711");
    let out = rt.run_bundle(&bundle, &unique_id("uts"));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out).trim(), "box-4711");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "box-4711", "the host's hostname is untouched");
}

#[test]
fn a_memory_limit_below_the_allocation_ends_in_an_oom_kill() {
    let rt = Runtime::new();
    // dd touches its whole 256 MiB buffer; the limit is 32 MiB (no swap can help:
    // memory+swap is limited too where the kernel accounts swap).
    let mut bundle = Bundle::new(&["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]);
    bundle.config["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432});
    let out = rt.run_bundle(&bundle, &unique_id("oom"));
    assert_eq!(
        out.status.code(),
        Some(137),
        "killed by SIGKILL (the OOM killer): {}",
        describe(&out)
    );
    // The same program without the limit succeeds: the limit made the difference.
    let mut unlimited = Bundle::new(&["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]);
    unlimited.config["linux"]["resources"] =
        json!({"devices": [{"allow": false, "access": "rwm"}]});
    let out = rt.run_bundle(&unlimited, &unique_id("nooom"));
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn a_fork_bomb_stops_at_pids_max() {
    let rt = Runtime::new();
    // The inner shell forks until fork fails (then it exits); the outer one
    // then becomes a sleep, keeping the container and the forked sleeps alive.
    let mut bundle = Bundle::new(&[
        "sh",
        "-c",
        "sh -c 'while :; do sleep 60 & done' 2>/dev/null; exec sleep 60",
    ]);
    bundle.config["linux"]["resources"]["pids"] = json!({"limit": 16});
    let id = unique_id("pids");
    rt.create(&bundle, &id);
    rt.ok(["start", &id]);
    let events = cgroup_dirs_of(&id)
        .into_iter()
        .map(|d| d.join("pids.events"))
        .find(|f| f.exists())
        .expect("the container has a pids cgroup");
    // Wait (at the container's pace) for the kernel to refuse a fork.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&events).unwrap();
        let refused: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("max "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        if refused > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fork was ever refused: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(["ps", "--format", "json", &id])).unwrap();
    assert!(
        (10..=16).contains(&pids.len()),
        "the bomb got close to, and never past, pids.max = 16: {} processes",
        pids.len()
    );
    rt.ok(["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn a_dropped_capability_makes_its_operation_fail() {
    let rt = Runtime::new();
    let script = "touch /tmp/f && chown 1:1 /tmp/f && echo chowned";
    // Without CAP_CHOWN (the default set: AUDIT_WRITE, KILL, NET_BIND_SERVICE).
    let bundle = Bundle::new(&["sh", "-c", script]);
    let out = rt.run_bundle(&bundle, &unique_id("nocap"));
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        describe(&out)
    );
    // With it, the same operation works.
    let mut bundle = Bundle::new(&["sh", "-c", script]);
    for set in ["bounding", "effective", "permitted"] {
        bundle.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_CHOWN"));
    }
    let out = rt.run_bundle(&bundle, &unique_id("cap"));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out).trim(), "chowned");
}

#[test]
fn ambient_capabilities_without_inheritable_are_skipped_as_runc_and_crun_do() {
    // The capabilities `crun spec` writes: ambient listed, inheritable empty.
    // The kernel cannot raise those; the container still runs, without them.
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&["sh", "-c", "grep -E '^Cap(Amb|Eff)' /proc/self/status"]);
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    bundle.config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
        "inheritable": [], "ambient": caps,
    });
    let out = rt.run_bundle(&bundle, &unique_id("ambient"));
    assert!(out.status.success(), "{}", describe(&out));
    let status = stdout(&out);
    assert!(
        status.contains("CapAmb:\t0000000000000000"),
        "no ambient capability was raised:\n{status}"
    );
    // KILL (5), NET_BIND_SERVICE (10), AUDIT_WRITE (29).
    assert!(
        status.contains("CapEff:\t0000000020000420"),
        "the effective set is the config's:\n{status}"
    );
}

#[test]
fn a_masked_path_reads_empty() {
    let rt = Runtime::new();
    let script = "wc -c < /proc/timer_list; ls /sys/kernel | wc -l; wc -c < /proc/cpuinfo";
    let run = |masked: serde_json::Value| {
        let mut bundle = Bundle::new(&["sh", "-c", script]);
        bundle.config["linux"]["maskedPaths"] = masked;
        let out = rt.run_bundle(&bundle, &unique_id("mask"));
        assert!(out.status.success(), "{}", describe(&out));
        stdout(&out)
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect::<Vec<u64>>()
    };
    // A file (/proc/timer_list: bound to /dev/null) and a directory
    // (/sys/kernel: an empty read-only tmpfs).
    let masked = run(json!([
        "/proc/timer_list",
        "/sys/kernel",
        "/proc/no-such-entry"
    ]));
    let unmasked = run(json!([]));
    assert_eq!(masked[0], 0, "/proc/timer_list reads empty when masked");
    assert!(unmasked[0] > 0, "and has content when not");
    assert_eq!(masked[1], 0, "/sys/kernel is empty when masked");
    assert!(unmasked[1] > 0, "and has entries when not");
    assert_eq!(masked[2], unmasked[2], "other files are untouched");
}

#[test]
fn a_read_only_path_refuses_writes() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&[
        "sh",
        "-c",
        "touch /etc/new 2>&1; echo 1 > /proc/sys/kernel/ns_last_pid 2>&1; touch /tmp/ok && echo tmp-ok",
    ]);
    bundle.config["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/etc"));
    let out = rt.run_bundle(&bundle, &unique_id("ro"));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        text.matches("Read-only file system").count(),
        2,
        "both writes refused: {}",
        describe(&out)
    );
    assert!(text.contains("tmp-ok"), "other paths stay writable: {text}");
    assert!(!bundle.rootfs().join("etc/new").exists());
}

#[test]
fn a_seccomp_denied_syscall_returns_eperm() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&[
        "sh",
        "-c",
        "mkdir /tmp/d; echo mkdir=$?; ls -d /tmp && echo ls-ok",
    ]);
    bundle.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let out = rt.run_bundle(&bundle, &unique_id("seccomp"));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "mkdir fails with EPERM: {}",
        describe(&out)
    );
    assert!(stdout(&out).contains("mkdir=1"));
    assert!(stdout(&out).contains("ls-ok"), "other syscalls work");
    assert!(!bundle.rootfs().join("tmp/d").exists());
}

#[test]
fn an_fd_the_caller_opened_without_cloexec_is_not_visible_inside() {
    let rt = Runtime::new();
    let secret = tempfile::NamedTempFile::new().unwrap();
    let path = std::ffi::CString::new(secret.path().to_str().unwrap()).unwrap();
    // SAFETY: open(2) without O_CLOEXEC on purpose: it is inherited by the
    // berth-runtime process we spawn next, like a careless caller's fd.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(raw >= 0);
    // SAFETY: a fresh fd we own.
    let leaked = unsafe { OwnedFd::from_raw_fd(raw) };
    let bundle = Bundle::new(&["sh", "-c", "ls -l /proc/self/fd/"]);
    let out = rt.run_bundle(&bundle, &unique_id("fds"));
    assert!(out.status.success(), "{}", describe(&out));
    let listing = stdout(&out);
    let name = secret.path().file_name().unwrap().to_str().unwrap();
    assert!(
        !listing.contains(name),
        "the caller's file is visible: {listing}"
    );
    let fds: Vec<u32> = listing
        .lines()
        .filter_map(|l| {
            l.split(" -> ")
                .next()?
                .split_whitespace()
                .last()?
                .parse()
                .ok()
        })
        .collect();
    // 0, 1, 2 and the directory ls itself opened to list them.
    assert!(fds.iter().all(|fd| *fd <= 3), "extra fds inside: {listing}");
    assert!(!fds.contains(&(leaked.as_raw_fd() as u32)) || leaked.as_raw_fd() <= 3);
}

#[test]
fn nothing_is_left_after_delete() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("gone");
    rt.create(&bundle, &id);
    rt.ok(["start", &id]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    assert!(
        !cgroup_dirs_of(&id).is_empty(),
        "the container has cgroups while running"
    );
    rt.ok(["kill", &id, "KILL"]);
    rt.wait_for_status(&id, "stopped");
    rt.ok(["delete", &id]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            // The pid may have been reused by an unrelated process: it must not
            // be our container's.
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !cmd.contains("sleep")
        }
    );
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn nothing_is_left_when_create_fails_halfway() {
    let rt = Runtime::new();
    // The mounts of /proc, /dev, ... succeed; this one fails.
    let mut bundle = Bundle::new(&["true"]);
    bundle.add_mount(json!({
        "destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["no-such-option=1"]
    }));
    let id = unique_id("halfway");
    let out = rt.run_bundle(&bundle, &id);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("mount tmpfs on /data: Invalid argument"),
        "the failing step and errno are named: {}",
        describe(&out)
    );
    assert_nothing_left(&rt, &id, &bundle);
    // A bind mount whose source does not exist, and a failing program path.
    let mut bundle = Bundle::new(&["/no/such/program"]);
    bundle.add_mount(json!({
        "destination": "/data", "type": "bind", "source": "/nonexistent/source", "options": ["rbind"]
    }));
    let id = unique_id("halfway2");
    let out = rt.run_bundle(&bundle, &id);
    assert!(
        stderr(&out).contains("bind /nonexistent/source on /data: No such file or directory"),
        "{}",
        describe(&out)
    );
    assert_nothing_left(&rt, &id, &bundle);
    let bundle = Bundle::new(&["/no/such/program"]);
    let id = unique_id("noprog");
    let out = rt.run_bundle(&bundle, &id);
    assert!(
        stderr(&out).contains("exec \"/no/such/program\": No such file or directory"),
        "{}",
        describe(&out)
    );
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn namespaces_joined_by_path_are_shared() {
    let rt = Runtime::new();
    let first = Bundle::new(&["sleep", "60"]);
    let first_id = unique_id("nsowner");
    rt.create(&first, &first_id);
    rt.ok(["start", &first_id]);
    let pid = rt.state(&first_id)["pid"].as_i64().unwrap();
    let ns = |kind: &str| format!("/proc/{pid}/ns/{kind}");
    // Network only (joined by the init itself after clone3) ...
    let mut net_only = Bundle::new(&[
        "sh",
        "-c",
        "readlink /proc/self/ns/net; ps -o comm | grep -c sleep || true",
    ]);
    net_only.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "network", "path": ns("net")}, {"type": "ipc"},
        {"type": "uts"}, {"type": "mount"}
    ]);
    let out = rt.run_bundle(&net_only, &unique_id("joinnet"));
    assert!(out.status.success(), "{}", describe(&out));
    let first_net = std::fs::read_link(ns("net")).unwrap();
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        first_net.to_str().unwrap(),
        "same network namespace"
    );
    assert_eq!(
        lines.next().unwrap(),
        "0",
        "its own pid namespace: the sleep is not visible"
    );
    // ... and the pid namespace too (joined by an intermediate before the clone).
    let mut with_pid = Bundle::new(&["sh", "-c", "ps -o comm | grep -c sleep"]);
    with_pid.config["linux"]["namespaces"] = json!([
        {"type": "pid", "path": ns("pid")}, {"type": "network", "path": ns("net")},
        {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
    ]);
    let out = rt.run_bundle(&with_pid, &unique_id("joinpid"));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        stdout(&out).trim(),
        "1",
        "the first container's sleep is visible"
    );
    rt.ok(["delete", "--force", &first_id]);
}

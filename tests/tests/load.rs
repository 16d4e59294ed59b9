//! Load: 100 containers started at once (`run -d … sleep`, 100 berth
//! commands in parallel), then stopped at once (100 `stop`s in parallel).
//! Every command succeeds, `ps` tells the truth at each point, and
//! afterwards nothing is left: no monitor, no cgroup, no veth, no mount.
//! The monitors' memory is measured while all 100 run (printed with
//! `--nocapture`: resident set and proportional set size, summed).
//!
//! `BERTH_LOAD_CONTAINERS=N` changes the count (default 100).

use std::process::{Child, Output, Stdio};
use std::time::Instant;

use berth_tests::{describe, fixture, require_root, TestRoot};

struct Lab {
    root: TestRoot,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.root.run(["ps", "-aq", "--no-trunc"]);
        let children: Vec<Child> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|id| {
                self.root
                    .berth(["rm", "-f", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            let _ = child.wait();
        }
    }
}

/// Start every command at once, then collect every output.
fn all_at_once(lab: &Lab, commands: Vec<Vec<String>>) -> Vec<(Vec<String>, Output)> {
    let children: Vec<(Vec<String>, Child)> = commands
        .into_iter()
        .map(|args| {
            let child = lab
                .root
                .berth(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (args, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(args, child)| (args, child.wait_with_output().unwrap()))
        .collect()
}

/// (rss, pss) in KiB of process `pid` (/proc/PID/smaps_rollup).
fn memory_kib(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
}

#[test]
fn a_hundred_containers_start_and_stop_concurrently() {
    require_root();
    let count: usize = std::env::var("BERTH_LOAD_CONTAINERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let lab = Lab {
        root: TestRoot::new(),
    };
    lab.root.ok([
        "load",
        "-i",
        fixture("busybox/docker-archive.tar").to_str().unwrap(),
    ]);

    let started = Instant::now();
    let runs = all_at_once(
        &lab,
        (0..count)
            .map(|i| {
                [
                    "run",
                    "-d",
                    "--name",
                    &format!("load{i}"),
                    "busybox",
                    "sleep",
                    "600",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            })
            .collect(),
    );
    let start_time = started.elapsed();
    let mut ids = Vec::new();
    for (args, out) in &runs {
        assert!(out.status.success(), "berth {args:?}: {}", describe(out));
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let running = lab
        .root
        .ok(["ps", "-q", "--no-trunc", "--filter", "status=running"]);
    assert_eq!(
        running.lines().count(),
        count,
        "ps shows every container running"
    );

    // Memory of the monitors (the parents of the containers' PID 1).
    let mut rss = 0;
    let mut pss = 0;
    let mut monitors = 0;
    for id in &ids {
        let pid: i32 = lab
            .root
            .ok(["inspect", "-f", "{{.State.Pid}}", id])
            .trim()
            .parse()
            .unwrap();
        let monitor = parent_of(pid).expect("a monitor");
        let (r, p) = memory_kib(monitor);
        rss += r;
        pss += p;
        monitors += 1;
    }
    eprintln!(
        "load: {count} containers started concurrently in {start_time:?}; {monitors} monitors use {} MiB resident in total ({} KiB each), {} MiB proportional (PSS, shared pages split: {} KiB each)",
        rss / 1024,
        rss / monitors,
        pss / 1024,
        pss / monitors
    );

    let started = Instant::now();
    let stops = all_at_once(
        &lab,
        ids.iter()
            .map(|id| vec!["stop".to_string(), "-t".into(), "2".into(), id.clone()])
            .collect(),
    );
    let stop_time = started.elapsed();
    for (args, out) in &stops {
        assert!(out.status.success(), "berth {args:?}: {}", describe(out));
    }
    eprintln!("load: {count} containers stopped concurrently in {stop_time:?}");
    assert_eq!(lab.root.ok(["ps", "-q", "--filter", "status=running"]), "");
    let exited = lab.root.ok(["ps", "-aq", "--filter", "status=exited"]);
    assert_eq!(
        exited.lines().count(),
        count,
        "ps shows every container exited"
    );

    // A monitor may still be tearing down (network, mounts) right after
    // the exit it reported: it must end by itself, soon.
    let needle = format!("BERTH_ROOT={}", lab.root.root().display());
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| {
                let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
                environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
            })
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "berth processes of this root are left: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // No monitor, cgroup, veth or mount is left behind.
    for id in &ids {
        let left = berth_tests::existing_cgroup_dirs(&std::path::Path::new("berth").join(id));
        assert!(left.is_empty(), "cgroups left: {left:?}");
        let veth = format!("/sys/class/net/vb{}", &id[..12]);
        assert!(!std::path::Path::new(&veth).exists(), "veth left: {veth}");
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&lab.root.path().display().to_string()),
        "mounts left"
    );

    let removals = all_at_once(
        &lab,
        ids.iter()
            .map(|id| vec!["rm".to_string(), id.clone()])
            .collect(),
    );
    for (args, out) in &removals {
        assert!(out.status.success(), "berth {args:?}: {}", describe(out));
    }
    assert_eq!(lab.root.ok(["ps", "-aq"]), "");
}

//! Faults: `berth` killed with SIGKILL at random points of run, stop, rm,
//! load and build (and monitors killed too); a full disk under `--root`
//! during load and build; a host reboot (the `--state` directory wiped).
//! Afterwards the store is consistent, every command works, and once the
//! next commands have reconciled (`ps`, then `system prune`) nothing is
//! left: no mount, no cgroup, no runtime state, no monitor or container
//! process, no veth, no nftables element.
//!
//! The short version runs in the normal suite (30 kills); the long one:
//!
//! ```sh
//! BERTH_FAULT_ITERATIONS=500 cargo test -p berth-tests --test faults -- --ignored --nocapture
//! ```
//!
//! `BERTH_FAULT_SEED=N` replays a run (the seed is printed).

mod images_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_engine::layer::rawtar::{Entry, RawTar};
use berth_tests::{describe, fixture, require_root, TestRoot};
use images_support::{assert_store_consistent, write_oci_layout, Layer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What the harness does in one iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    RunDetached,
    RunRm,
    Stop,
    Rm,
    Load,
    Build,
    KillMonitor,
}

const OPS: [Op; 7] = [
    Op::RunDetached,
    Op::RunRm,
    Op::Stop,
    Op::Rm,
    Op::Load,
    Op::Build,
    Op::KillMonitor,
];

/// The label of the containers that run until stopped (`sleep 600`).
const LONG_RUNNING: &str = "fault=long-running";

/// A test root with busybox, a build context, and everything the harness
/// learned about the containers it made (ids of records and runtime states
/// seen at any point), so that leftovers can be attributed to this test
/// even while other berth roots run beside it.
struct Harness {
    root: TestRoot,
    ctx: PathBuf,
    inputs: tempfile::TempDir,
    known_ids: BTreeSet<String>,
    rng: StdRng,
    /// How long each operation takes when not killed (calibrated once).
    durations: Vec<(Op, Duration)>,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        require_root();
        let root = TestRoot::new();
        root.ok([
            "load",
            "-i",
            fixture("busybox/docker-archive.tar").to_str().unwrap(),
        ]);
        let ctx = root.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM busybox\nARG N=0\nRUN echo step $N > /step && sleep 0.2\nCOPY payload /payload\nRUN cat /payload > /copied\n",
        )
        .unwrap();
        std::fs::write(ctx.join("payload"), vec![7u8; 256 * 1024]).unwrap();
        Harness {
            root,
            ctx,
            inputs: tempfile::tempdir().unwrap(),
            known_ids: BTreeSet::new(),
            rng: StdRng::seed_from_u64(seed),
            durations: Vec::new(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.root.ok(args)
    }

    /// Ids of this root's containers (records) and runtime states, now.
    fn learn_ids(&mut self) {
        for dir in [
            self.root.root().join("containers"),
            self.root.state().join("runtime"),
        ] {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    self.known_ids.insert(name);
                }
            }
        }
    }

    fn containers(&self, filter: &str) -> Vec<String> {
        let mut args = vec!["ps", "-q", "--no-trunc"];
        if filter.is_empty() {
            args.push("-a");
        } else {
            args.extend(["--filter", filter]);
        }
        self.ok(&args)
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// The command an operation runs (None: nothing to act on right now).
    fn command_for(&mut self, op: Op, iteration: usize) -> Option<Command> {
        let pick = |rng: &mut StdRng, list: Vec<String>| -> Option<String> {
            (!list.is_empty()).then(|| list[rng.gen_range(0..list.len())].clone())
        };
        let args: Vec<String> = match op {
            Op::RunDetached => vec!["run", "-d", "-l", LONG_RUNNING, "busybox", "sleep", "600"]
                .into_iter()
                .map(String::from)
                .collect(),
            Op::RunRm => ["run", "--rm", "busybox", "sh", "-c", "echo hi; sleep 0.1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Op::Stop => {
                let running = self.containers("status=running");
                let id = pick(&mut self.rng, running)?;
                vec!["stop".into(), "-t".into(), "1".into(), id]
            }
            Op::Rm => {
                let all = self.containers("");
                let id = pick(&mut self.rng, all)?;
                vec!["rm".into(), "-f".into(), id]
            }
            Op::Load => {
                let layout = self.unique_layout(iteration);
                vec!["load".into(), "-i".into(), layout.display().to_string()]
            }
            Op::Build => vec![
                "build".into(),
                "--build-arg".into(),
                format!("N={iteration}"),
                "-t".into(),
                format!("fault-build:{iteration}"),
                self.ctx.display().to_string(),
            ],
            Op::KillMonitor => return None,
        };
        Some(self.root.berth(&args))
    }

    /// A new image (a 512 KiB layer of its own) as an OCI layout.
    fn unique_layout(&self, iteration: usize) -> PathBuf {
        let dir = self.inputs.path().join(format!("layout-{iteration}"));
        let mut tar = RawTar::new();
        let mut data = vec![0u8; 512 * 1024];
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = (i.wrapping_mul(31) ^ iteration) as u8;
        }
        tar.add(Entry::file(&format!("data-{iteration}"), &data));
        let busybox = busybox_layer();
        write_oci_layout(
            &dir,
            &[
                Layer {
                    tar: busybox,
                    gzip: false,
                    media_type: None,
                },
                Layer::gzip(tar.finish()),
            ],
            Some(&format!("docker.io/library/fault-load:{iteration}")),
        );
        dir
    }

    /// Run each operation once unkilled, to learn how long it takes.
    fn calibrate(&mut self) {
        for op in OPS {
            if op == Op::KillMonitor {
                continue;
            }
            if op == Op::Stop || op == Op::Rm {
                self.ok(&["run", "-d", "busybox", "sleep", "600"]);
            }
            let Some(mut cmd) = self.command_for(op, 100_000 + self.durations.len()) else {
                continue;
            };
            let started = Instant::now();
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{op:?} works unkilled: {}",
                describe(&out)
            );
            self.durations.push((op, started.elapsed()));
        }
        eprintln!("calibration (unkilled durations): {:?}", self.durations);
    }

    fn duration_of(&self, op: Op) -> Duration {
        self.durations
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, d)| *d)
            .unwrap_or(Duration::from_millis(200))
    }

    /// SIGKILL the monitor of a random running container.
    fn kill_a_monitor(&mut self) -> bool {
        let running = self.containers("status=running");
        if running.is_empty() {
            return false;
        }
        let id = running[self.rng.gen_range(0..running.len())].clone();
        // The monitor berth reports (0 when it is already gone): never the
        // parent of PID 1, which for an orphaned container is whatever
        // process adopted it, not one this test started.
        let monitor: i32 = self
            .ok(&["inspect", "-f", "{{.State.MonitorPid}}", &id])
            .trim()
            .parse()
            .unwrap_or(0);
        if monitor <= 0 {
            return false;
        }
        // SAFETY: kill(2) of a monitor process this test's berth started.
        unsafe { libc::kill(monitor, libc::SIGKILL) };
        true
    }

    /// One iteration: start an operation, SIGKILL it at a random moment.
    fn iteration(&mut self, i: usize) -> String {
        let op = OPS[self.rng.gen_range(0..OPS.len())];
        if op == Op::KillMonitor {
            let killed = self.kill_a_monitor();
            return format!("{op:?} killed={killed}");
        }
        let Some(mut cmd) = self.command_for(op, i) else {
            return format!("{op:?} skipped (nothing to act on)");
        };
        let budget = self.duration_of(op).mul_f64(1.2);
        let delay = budget.mul_f64(self.rng.gen_range(0.0..1.0));
        let mut child: Child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let was_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        self.learn_ids();
        format!(
            "{op:?} killed after {delay:?}{}",
            if was_running { "" } else { " (had finished)" }
        )
    }

    /// What every user would check after a crash: the listing commands work.
    fn assert_commands_work(&self, context: &str) {
        for args in [&["ps", "-a"][..], &["images"][..]] {
            let out = self.root.run(args);
            assert!(
                out.status.success(),
                "{context}: berth {args:?}: {}",
                describe(&out)
            );
        }
    }

    /// Every berth process whose environment names this root.
    fn berth_processes(&self) -> Vec<i32> {
        let needle = format!("BERTH_ROOT={}", self.root.root().display());
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Nothing of this test's containers is left on the host.
    fn assert_nothing_left(&self) {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.root.path().display().to_string();
        let mounts: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&root)).collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        let processes = self.berth_processes();
        assert!(processes.is_empty(), "berth processes left: {processes:?}");
        let mut cgroups = Vec::new();
        let mut veths = Vec::new();
        for id in &self.known_ids {
            cgroups.extend(berth_tests::existing_cgroup_dirs(
                &Path::new("berth").join(id),
            ));
            if Path::new(&format!("/sys/class/net/vb{}", &id[..12])).exists() {
                veths.push(format!("vb{}", &id[..12]));
            }
        }
        assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
        assert!(veths.is_empty(), "veth pairs left: {veths:?}");
        let runtime: Vec<_> = std::fs::read_dir(self.root.state().join("runtime"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(runtime.is_empty(), "runtime states left: {runtime:?}");
        let table = self.nft_elements();
        assert!(table.is_empty(), "nftables elements left: {table:?}");
    }

    /// Elements of the port maps of this root's nftables table.
    fn nft_elements(&self) -> Vec<String> {
        let out = self.root.run(["network", "inspect", "bridge"]);
        let Ok(list) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return Vec::new();
        };
        let Some(table) = list[0]["Options"]["berth.nftables.table"].as_str() else {
            return Vec::new();
        };
        let out = Command::new("nft")
            .args(["-j", "list", "table", "ip", table])
            .output()
            .unwrap();
        let Ok(state) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return Vec::new();
        };
        state["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("map"))
            .flat_map(|m| m["elem"].as_array().cloned().unwrap_or_default())
            .map(|e| e.to_string())
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let out = self.root.run(["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.root.run(["rm", "-f", id]);
        }
        let _ = self.root.run(["system", "prune", "-f"]);
    }
}

/// The busybox fixture's layer, uncompressed.
fn busybox_layer() -> Vec<u8> {
    let layout = fixture("busybox/oci-plain");
    let blob = |digest: &str| -> Vec<u8> {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    blob(manifest["layers"][0]["digest"].as_str().unwrap())
}

fn run_fault_injection(default_iterations: usize) {
    let iterations: usize = std::env::var("BERTH_FAULT_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default_iterations);
    let seed: u64 = std::env::var("BERTH_FAULT_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fault injection: {iterations} iterations, BERTH_FAULT_SEED={seed}");
    let mut h = Harness::new(seed);
    h.calibrate();
    let started = Instant::now();
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..iterations {
        let what = h.iteration(i);
        eprintln!("iteration {i}: {what}");
        *counts
            .entry(what.split(' ').next().unwrap().to_string())
            .or_insert(0) += 1;
        h.assert_commands_work(&format!("after iteration {i} ({what})"));
        // Keep the machine light: at most 8 containers at a time.
        let all = h.containers("");
        if all.len() > 8 {
            for id in &all[8..] {
                h.ok(&["rm", "-f", id]);
            }
        }
    }
    eprintln!(
        "fault injection: {iterations} iterations in {:?}: {counts:?}",
        started.elapsed()
    );

    // After the kills: the commands work, a new container runs, the
    // running containers really run.
    h.learn_ids();
    assert_eq!(
        h.ok(&["run", "--rm", "busybox", "echo", "alive"]),
        "alive\n"
    );
    // Only the long-running ones: a `run --rm` whose command was killed
    // mid-way may still be finishing its short command, and exiting while
    // `exec` enters it is the container's right.
    let long_running: Vec<String> = h
        .ok(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "status=running",
            "--filter",
            &format!("label={LONG_RUNNING}"),
        ])
        .split_whitespace()
        .map(String::from)
        .collect();
    for id in &long_running {
        let out = h.root.run(["exec", id, "echo", "in"]);
        if !out.status.success() {
            let state = h.root.run([
                "inspect",
                "-f",
                "{{.State.Status}} pid={{.State.Pid}} monitor={{.State.MonitorPid}} exit={{.State.ExitCode}} error={{.State.Error}}",
                id,
            ]);
            let pid = String::from_utf8_lossy(&state.stdout)
                .split("pid=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("0")
                .to_string();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            panic!(
                "{id} should really run: exec said {}\nnow: {}/proc/{pid}/stat: {stat}",
                describe(&out),
                String::from_utf8_lossy(&state.stdout)
            );
        }
    }

    // Let prune sweep what the kills left: then every image is whole (each
    // re-verified by `save`) and no staging is left; remove everything and
    // check that nothing at all remains.
    let prune = h.root.run(["system", "prune", "-f"]);
    assert!(prune.status.success(), "{}", describe(&prune));
    eprintln!("system prune after the kills:\n{}", describe(&prune));
    explain_leftover_work_dirs(&h.root.root().join("tmp"));
    assert_store_consistent(&h.root);
    // Every berth process left is the monitor of a running container (a
    // container whose monitor was killed keeps running without one, as
    // designed: `ps` shows it running, stop and rm still work). Processes
    // orphaned by a kill (a build step's container created but never
    // started) were ended by the prune.
    let running = h.containers("status=running");
    let monitors_of_running: BTreeSet<i32> = running
        .iter()
        .filter_map(|id| {
            let monitor = h.ok(&["inspect", "-f", "{{.State.MonitorPid}}", id]);
            monitor.trim().parse().ok().filter(|pid: &i32| *pid > 0)
        })
        .collect();
    for pid in h.berth_processes() {
        if monitors_of_running.contains(&pid) {
            continue;
        }
        // A monitor still finishing (removing its --rm container after
        // reporting the exit) ends by itself: wait for that; one that
        // stays is an orphan.
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        wait_gone(pid);
        eprintln!("a finishing monitor ended: {pid} {cmdline:?}");
    }
    for id in h.containers("") {
        h.ok(&["rm", "-f", &id]);
    }
    h.ok(&["system", "prune", "-a", "-f"]);
    h.assert_nothing_left();
}

#[test]
fn sigkill_at_random_points_leaves_a_working_store_and_nothing_behind() {
    run_fault_injection(30);
}

/// The long run: `BERTH_FAULT_ITERATIONS=500 cargo test -p berth-tests
/// --test faults -- --ignored --nocapture`.
#[test]
#[ignore]
fn sigkill_at_random_points_many_times() {
    run_fault_injection(500);
}

/// A full disk under `--root`: load and build fail with a clear error, and
/// the store stays whole (the images before are intact, nothing partial).
#[test]
fn a_full_disk_gives_a_clear_error_and_an_intact_store() {
    require_root();
    let root = TestRoot::new();
    nix::mount::mount(
        Some("tmpfs"),
        &root.root(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=16m"),
    )
    .unwrap();
    root.ok([
        "load",
        "-i",
        fixture("busybox/docker-archive.tar").to_str().unwrap(),
    ]);
    let before = root.ok(["images", "-q", "--no-trunc"]);

    // load: the debian archive (120 MB) cannot fit.
    let out = root.run([
        "load",
        "-i",
        fixture("debian/docker-archive.tar").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert_eq!(
        root.ok(["images", "-q", "--no-trunc"]),
        before,
        "no partial image"
    );
    assert_store_consistent(&root);

    // build: COPY of a file larger than what is left.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nCOPY big /big\n",
    )
    .unwrap();
    std::fs::write(ctx.path().join("big"), vec![1u8; 24 << 20]).unwrap();
    let out = root.run(["build", "-t", "big:1", ctx.path().to_str().unwrap()]);
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(
        root.ok(["images", "-q", "--no-trunc"]),
        before,
        "no partial image"
    );
    assert_store_consistent(&root);

    // The store still works once there is room again.
    assert_eq!(
        root.ok(["run", "--rm", "busybox", "echo", "fine"]),
        "fine\n"
    );
}

/// A host reboot: every process gone, the cgroups gone, `--state` (a tmpfs
/// like /run) empty. The containers show as exited and start again.
#[test]
fn after_a_reboot_containers_show_exited_and_start_again() {
    require_root();
    let root = TestRoot::new();
    root.ok([
        "load",
        "-i",
        fixture("busybox/docker-archive.tar").to_str().unwrap(),
    ]);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            root.ok([
                "run",
                "-d",
                "--name",
                &format!("r{i}"),
                "busybox",
                "sh",
                "-c",
                "echo started >> /log; sleep 600",
            ])
            .trim()
            .to_string()
        })
        .collect();

    // "Power off": monitors first, then each container's processes.
    for id in &ids {
        let pid: i32 = root
            .ok(["inspect", "-f", "{{.State.Pid}}", id])
            .trim()
            .parse()
            .unwrap();
        let monitor: i32 = root
            .ok(["inspect", "-f", "{{.State.MonitorPid}}", id])
            .trim()
            .parse()
            .unwrap();
        assert!(monitor > 0, "{id} has a live monitor before the power-off");
        // SAFETY: kill(2) of processes this test's berth started.
        unsafe {
            libc::kill(monitor, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        wait_gone(pid);
        wait_gone(monitor);
        for dir in berth_tests::existing_cgroup_dirs(&Path::new("berth").join(id)) {
            std::fs::remove_dir(&dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
        }
    }
    std::fs::remove_dir_all(root.state()).unwrap();
    std::fs::create_dir_all(root.state()).unwrap();

    // "Boot": the containers are exited, and start again.
    let status = root.ok(["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    for line in status.lines() {
        assert!(line.contains("Exited"), "{status}");
    }
    for id in &ids {
        root.ok(["start", id]);
        assert_eq!(
            root.ok(["exec", id, "cat", "/log"]),
            "started\nstarted\n",
            "the container kept what it wrote and ran again"
        );
    }
    for id in &ids {
        root.ok(["rm", "-f", id]);
    }
}

/// For a failure message: who holds the lock of each work directory left
/// in `tmp` (from /proc/locks and the holders' command lines).
fn explain_leftover_work_dirs(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let lock = entry.path().join("lock");
        let Ok(meta) = std::fs::metadata(&lock) else {
            eprintln!("leftover {:?}: no lock file", entry.file_name());
            continue;
        };
        let needle = format!(":{} ", meta.ino());
        for line in locks.lines().filter(|l| l.contains(&needle)) {
            let pid = line.split_whitespace().nth(4).unwrap_or("?");
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let ppid = status.lines().find(|l| l.starts_with("PPid")).unwrap_or("");
            eprintln!(
                "leftover {:?}: {line} held by {pid} {cmd:?} {ppid}",
                entry.file_name()
            );
        }
    }
}

/// Poll until process `pid` is gone (killed above; its reaper is init).
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
            return; // a zombie: dead, waiting for its reaper
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} did not end (an orphan)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

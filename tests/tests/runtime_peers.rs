//! podman (through conmon) and containerd (through its runc shim) driving
//! berth-runtime as if it were runc. Each test uses a private store (podman
//! `--root/--runroot`, a containerd daemon of its own) so nothing of the
//! host's configuration is touched. Where podman or containerd is not
//! installed the test prints a notice and returns (the one allowed skip).

mod runtime_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{bin, describe, fixture, require_root};
use runtime_support::*;

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No cgroup directory whose name contains `needle` under any hierarchy.
fn assert_no_cgroup_named(needle: &str) {
    let mut found = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let walk = Command::new("find")
            .arg(hierarchy.path())
            .args([
                "-maxdepth",
                "3",
                "-type",
                "d",
                "-name",
                &format!("*{needle}*"),
            ])
            .output()
            .unwrap();
        found.extend(
            String::from_utf8_lossy(&walk.stdout)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(found, Vec::<String>::new(), "cgroups left behind");
}

struct Podman {
    dir: tempfile::TempDir,
    /// Declared last: dropped after `drop` removed the containers.
    _parent: berth_tests::PeerCgroupParent,
}

impl Podman {
    fn new() -> Podman {
        Podman {
            dir: tempfile::Builder::new()
                .prefix("berth-podman-")
                .tempdir()
                .unwrap(),
            _parent: berth_tests::PeerCgroupParent::new("libpod_parent"),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .arg("--runtime")
            .arg(bin("berth-runtime"))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run podman")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force"]);
        berth_tests::unmount_everything_below(self.dir.path());
    }
}

#[test]
fn podman_runs_execs_pauses_and_removes_containers_with_berth_runtime() {
    require_root();
    if !installed("podman") || !installed("conmon") {
        eprintln!("NOTICE: podman or conmon is not installed; skipping the podman test (apt-get install podman)");
        return;
    }
    let podman = Podman::new();
    ok(
        podman.run(&[
            "load",
            "-i",
            fixture("busybox/docker-archive.tar").to_str().unwrap(),
        ]),
        "podman load",
    );
    let image = "docker.io/library/busybox:latest";

    let out = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "echo hello; id -u",
    ]);
    assert_eq!(ok(out, "podman run --rm"), "hello\n0\n");
    let out = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "exit 42",
    ]);
    assert_eq!(
        out.status.code(),
        Some(42),
        "the exit code comes through: {}",
        describe(&out)
    );

    let id = ok(
        podman.run(&["run", "-d", "--network", "none", image, "sleep", "120"]),
        "podman run -d",
    )
    .trim()
    .to_string();
    let out = ok(
        podman.run(&[
            "exec",
            &id,
            "sh",
            "-c",
            "echo in-exec; ps -o comm | grep -c sleep",
        ]),
        "exec",
    );
    assert_eq!(out, "in-exec\n1\n");
    let out = ok(podman.run(&["exec", "-t", &id, "tty"]), "exec -t");
    assert!(out.trim().starts_with("/dev/pts/"), "{out:?}");
    ok(podman.run(&["pause", &id]), "pause");
    let status = ok(
        podman.run(&["inspect", "--format", "{{.State.Status}}", &id]),
        "inspect",
    );
    assert_eq!(status.trim(), "paused");
    ok(podman.run(&["unpause", &id]), "unpause");
    let status = ok(
        podman.run(&["inspect", "--format", "{{.State.Status}}", &id]),
        "inspect",
    );
    assert_eq!(status.trim(), "running");
    ok(podman.run(&["rm", "--force", &id]), "rm --force");
    assert_no_cgroup_named(&id);
}

/// A containerd daemon of our own, killed (by pid) on drop.
/// The busybox fixture's name in containerd.
const BUSYBOX: &str = "docker.io/library/busybox:latest";

struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
    /// containerd's namespace is the tasks' parent cgroup.
    _parent: berth_tests::PeerCgroupParent,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("berth-ctd-")
            .tempdir()
            .unwrap();
        let p = dir.path();
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
            p.join("root").display(),
            p.join("state").display(),
            p.join("containerd.sock").display()
        );
        std::fs::write(p.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(p.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(p.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let ctd = Containerd {
            dir,
            daemon,
            _parent: berth_tests::PeerCgroupParent::new("default"),
        };
        // Wait for its socket to answer.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ctd.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        ctd
    }

    /// A containerd of its own with the busybox fixture imported; `None`
    /// (the test is skipped, with a notice) where containerd is not installed.
    fn with_busybox() -> Option<Containerd> {
        require_root();
        if !installed("containerd") || !installed("ctr") {
            eprintln!("NOTICE: containerd is not installed; skipping the containerd test (apt-get install containerd)");
            return None;
        }
        let ctd = Containerd::start();
        ok(
            ctd.ctr(&[
                "images",
                "import",
                fixture("busybox/docker-archive.tar").to_str().unwrap(),
            ]),
            "ctr images import",
        );
        Some(ctd)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        berth_tests::unmount_everything_below(self.dir.path());
    }
}

#[test]
fn containerd_runs_execs_lists_and_kills_tasks_with_berth_runtime() {
    let Some(ctd) = Containerd::with_busybox() else {
        return;
    };
    let runtime = bin("berth-runtime");
    let runtime = runtime.to_str().unwrap();
    let image = BUSYBOX;
    let one_shot = unique_id("ctd-once");
    let out = ctd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        runtime,
        image,
        &one_shot,
        "sh",
        "-c",
        "echo hello; exit 3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));

    let id = unique_id("ctd");
    ok(
        ctd.ctr(&[
            "run",
            "-d",
            "--runc-binary",
            runtime,
            image,
            &id,
            "sleep",
            "120",
        ]),
        "ctr run -d",
    );
    let out = ok(
        ctd.ctr(&[
            "task",
            "exec",
            "--exec-id",
            "e1",
            &id,
            "sh",
            "-c",
            "echo in-exec; ps -o comm | grep -c sleep",
        ]),
        "ctr task exec",
    );
    assert_eq!(out, "in-exec\n1\n");
    let listing = ok(ctd.ctr(&["task", "ps", &id]), "ctr task ps");
    assert!(
        listing.lines().count() >= 2,
        "the init is listed: {listing}"
    );
    ok(ctd.ctr(&["task", "pause", &id]), "pause");
    let tasks = ok(ctd.ctr(&["task", "ls"]), "task ls");
    assert!(
        tasks
            .lines()
            .any(|l| l.contains(&id) && l.contains("PAUSED")),
        "{tasks}"
    );
    ok(ctd.ctr(&["task", "resume", &id]), "resume");
    ok(
        ctd.ctr(&["task", "kill", "--all", "--signal", "SIGKILL", &id]),
        "kill --all",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = ok(ctd.ctr(&["task", "ls"]), "task ls");
        if tasks
            .lines()
            .any(|l| l.contains(&id) && l.contains("STOPPED"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the task never stopped: {tasks}");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(ctd.ctr(&["task", "delete", &id]), "task delete");
    ok(ctd.ctr(&["container", "delete", &id]), "container delete");
    assert_no_cgroup_named(&id);
    assert!(
        !Path::new("/run/containerd/runc/default").join(&id).exists(),
        "berth-runtime state removed"
    );
}

/// What only containerd's shim asks of a runtime (see docs/containerd.md):
/// errors read back from the `--log FILE --log-format json` file, the
/// shim's own fds (a socket at fd 3 during `create`) kept out of the task,
/// and the cgroup path and limits of containerd's spec (`/NAMESPACE/ID`).
#[test]
fn containerd_reads_berth_runtime_errors_and_its_fds_never_reach_the_task() {
    let Some(ctd) = Containerd::with_busybox() else {
        return;
    };
    let runtime = bin("berth-runtime");
    let runtime = runtime.to_str().unwrap();
    let image = BUSYBOX;

    // The shim reports what berth-runtime wrote to its JSON log, in
    // berth-runtime's own words.
    let failing = unique_id("ctd-fail");
    let out = ctd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        runtime,
        image,
        &failing,
        "/no/such/binary",
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "OCI runtime create failed: exec \"/no/such/binary\": No such file or directory"
        ),
        "{err}"
    );

    // Only the shim's stdio pipes reach the task: fds 0-2, nothing else
    // (the 4th entry is ls's own directory fd, gone when the link is read).
    let fds = unique_id("ctd-fds");
    let out = ok(
        ctd.ctr(&[
            "run",
            "--rm",
            "--runc-binary",
            runtime,
            image,
            &fds,
            "ls",
            "-l",
            "/proc/self/fd",
        ]),
        "ctr run ls /proc/self/fd",
    );
    let open: Vec<&str> = out.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(open.len(), 3, "{out}");
    assert!(open.iter().all(|l| l.contains("pipe:")), "{out}");

    // containerd's cgroup path and memory limit are applied as given.
    let id = unique_id("ctd-mem");
    ok(
        ctd.ctr(&[
            "run",
            "-d",
            "--memory-limit",
            "67108864",
            "--runc-binary",
            runtime,
            image,
            &id,
            "sleep",
            "120",
        ]),
        "ctr run -d --memory-limit",
    );
    let cgroup = Path::new("/sys/fs/cgroup/memory/default").join(&id);
    let unified = Path::new("/sys/fs/cgroup/default").join(&id);
    let limit = std::fs::read_to_string(cgroup.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(unified.join("memory.max")))
        .expect("the task's memory cgroup at /default/ID");
    assert_eq!(limit.trim(), "67108864");
    ok(
        ctd.ctr(&["task", "kill", "--signal", "SIGKILL", &id]),
        "task kill",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(ctd.ctr(&["task", "ls"]), "task ls")
        .lines()
        .any(|l| l.contains(&id) && l.contains("STOPPED"))
    {
        assert!(Instant::now() < deadline, "the task never stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(ctd.ctr(&["task", "delete", &id]), "task delete");
    ok(ctd.ctr(&["container", "delete", &id]), "container delete");
    assert_no_cgroup_named(&id);
    for gone in [&failing, &fds, &id] {
        assert!(
            !Path::new("/run/containerd/runc/default")
                .join(gone)
                .exists(),
            "berth-runtime state of {gone} removed"
        );
    }
}

//! Shared helpers for the berth-runtime end-to-end tests: a bundle made from
//! the busybox fixture with a config the test edits as JSON, a runtime bound
//! to a temporary state root, and checks that nothing (cgroup, state,
//! process, mount) is left behind.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{bin, describe, fixture, require_root, unmount_everything_below};
use serde_json::{json, Value};

/// A unique container id for this test run.
pub fn unique_id(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand::random::<u32>())
}

/// An OCI bundle in a temporary directory: a copy of the busybox rootfs and
/// a config.json written from [`Bundle::config`] by [`Bundle::write`].
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    /// busybox rootfs, writable, no terminal, running `args`.
    pub fn new(args: &[&str]) -> Bundle {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-")
            .tempdir()
            .expect("temp bundle");
        let status = Command::new("cp")
            .arg("-a")
            .arg(fixture("busybox/rootfs"))
            .arg(dir.path().join("rootfs"))
            .status()
            .expect("cp");
        assert!(status.success(), "copy the busybox rootfs");
        let mut config = default_config();
        config["process"]["args"] = json!(args);
        Bundle { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Write config.json from `self.config`.
    pub fn write(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn add_mount(&mut self, mount: Value) {
        self.config["mounts"].as_array_mut().unwrap().push(mount);
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        unmount_everything_below(self.dir.path());
    }
}

/// The runtime's own default config (what `berth-runtime spec` writes), with
/// a writable root, no terminal, and `true` to run.
pub fn default_config() -> Value {
    let mut config = berth_runtime::bundle::default_spec_json();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["true"]);
    config["root"]["readonly"] = json!(false);
    config["hostname"] = json!("berth-test");
    config
}

/// berth-runtime bound to a temporary state root; deletes (with --force)
/// every container it created when dropped.
pub struct Runtime {
    pub root: tempfile::TempDir,
    pub ids: std::cell::RefCell<Vec<String>>,
}

impl Runtime {
    pub fn new() -> Runtime {
        require_root();
        Runtime {
            root: tempfile::Builder::new()
                .prefix("berth-rt-state-")
                .tempdir()
                .expect("temp state root"),
            ids: Default::default(),
        }
    }

    /// `berth-runtime --root ROOT ARGS...`
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(bin("berth-runtime"));
        cmd.arg("--root").arg(self.root.path()).args(args);
        cmd
    }

    /// Run a verb and return its output (stdin closed).
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn berth-runtime")
    }

    /// Run a verb that must succeed; its stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "berth-runtime {args:?}: {}",
            describe(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Remember `id` for cleanup.
    pub fn track(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    /// `run --bundle B ID` in the foreground: the container's output and status.
    pub fn run_bundle(&self, bundle: &Bundle, id: &str) -> Output {
        bundle.write();
        self.track(id);
        self.run([
            "run".as_ref(),
            "--bundle".as_ref(),
            bundle.path().as_os_str(),
            id.as_ref(),
        ])
    }

    /// `create --bundle B ID`, which must succeed. The container's stdio is
    /// inherited from `create`, so it goes to files here: a pipe would stay
    /// open in the waiting init and `create`'s output would never end.
    pub fn create(&self, bundle: &Bundle, id: &str) {
        bundle.write();
        self.track(id);
        let mut out_file = tempfile::tempfile().unwrap();
        let mut err_file = tempfile::tempfile().unwrap();
        let status = self
            .command([
                "create".as_ref(),
                "--bundle".as_ref(),
                bundle.path().as_os_str(),
                id.as_ref(),
            ])
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().unwrap())
            .stderr(err_file.try_clone().unwrap())
            .status()
            .expect("spawn berth-runtime create");
        let mut text = String::new();
        use std::io::{Read, Seek};
        for f in [&mut out_file, &mut err_file] {
            f.rewind().unwrap();
            f.read_to_string(&mut text).unwrap();
        }
        assert!(status.success(), "create {id}: {status}: {text}");
    }

    /// The parsed `state ID`.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(["state", id])).expect("state is JSON")
    }

    /// Poll `state` until the status is `want` (the container's own pace;
    /// a deadline only turns a hang into a failure).
    pub fn wait_for_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self.state(id);
            if state["status"] == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} never became {want}: {state}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.run(["delete", "--force", id.as_str()]);
        }
        unmount_everything_below(self.root.path());
    }
}

/// The cgroup directories a container with the default cgroupsPath would
/// have (`<hierarchy>/berth/<id>`), that exist now.
pub fn cgroup_dirs_of(id: &str) -> Vec<PathBuf> {
    berth_tests::existing_cgroup_dirs(&Path::new("berth").join(id))
}

/// Host processes whose command line mentions `needle` (the container id).
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Host mounts whose mount point is below `dir`.
pub fn host_mounts_below(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| Path::new(p).starts_with(dir))
        })
        .map(str::to_string)
        .collect()
}

/// Assert that nothing of container `id` is left: cgroups, state, processes,
/// mounts below the bundle.
pub fn assert_nothing_left(rt: &Runtime, id: &str, bundle: &Bundle) {
    assert_eq!(
        cgroup_dirs_of(id),
        Vec::<PathBuf>::new(),
        "cgroups of {id} left behind"
    );
    assert!(
        !rt.root.path().join(id).exists(),
        "state directory of {id} left behind"
    );
    assert_eq!(
        processes_mentioning(id),
        Vec::<i32>::new(),
        "processes of {id} left behind"
    );
    assert_eq!(
        host_mounts_below(bundle.path()),
        Vec::<String>::new(),
        "mounts left behind on the host"
    );
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

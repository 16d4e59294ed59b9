//! Shared helpers for berth's end-to-end tests: where the built binaries and
//! the fixture images are, and isolated temporary roots so tests run in
//! parallel without seeing each other (or a developer's /var/lib/berth).
//!
//! The tests drive the real binaries as root. Build them first
//! (`cargo build --workspace`); the README's test command does that.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Panic with a clear message unless running as root: these tests exercise
/// namespaces, mounts and cgroups for real and cannot be faked.
pub fn require_root() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this end-to-end test needs root (namespaces, mounts, cgroups): run the suite with sudo");
    }
}

/// The directory holding the built binaries: `BERTH_BIN_DIR`, or the cargo
/// target directory this test binary was built in (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let deps = exe.parent().expect("test binary has a directory");
    let profile_dir = if deps.ends_with("deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    profile_dir.to_path_buf()
}

/// The path of a built binary (`berth`, `berth-runtime`, ...), checked to exist.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// Where the fixture images are cached: `BERTH_FIXTURES`, else
/// /var/cache/berth-fixtures (built by rootfs-fixtures/build.sh).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("BERTH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth-fixtures"))
}

/// A fixture file or directory, checked to exist with a hint on how to build it.
pub fn fixture(relative: &str) -> PathBuf {
    let path = fixtures_dir().join(relative);
    assert!(
        path.exists(),
        "fixture {} is missing: run rootfs-fixtures/build.sh first",
        path.display()
    );
    path
}

/// An isolated berth installation: its own `--root` and `--state` in a
/// temporary directory, removed (with anything mounted below it) on drop.
/// Its default network has a bridge and a /24 of its own (`BERTH_BRIDGE`,
/// `BERTH_SUBNET`), so tests run in parallel beside a developer's berth0,
/// and berth never turns on ip_forward for it (`BERTH_IP_FORWARD=0`):
/// nothing a test runs can be routed off the machine. The bridge and the
/// root's nftables table are removed on drop.
pub struct TestRoot {
    dir: tempfile::TempDir,
    bridge: String,
    subnet: String,
}

/// A bridge name and a /24 of 10.226.0.0/15 that no host route covers.
fn test_network() -> (String, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let routes = Command::new("ip")
        .args(["-4", "route"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let slot = (pid.wrapping_mul(13) + n) % 500;
        let prefix = format!("10.{}.{}", 226 + slot / 250, slot % 250 + 1);
        if n < 1000 && routes.contains(&format!("{prefix}.")) {
            continue;
        }
        return (
            format!("bt{:05x}{:03x}", pid & 0xfffff, n & 0xfff),
            format!("{prefix}.0/24"),
        );
    }
}

impl TestRoot {
    pub fn new() -> TestRoot {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir_in(std::env::temp_dir())
            .expect("create temporary root");
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let (bridge, subnet) = test_network();
        TestRoot {
            dir,
            bridge,
            subnet,
        }
    }

    /// The default network's bridge of this root.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A `berth` command bound to this root (BERTH_ROOT/BERTH_STATE set).
    pub fn berth<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(bin("berth"));
        cmd.env("BERTH_ROOT", self.root())
            .env("BERTH_STATE", self.state())
            .env("BERTH_BRIDGE", &self.bridge)
            .env("BERTH_SUBNET", &self.subnet)
            .env("BERTH_IP_FORWARD", "0")
            .args(args);
        cmd
    }

    /// Run `berth ARGS`, returning its output whatever the status.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.berth(args).output().expect("spawn berth")
    }

    /// Run `berth ARGS` and return stdout, panicking with stderr on failure.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "berth {:?} failed with {}:\nstdout: {}\nstderr: {}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

impl Default for TestRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        // Networks first: their records may live on a filesystem a test
        // mounted below the root (a small tmpfs as --root), gone once unmounted.
        self.remove_network_leftovers();
        unmount_everything_below(self.dir.path());
    }
}

impl TestRoot {
    /// The default bridge and this root's nftables table, if berth made them.
    fn remove_network_leftovers(&self) {
        if !self.root().join("networks").exists() {
            return;
        }
        // User networks a failed test left (their bridges are br-<id>).
        if let Ok(out) = self
            .berth(["network", "ls", "--format", "{{.Name}}"])
            .output()
        {
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                if !matches!(name, "bridge" | "host" | "none") {
                    let _ = self.berth(["network", "rm", name]).output();
                }
            }
        }
        let table = self
            .berth(["network", "inspect", "bridge"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| {
                v[0]["Options"]["berth.nftables.table"]
                    .as_str()
                    .map(String::from)
            });
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        if let Some(table) = table {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", &table])
                .output();
        }
    }
}

/// Lazily unmount every mount point at or below `dir` (deepest first), so a
/// failed test never leaves a mount behind that would stop the removal.
pub fn unmount_everything_below(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(berth_runtime::mountinfo::unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Text of a command's stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A [`TestRoot`] with the busybox fixture loaded, for tests that run
/// containers. On drop every container is force-removed, so no process,
/// cgroup or mount outlives a failed test (then the root itself goes).
pub struct Lab {
    pub root: TestRoot,
}

impl Lab {
    /// A fresh root with `busybox:latest` loaded.
    pub fn new() -> Lab {
        require_root();
        let root = TestRoot::new();
        let archive = fixture("busybox/docker-archive.tar");
        root.ok(["load", "-i", archive.to_str().unwrap()]);
        Lab { root }
    }

    /// `berth ARGS`, whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.root.run(args)
    }

    /// `berth ARGS`, asserted to succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.root.ok(args)
    }

    /// `berth ARGS`, asserted to succeed; its whole output (stderr too).
    pub fn ok_output(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "berth {args:?}: {}", describe(&out));
        out
    }

    /// `berth run -d ARGS`: the new container's full id.
    pub fn detached(&self, args: &[&str]) -> String {
        let mut full = vec!["run", "-d"];
        full.extend_from_slice(args);
        let id = self.ok(&full).trim().to_string();
        assert_eq!(id.len(), 64, "run -d prints the full id, got {id:?}");
        id
    }

    /// `berth inspect -f TEMPLATE NAME`, trimmed.
    pub fn inspect(&self, name: &str, template: &str) -> String {
        self.ok(&["inspect", "-f", template, name])
            .trim()
            .to_string()
    }

    /// Poll `inspect` until `template` renders `want`, at most `limit`. Only
    /// for states no event announces (e.g. the end of a restart back-off).
    pub fn eventually(&self, name: &str, template: &str, want: &str, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let got = self.inspect(name, template);
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{template} of {name} is {got:?}, wanted {want:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Whether any cgroup hierarchy still has container `id`'s directory.
    pub fn cgroup_exists(&self, id: &str) -> bool {
        ["memory", "pids", "cpu", "unified"]
            .iter()
            .any(|h| Path::new(&format!("/sys/fs/cgroup/{h}/berth/{id}")).exists())
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.root.run(["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.root.run(["rm", "-f", id]);
        }
    }
}

/// `<hierarchy>/<relative>` in every cgroup hierarchy under /sys/fs/cgroup
/// (and `/sys/fs/cgroup/<relative>` itself, a pure v2 host's), those that
/// exist now.
pub fn existing_cgroup_dirs(relative: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| entries.flatten().map(|e| e.path().join(relative)).collect())
        .unwrap_or_default();
    found.push(Path::new("/sys/fs/cgroup").join(relative));
    found.retain(|d| d.is_dir());
    found.dedup();
    found
}

/// Removes, when dropped, the parent cgroup a peer engine made (podman's
/// `libpod_parent`, containerd's namespace `default`) from every hierarchy
/// where it did not exist when the guard was made. Only empty directories go
/// (deepest first): the kernel refuses to remove a cgroup with processes.
pub struct PeerCgroupParent {
    name: String,
    preexisting: Vec<PathBuf>,
}

impl PeerCgroupParent {
    pub fn new(name: &str) -> PeerCgroupParent {
        PeerCgroupParent {
            name: name.to_string(),
            preexisting: existing_cgroup_dirs(Path::new(name)),
        }
    }
}

impl Drop for PeerCgroupParent {
    fn drop(&mut self) {
        for dir in existing_cgroup_dirs(Path::new(&self.name)) {
            if !self.preexisting.contains(&dir) {
                remove_empty_cgroups(&dir);
            }
        }
    }
}

fn remove_empty_cgroups(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_cgroups(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

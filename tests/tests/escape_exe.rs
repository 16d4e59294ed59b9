//! CVE-2019-5736 class: a process of the container overwrites the host's
//! berth binary through /proc/PID/exe of a process that entered the
//! container and still is (or, re-executed, again is) that binary.
//!
//! Two defenses, one test each (docs/security.md):
//! 1. a process entering the container (`berth exec`) is non-dumpable until
//!    its execve, so no process of the container can open its
//!    /proc/PID/exe while it is still berth — a watcher inside the container
//!    races hundreds of `exec`s and must never get hold of the binary;
//! 2. when the container makes berth execute *itself* inside it
//!    (`/proc/self/exe` as the program, or a `#!/proc/self/exe` script),
//!    the re-executed berth runs from a read-only view of the binary: the
//!    watcher does get an fd, but opening it for writing fails — while it
//!    runs (the kernel's ETXTBSY, which it checks first) and, what counts,
//!    after nothing on the host runs that binary any more (EROFS: ETXTBSY
//!    no longer protects it, the read-only mount does).
//!
//! The tests run a *copy* of berth for the commands that enter the
//! container: if the defense failed, the copy is what would be opened for
//! writing (the watcher only opens, never writes), and ETXTBSY from other
//! berth processes (monitors) cannot mask the result.

mod escape_support;
mod images_support;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{bin, describe};
use escape_support::{Lab, ATTACKER};

/// A copy of the berth binary in its own directory (with berth-init, so
/// `--init` still finds it) and its (dev, inode).
struct Copy {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Copy {
    fn new() -> Copy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth");
        std::fs::copy(bin("berth"), &path).unwrap();
        Copy { _dir: dir, path }
    }

    fn identity(&self) -> String {
        let meta = std::fs::metadata(&self.path).unwrap();
        format!("{}:{}", meta.dev(), meta.ino())
    }

    fn digest(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    fn command(&self, lab: &Lab, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.env("BERTH_ROOT", lab.root.root())
            .env("BERTH_STATE", lab.root.state())
            .args(args);
        cmd
    }
}

/// The watcher's log, read from the host through the container's overlay
/// upper directory.
fn log_path(lab: &Lab, id: &str) -> PathBuf {
    lab.root
        .root()
        .join("containers")
        .join(id)
        .join("upper/tmp/watch.log")
}

/// Wait (polling the file: there is no event to wait on) until `log` has a
/// line starting with `prefix`; return that line.
fn wait_for_line(log: &Path, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with(prefix)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix:?} line in the watcher's log: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start the watcher in container `id`, looking for `target` (dev:ino).
fn start_watcher(lab: &Lab, id: &str, target: &str) -> PathBuf {
    lab.ok(&[
        "exec",
        "-d",
        id,
        ATTACKER,
        "watch-exe",
        target,
        "/tmp/watch.log",
        "/tmp/watch.stop",
    ]);
    let log = log_path(lab, id);
    wait_for_line(&log, "ready");
    log
}

fn stop_watcher(lab: &Lab, id: &str, log: &Path) -> String {
    lab.ok(&["exec", id, "touch", "/tmp/watch.stop"]);
    wait_for_line(log, "done");
    std::fs::read_to_string(log).unwrap()
}

/// Defense 1: a process entering with `berth exec` cannot be caught while
/// it is still the berth binary.
#[test]
fn processes_entering_with_exec_never_expose_the_berth_binary() {
    let lab = Lab::new().with_attacker();
    let copy = Copy::new();
    let id = lab.detached(&["attacker", "sleep", "600"]);
    let log = start_watcher(&lab, &id, &copy.identity());
    let iterations: usize = std::env::var("BERTH_EXEC_RACE_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(150);
    for _ in 0..iterations {
        let out = copy.command(&lab, &["exec", &id, "true"]).output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    }
    let text = stop_watcher(&lab, &id, &log);
    let scans: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("done scans "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        scans > iterations as u64,
        "the watcher really raced the execs ({scans} scans of /proc)"
    );
    let seen: Vec<&str> = text.lines().filter(|l| l.starts_with("seen")).collect();
    assert!(
        seen.is_empty(),
        "a process of the container opened the berth binary of an entering process: {seen:?}"
    );
}

/// Defense 2: berth re-executed inside the container (`/proc/self/exe`)
/// is visible — and read-only, even once nothing on the host runs it.
#[test]
fn berth_executed_inside_the_container_cannot_be_opened_for_writing() {
    let lab = Lab::new().with_attacker();
    let copy = Copy::new();
    let before = copy.digest();
    let id = lab.detached(&["attacker", "sleep", "600"]);
    let log = start_watcher(&lab, &id, &copy.identity());

    // `berth load` reading its stdin: the re-executed berth stays inside
    // the container until the test closes the pipe.
    let mut reexecuted = copy
        .command(&lab, &["exec", "-i", &id, "/proc/self/exe", "load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = wait_for_line(&log, "seen ");
    let mut stdin = reexecuted.stdin.take().unwrap();
    let _ = stdin.write_all(b"not an archive");
    drop(stdin);
    let out = reexecuted.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "berth load in the container read garbage and failed: {}",
        describe(&out)
    );
    // Nothing on the host executes the copy any more (no ETXTBSY): the
    // moment the original attack writes.
    let text = stop_watcher(&lab, &id, &log);

    let fields: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(fields[2], "write-open");
    assert_ne!(
        fields[3], "OPENED",
        "ESCAPE: /proc/PID/exe opened for writing: {seen}"
    );
    assert_ne!(fields[5], "OPENED", "ESCAPE: reopened for writing: {seen}");
    let finals: Vec<&str> = text.lines().filter(|l| l.starts_with("final")).collect();
    assert!(
        !finals.is_empty(),
        "the watcher tried again at the end: {text}"
    );
    for line in finals {
        assert!(
            line.ends_with("EROFS"),
            "ESCAPE once the binary stopped running: {line}"
        );
    }
    assert_eq!(copy.digest(), before, "the berth binary is unchanged");
}

/// The same planted by an image, as the original exploit did: /bin/sh
/// replaced by a link to /proc/self/exe, waiting for someone to `exec sh`.
#[test]
fn an_image_that_links_bin_sh_to_proc_self_exe_gets_a_read_only_berth() {
    use berth_engine::layer::rawtar::Entry;
    let lab = Lab::new();
    lab.load_image("trojan", vec![Entry::symlink("bin/sh", "/proc/self/exe")]);
    let copy = Copy::new();
    let before = copy.digest();
    let id = lab.detached(&["trojan", "sleep", "600"]);
    let log = start_watcher(&lab, &id, &copy.identity());
    // `berth exec -i ID sh load`: the kernel follows /bin/sh to the running
    // berth binary, which starts as `sh load`, i.e. `berth load`.
    let mut child = copy
        .command(&lab, &["exec", "-i", &id, "sh", "load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = wait_for_line(&log, "seen ");
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    let text = stop_watcher(&lab, &id, &log);
    assert!(!seen.contains("OPENED"), "ESCAPE while it runs: {seen}");
    for line in text.lines().filter(|l| l.starts_with("final")) {
        assert!(
            line.ends_with("EROFS"),
            "ESCAPE once it stopped running: {line}"
        );
    }
    assert_eq!(copy.digest(), before, "the berth binary is unchanged");
}

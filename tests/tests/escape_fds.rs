//! CVE-2024-21626 class: a file descriptor or working directory of the host
//! reaching a container's process. runc leaked a directory fd of the host's
//! cgroupfs into the container's init, and `process.cwd = /proc/self/fd/7`
//! put the container's program in the host's filesystem.
//!
//! Here the test itself leaks the way a careless caller (a CI runner, a
//! shell) would: it opens a host directory and a host file *without*
//! O_CLOEXEC, runs berth from inside a host directory, and then looks from
//! inside the container — at the program's own fds and cwd, at PID 1's (with
//! and without --init), at a process entering with `exec` — and also asks
//! for the leaked fd as the working directory. Defenses (runtime):
//! every fd above 2 is close-on-exec before the program starts
//! (`close_range(CLOSE_RANGE_CLOEXEC)`), the cwd is entered after
//! pivot_root and checked to be inside the root (`getcwd` must not say
//! "(unreachable)").

mod escape_support;
mod images_support;

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use berth_tests::describe;
use escape_support::{Lab, ATTACKER};

/// Host things the test leaks into berth: a directory and a file, opened
/// without O_CLOEXEC, and a directory berth is started in.
struct Leak {
    dir: tempfile::TempDir,
    dir_fd: RawFd,
    file_fd: RawFd,
}

impl Leak {
    fn new() -> Leak {
        let dir = tempfile::Builder::new()
            .prefix("host-secret-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("secret"), "host data").unwrap();
        let open = |path: &Path, flags: i32| -> RawFd {
            let c = CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: a valid path; the fd is deliberately inheritable and
            // closed in Drop.
            let fd = unsafe { libc::open(c.as_ptr(), flags) };
            assert!(fd >= 0, "open {}", path.display());
            fd
        };
        let dir_fd = open(dir.path(), libc::O_RDONLY | libc::O_DIRECTORY);
        let file_fd = open(&dir.path().join("secret"), libc::O_RDWR);
        Leak {
            dir,
            dir_fd,
            file_fd,
        }
    }

    fn marker(&self) -> String {
        self.dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn cwd(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `berth ARGS` started in the leaked directory, with the leaked fds.
    fn berth(&self, lab: &Lab, args: &[&str]) -> std::process::Output {
        lab.root
            .berth(args)
            .current_dir(self.cwd())
            .output()
            .unwrap()
    }
}

impl Drop for Leak {
    fn drop(&mut self) {
        // SAFETY: closing the fds this struct opened.
        unsafe {
            libc::close(self.dir_fd);
            libc::close(self.file_fd);
        }
    }
}

/// Check `berth-attacker fds` output: no fd and no cwd names the leaked
/// directory, every cwd is the container's `/`.
fn assert_nothing_leaked(out: &std::process::Output, leak: &Leak, who: &str) {
    assert!(out.status.success(), "{who}: {}", describe(out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" cwd "), "{who}: the listing ran: {text}");
    for line in text.lines() {
        assert!(
            !line.contains(&leak.marker()),
            "{who}: a host fd or cwd reached the container: {line}\n{text}"
        );
        if let Some(cwd) = line.split_once(" cwd ").map(|(_, c)| c) {
            assert_eq!(cwd, "/", "{who}: the cwd is the container's root: {line}");
        }
    }
    for (fd, _) in [(leak.dir_fd, "dir"), (leak.file_fd, "file")] {
        let pattern = format!("self fd {fd} ");
        for line in text.lines().filter(|l| l.starts_with(&pattern)) {
            // The number may be the listing's own fd (closed by the time
            // its link is read: "(gone)"), never the host's file.
            assert!(
                line.ends_with("(gone)") || line.contains("/proc/"),
                "{who}: fd {fd} is open: {line}"
            );
        }
    }
}

#[test]
fn no_host_fd_or_cwd_reaches_the_program_or_pid_1() {
    let lab = Lab::new().with_attacker();
    let leak = Leak::new();
    let out = leak.berth(&lab, &["run", "--rm", "attacker", ATTACKER, "fds"]);
    assert_nothing_leaked(&out, &leak, "run (program is PID 1)");
    let out = leak.berth(
        &lab,
        &["run", "--rm", "--init", "attacker", ATTACKER, "fds"],
    );
    assert_nothing_leaked(&out, &leak, "run --init (berth-init is PID 1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 cwd /"),
        "berth-init's fds were listed: {text}"
    );
}

#[test]
fn no_host_fd_or_cwd_reaches_an_exec_process() {
    let lab = Lab::new().with_attacker();
    let id = lab.detached(&["attacker", "sleep", "300"]);
    let leak = Leak::new();
    let out = leak.berth(&lab, &["exec", &id, ATTACKER, "fds"]);
    assert_nothing_leaked(&out, &leak, "exec");
    let out = leak.berth(
        &lab,
        &[
            "exec",
            "-d",
            &id,
            "sh",
            "-c",
            "ls -l /proc/self/fd > /tmp/fds",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let listing = lab.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "while [ ! -s /tmp/fds ]; do sleep 0.05; done; cat /tmp/fds",
    ]);
    assert!(!listing.contains(&leak.marker()), "exec -d: {listing}");
}

/// The attack itself: the leaked directory fd as the working directory.
#[test]
fn a_leaked_fd_as_working_directory_is_refused() {
    let lab = Lab::new().with_attacker();
    let leak = Leak::new();
    let workdir = format!("/proc/self/fd/{}", leak.dir_fd);
    let out = leak.berth(
        &lab,
        &["run", "--rm", "-w", &workdir, "busybox", "cat", "secret"],
    );
    assert!(
        !out.status.success(),
        "run -w {workdir} must not start in the host's directory: {}",
        describe(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("host data"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The monitor closed the fd it inherited, so for `run` the number
    // names nothing (or something else) by the time the init enters it.
    assert!(
        stderr.contains("chdir") && stderr.trim().lines().count() == 1,
        "one clear line naming the step: {stderr}"
    );

    let id = lab.detached(&["busybox", "sleep", "300"]);
    // `exec` is the caller's child: the fd is open in it, and the runtime's
    // check (getcwd after chdir must be inside the root) refuses it.
    let out = leak.berth(&lab, &["exec", "-w", &workdir, &id, "cat", "secret"]);
    assert!(
        !out.status.success(),
        "exec -w {workdir} must not start in the host's directory: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the container"),
        "{}",
        describe(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("host data"));
    assert_eq!(
        std::fs::read_to_string(leak.cwd().join("secret")).unwrap(),
        "host data"
    );
}

//! The crate used in-process, as the engine's monitor uses it (root needed):
//! create with pipes as stdio, start, waitpid the init (a direct child of the
//! caller), exec with a returned pty, delete. This test binary is
//! multi-threaded, so it also exercises the intermediate-process path.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_runtime::{self as rt, Console, CreateOptions, ExecOptions, Stdio};
use nix::sys::wait::{waitpid, WaitStatus};

fn fixture_rootfs() -> PathBuf {
    let base = std::env::var_os("BERTH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth-fixtures"));
    let rootfs = base.join("busybox/rootfs");
    assert!(
        rootfs.exists(),
        "fixture {} is missing: run rootfs-fixtures/build.sh busybox",
        rootfs.display()
    );
    rootfs
}

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (namespaces, mounts, cgroups)"
    );
}

/// A bundle dir with a copy of the busybox rootfs running `args`.
fn bundle(args: &[&str], terminal: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture_rootfs())
        .arg(dir.path().join("rootfs"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut config = rt::bundle::default_spec_json();
    config["process"]["args"] = serde_json::json!(args);
    config["process"]["terminal"] = serde_json::json!(terminal);
    config["root"]["readonly"] = serde_json::json!(false);
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    dir
}

fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
}

fn read_all(fd: OwnedFd) -> String {
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).unwrap();
    text
}

fn id(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

#[test]
fn create_start_wait_delete_with_pipes() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let b = bundle(
        &[
            "sh",
            "-c",
            "read line; echo got $line; echo oops >&2; exit 3",
        ],
        false,
    );
    let (stdin_r, stdin_w) = pipe();
    let (stdout_r, stdout_w) = pipe();
    let (stderr_r, stderr_w) = pipe();
    let name = id("inproc");
    let mut opts = CreateOptions::new(&name, b.path(), state.path());
    opts.stdio = Stdio::Fds([stdin_r, stdout_w, stderr_w]);
    let created = rt::create(opts).unwrap();
    assert_eq!(
        rt::state(state.path(), &name).unwrap().status,
        rt::Status::Created
    );
    rt::start(state.path(), &name).unwrap();
    rustix::io::write(&stdin_w, b"hello\n").unwrap();
    drop(stdin_w);
    // The init is our own child: waitpid gives its exit status.
    let status = waitpid(created.pid, None).unwrap();
    assert_eq!(status, WaitStatus::Exited(created.pid, 3));
    assert_eq!(read_all(stdout_r), "got hello\n");
    assert_eq!(read_all(stderr_r), "oops\n");
    assert_eq!(
        rt::state(state.path(), &name).unwrap().status,
        rt::Status::Stopped
    );
    rt::delete(state.path(), &name, false).unwrap();
    assert!(matches!(
        rt::state(state.path(), &name),
        Err(rt::Error::NotFound(_))
    ));
}

#[test]
fn exec_failures_are_typed_for_docker_exit_codes() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let b = bundle(&["/no/such/binary"], false);
    let err = rt::create(CreateOptions::new(id("enoent"), b.path(), state.path())).unwrap_err();
    assert!(matches!(err, rt::Error::ExecNotFound { .. }), "{err}");
    let b = bundle(&["/etc/passwd"], false);
    let err = rt::create(CreateOptions::new(id("eacces"), b.path(), state.path())).unwrap_err();
    assert!(
        matches!(
            err,
            rt::Error::ExecDenied {
                errno: nix::errno::Errno::EACCES,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        rt::list(state.path()).unwrap().is_empty(),
        "nothing recorded"
    );
}

#[test]
fn exec_returns_a_child_and_a_pty_on_request() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let b = bundle(&["sleep", "60"], false);
    let name = id("inexec");
    let (_, out_w) = pipe();
    let (_, err_w) = pipe();
    let (in_r, _in_w) = pipe();
    let mut opts = CreateOptions::new(&name, b.path(), state.path());
    opts.stdio = Stdio::Fds([in_r, out_w, err_w]);
    let created = rt::create(opts).unwrap();
    rt::start(state.path(), &name).unwrap();

    let mut process = oci_spec::runtime::Process::default();
    process.set_args(Some(vec!["sh".into(), "-c".into(), "tty; exit 5".into()]));
    process.set_terminal(Some(true));
    process.set_capabilities(None);
    process.set_cwd(PathBuf::from("/"));
    let executed = rt::exec(
        state.path(),
        &name,
        process,
        ExecOptions {
            console: Console::Return,
            ..Default::default()
        },
    )
    .unwrap();
    let master = executed.console.expect("the pty master comes back");
    let status = waitpid(executed.pid, None).unwrap();
    assert_eq!(status, WaitStatus::Exited(executed.pid, 5));
    let mut buf = [0u8; 256];
    let n = rustix::io::read(&master, &mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("/dev/pts/"), "{text:?}");

    rt::kill(
        state.path(),
        &name,
        nix::sys::signal::Signal::SIGKILL,
        false,
    )
    .unwrap();
    let status = waitpid(created.pid, None).unwrap();
    assert_eq!(
        status,
        WaitStatus::Signaled(created.pid, nix::sys::signal::Signal::SIGKILL, false)
    );
    rt::delete(state.path(), &name, false).unwrap();
}

#[test]
fn resolve_user_reads_the_images_files() {
    let root = fixture_rootfs();
    let nobody = rt::user::resolve_user(Path::new(&root), "nobody").unwrap();
    assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
    let err = rt::user::resolve_user(Path::new(&root), "nosuchuser").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user nosuchuser: no matching entries in passwd file"
    );
}

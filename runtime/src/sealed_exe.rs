//! The berth binary, as seen from inside a container, must be impossible to
//! overwrite (the CVE-2019-5736 class).
//!
//! The attack: every process berth puts into a container (the init, a
//! process entering with `exec`) is a copy of the `berth` process until its
//! final `execve`. The runtime keeps it non-dumpable until then, so other
//! processes of the container cannot open its `/proc/PID/exe`. But if the
//! program the container asks for is `/proc/self/exe` — directly, or as the
//! interpreter of a `#!/proc/self/exe` script planted in the image — the
//! kernel executes the *host's* berth binary again, inside the container,
//! as an ordinary dumpable process. A process of the container can then open
//! that binary through `/proc/PID/exe` and, once it stops running, write to
//! it: the next `berth` command run by root on the host runs the attacker's
//! code.
//!
//! The defense (runc's since 1.1.12 takes the same shape): before a command
//! that starts container processes does anything, berth re-executes itself
//! from a **read-only view** of its own binary, so every process it forks
//! has an `exe` whose mount refuses writes (`EROFS`) whoever asks:
//! 1. `fork(2)` a helper; in it `unshare(CLONE_NEWNS)` and make every mount
//!    private, so nothing it mounts reaches the host;
//! 2. `mount(MS_BIND)` the binary onto itself, then remount that bind mount
//!    `MS_RDONLY`; `open(O_PATH)` the binary through it;
//! 3. send that fd to berth over a socketpair (`SCM_RIGHTS`) and exit —
//!    the mount namespace dies, the mount lives on, detached, only through
//!    the fd;
//! 4. berth `execveat(fd, "", AT_EMPTY_PATH)` with the same arguments and
//!    environment. No copy is made: the page cache is shared with the file.
//!
//! (`open_tree(OPEN_TREE_CLONE)` plus `mount_setattr(MOUNT_ATTR_RDONLY)`
//! would make the same view without a helper, but the detached mount is
//! dissolved when its fd closes at the `execve`, and that waits for an RCU
//! grace period: measured 2.7 ms slower per command here on Linux 6.18.)
//!
//! A binary already on a read-only mount (an immutable OS image, or the
//! re-executed berth itself) needs nothing: [`is_protected`] checks with
//! `fstatvfs(2)`.

use std::ffi::{CString, OsString};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// Set in the environment of the re-executed berth, so that a failure to
/// protect cannot turn into an endless chain of re-executions.
pub const REEXEC_MARKER: &str = "_BERTH_PROTECTED_EXE";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "protecting the berth binary from writes by containers (CVE-2019-5736): {step}: {errno}"
    )]
    Sys {
        step: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("protecting the berth binary from writes by containers (CVE-2019-5736): {0}")]
    Other(String),
}

fn sys(step: &'static str) -> impl FnOnce(nix::errno::Errno) -> SealError {
    move |errno| SealError::Sys { step, errno }
}

/// Whether the running binary sits on a read-only mount.
pub fn is_protected() -> Result<bool, SealError> {
    let exe = rustix::fs::open(
        "/proc/self/exe",
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| sys("open /proc/self/exe")(nix::errno::Errno::from_raw(e.raw_os_error())))?;
    let stat = nix::sys::statvfs::fstatvfs(&exe).map_err(sys("fstatvfs /proc/self/exe"))?;
    Ok(stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Make sure the running berth executes from a read-only view of its binary:
/// returns `Ok` when it already does; otherwise re-executes the process (this
/// call does not return then) or fails.
///
/// Call it first thing in `main`, while the process has one thread.
pub fn reexec_protected() -> Result<(), SealError> {
    if is_protected()? {
        if std::env::var_os(REEXEC_MARKER).is_some() {
            restore_command_name();
        }
        return Ok(());
    }
    if std::env::var_os(REEXEC_MARKER).is_some() {
        return Err(SealError::Other(
            "the re-executed binary is still writable (is the read-only bind mount refused?)"
                .into(),
        ));
    }
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| SealError::Other(format!("readlink /proc/self/exe: {e}")))?;
    if exe.to_string_lossy().ends_with(" (deleted)") {
        return Err(SealError::Other(format!(
            "{} was replaced while berth was starting; run the command again",
            exe.display()
        )));
    }
    let fd = read_only_view(&exe)?;
    keep_finding_init_next_to(&exe);
    tracing::debug!(exe = %exe.display(), "re-executing from a read-only view of the binary");
    std::env::set_var(REEXEC_MARKER, "1");
    let args: Vec<CString> = std::env::args_os().map(c_string).collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut pair = k;
            pair.push("=");
            pair.push(v);
            c_string(pair)
        })
        .collect();
    let err = nix::unistd::execveat(
        fd.as_fd(),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(sys("execveat the read-only view")(err))
}

/// A process started by `execveat(fd, "", AT_EMPTY_PATH)` is named after
/// the fd number ("3") in /proc/PID/comm, which `ps`, `top` and `pgrep`
/// show: give it its program's name back (`prctl(PR_SET_NAME)`).
fn restore_command_name() {
    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let name = Path::new(&arg0)
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let mut name: Vec<u8> = name.into_iter().take(15).collect();
    name.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes
    // from a pointer valid for the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

fn c_string(text: OsString) -> CString {
    // Arguments and environment strings from the kernel never hold NUL.
    CString::new(text.as_bytes()).unwrap_or_default()
}

/// berth-init is found next to the berth binary (see
/// `container::bundle::find_init_binary`); the re-executed binary's
/// /proc/self/exe names the detached mount, not that directory, so name it
/// the way that function reads first: `BERTH_INIT`.
fn keep_finding_init_next_to(exe: &Path) {
    if std::env::var_os("BERTH_INIT").is_some() {
        return;
    }
    if let Some(dir) = exe.parent() {
        let init = dir.join("berth-init");
        if init.is_file() {
            std::env::set_var("BERTH_INIT", init);
        }
    }
}

/// Steps 1-3 of the module docs: an `O_PATH` fd of `exe` on a read-only,
/// detached bind mount.
pub fn read_only_view(exe: &Path) -> Result<OwnedFd, SealError> {
    let (ours, helpers) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("socketpair"))?;
    // SAFETY: called while the process is single-threaded (see
    // `reexec_protected`); the child only makes system calls and `_exit`s.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(ours);
            let code = match helper(exe, helpers.as_raw_fd()) {
                Ok(()) => 0,
                Err(errno) => errno as i32,
            };
            // SAFETY: _exit ends the helper without running the parent's
            // destructors and exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(helpers);
            let received = receive_fd(ours.as_raw_fd());
            let status = waitpid(child, None).map_err(sys("wait for the helper"))?;
            match (received, status) {
                (Some(fd), _) => Ok(fd),
                (None, WaitStatus::Exited(_, code)) if code != 0 => Err(SealError::Sys {
                    step: "bind-mount the binary read-only",
                    errno: nix::errno::Errno::from_raw(code),
                }),
                (None, other) => Err(SealError::Other(format!(
                    "the helper ended with {other:?} without sending the binary"
                ))),
            }
        }
    }
}

/// In the helper: private mount namespace, read-only bind of `exe` onto
/// itself, open it, send the fd.
fn helper(exe: &Path, socket: RawFd) -> Result<(), nix::errno::Errno> {
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(Some(exe), exe, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    mount(
        None::<&str>,
        exe,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )?;
    let fd = nix::fcntl::open(
        exe,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        socket,
        &[IoSlice::new(b"x")],
        &cmsg,
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

fn receive_fd(socket: RawFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for cmsg in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us; we own it.
                return Some(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    None
}

/// The path a protected binary's /proc/self/exe shows (for diagnostics).
pub fn current_exe() -> Option<PathBuf> {
    std::fs::read_link("/proc/self/exe").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (mounts). Copies a binary, makes a read-only view of it,
    /// and checks that the view refuses writes while the file stays writable
    /// on the host, and that the host sees no new mount.
    #[test]
    fn the_view_refuses_writes_and_leaves_no_mount_on_the_host() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test mounts: run the suite as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("tool");
        std::fs::copy("/bin/true", &copy).unwrap();
        let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let fd = read_only_view(&copy).unwrap();
        let through_view = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&through_view)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        let stat = nix::sys::statvfs::fstatvfs(&fd).unwrap();
        assert!(stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
        // Same file: the host path is still writable by the host.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&copy)
            .unwrap();
        let mounts_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(mounts_before, mounts_after, "no mount reached the host");
    }
}

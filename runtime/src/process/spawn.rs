//! Creating the container's process: one `clone3(2)`, or an intermediate
//! process that first joins namespaces and then clones.
//!
//! Mechanism: `clone3` with the new-namespace flags, `CLONE_INTO_CGROUP`
//! (the child is born in its cgroup: no window in which it runs outside it)
//! and, from an intermediate, `CLONE_PARENT` (the new process becomes the
//! *caller's* child, so the caller can `waitpid` it, exactly as if it had
//! cloned it itself). The intermediate is made with `fork(2)` through libc,
//! which runs the libc fork handlers that make a fork from a multi-threaded
//! program safe for malloc in the child.
//!
//! A direct clone3 from the caller is the fast path (one process creation).
//! The intermediate is used when
//! - namespaces must be joined before the clone (pid, user, time, or any
//!   path when a new user namespace is created: see [`crate::namespaces`]);
//! - the new process must not be the caller's child (`exec --detach`);
//! - the caller has more than one thread: a raw clone3 does not run libc's
//!   fork handlers, so a lock held by another thread (malloc's) could stay
//!   locked forever in the child.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::channel::{ChildChannel, ParentChannel};
use crate::error::{Error, Result};
use crate::namespaces::{self, Join};

/// clone3's flag for "born in the cgroup whose directory fd is `cgroup`"
/// (not in libc's CloneFlags, which stop at 32 bits).
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2) (size version 2, with `cgroup`).
#[repr(C)]
#[derive(Debug, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// Where clone3 returned.
enum Forked {
    Child,
    Parent(Pid),
}

/// `clone3(flags)`; without a stack the child runs on a copy of ours, like fork.
fn clone3(flags: CloneFlags, extra: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<Forked> {
    let parent_flag = extra & libc::CLONE_PARENT as u64 != 0;
    let mut args = CloneArgs {
        flags: flags.bits() as u64 | extra,
        // clone3 refuses an exit signal with CLONE_PARENT: the child gets the
        // intermediate's own (SIGCHLD), so its real parent is notified as usual.
        exit_signal: if parent_flag { 0 } else { libc::SIGCHLD as u64 },
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 with a valid, fully initialised clone_args and its size.
    // Without CLONE_VM and without a stack the child gets a copy-on-write copy
    // of this process, like fork(2); it returns 0 there.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        0 => Ok(Forked::Child),
        pid if pid > 0 => {
            let mut names: Vec<&str> = flags.iter_names().map(|(name, _)| name).collect();
            if parent_flag {
                names.push("CLONE_PARENT");
            }
            if cgroup.is_some() {
                names.push("CLONE_INTO_CGROUP");
            }
            let names = names.join("|");
            tracing::debug!(step = "clone3", pid, flags = %names,
                "clone3({names}) -> pid {pid}: a copy of this process, born in its new namespaces");
            Ok(Forked::Parent(Pid::from_raw(pid as i32)))
        }
        _ => Err(Error::sys("clone3", nix::errno::Errno::last())),
    }
}

/// clone3, and without CLONE_INTO_CGROUP if the kernel refuses it for this
/// cgroup (the caller then moves the process with `cgroup.procs`).
fn clone3_into(flags: CloneFlags, extra: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<Forked> {
    match clone3(flags, extra, cgroup) {
        Err(Error::Syscall { errno, .. })
            if cgroup.is_some()
                && matches!(
                    errno,
                    nix::errno::Errno::EBUSY
                        | nix::errno::Errno::EOPNOTSUPP
                        | nix::errno::Errno::EINVAL
                        | nix::errno::Errno::EACCES
                        | nix::errno::Errno::EPERM
                ) =>
        {
            tracing::debug!(%errno, "clone3 into the cgroup refused; cloning without CLONE_INTO_CGROUP");
            clone3(flags, extra, None)
        }
        other => other,
    }
}

/// What to create.
pub struct SpawnRequest<'a> {
    /// New namespaces for the process.
    pub flags: CloneFlags,
    /// Namespaces joined by an intermediate before the clone.
    pub join_first: &'a [Join],
    /// Join these namespaces of a running process (a pidfd) in the
    /// intermediate: `setns(pidfd, flags)` (exec).
    pub join_pidfd: Option<(BorrowedFd<'a>, CloneFlags)>,
    /// The unified-hierarchy cgroup to be born in.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// The process must not be the caller's child.
    pub detach: bool,
}

/// Does this process have other threads? (/proc/self/stat, field 20)
pub fn is_multithreaded() -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return true;
    };
    let Some(end) = text.rfind(')') else {
        return true;
    };
    text[end + 1..]
        .split_whitespace()
        .nth(17)
        .and_then(|n| n.parse::<u32>().ok())
        .is_none_or(|n| n > 1)
}

/// Create the process; in it, run `child_main` (which must not return
/// normally: it execs or exits). Returns the new process's host pid.
pub fn spawn(
    request: SpawnRequest<'_>,
    parent: &ParentChannel,
    child: &ChildChannel,
    child_main: impl FnOnce() -> i32,
) -> Result<Pid> {
    let intermediate = !request.join_first.is_empty()
        || request.join_pidfd.is_some()
        || request.detach
        || is_multithreaded();
    if !intermediate {
        tracing::debug!(flags = ?request.flags, "clone3 the container process");
        return match clone3_into(request.flags, 0, request.cgroup)? {
            Forked::Child => {
                close_parent_end(parent);
                exit_with(child_main())
            }
            Forked::Parent(pid) => Ok(pid),
        };
    }
    tracing::debug!(flags = ?request.flags, "fork an intermediate to join namespaces, then clone3");
    // SAFETY: libc's fork runs the atfork handlers; the child only runs
    // `intermediate_main`, which exits with _exit.
    match unsafe { libc::fork() } {
        -1 => Err(Error::sys(
            "fork the intermediate process",
            nix::errno::Errno::last(),
        )),
        0 => {
            close_parent_end(parent);
            let code = match intermediate_main(&request, child, child_main) {
                Ok(()) => 0,
                Err(err) => {
                    child.send_failure(&err);
                    1
                }
            };
            exit_with(code)
        }
        intermediate_pid => {
            let pid = parent.wait_for_pid();
            // Reap the intermediate whatever it said.
            let _ = nix::sys::wait::waitpid(Pid::from_raw(intermediate_pid), None);
            Ok(Pid::from_raw(pid?))
        }
    }
}

fn intermediate_main(
    request: &SpawnRequest<'_>,
    child: &ChildChannel,
    child_main: impl FnOnce() -> i32,
) -> Result<()> {
    // Not dumpable: a process of the container must not ptrace us (we are
    // joining its namespaces with the host's privileges).
    crate::identity::set_non_dumpable()?;
    namespaces::join_all(request.join_first)?;
    if let Some((pidfd, flags)) = request.join_pidfd {
        nix::sched::setns(pidfd, flags)
            .map_err(|e| Error::sys("setns into the container's namespaces", e))?;
    }
    let extra = if request.detach {
        0
    } else {
        libc::CLONE_PARENT as u64
    };
    match clone3_into(request.flags, extra, request.cgroup)? {
        Forked::Child => exit_with(child_main()),
        Forked::Parent(pid) => child.send_pid(pid.as_raw()),
    }
}

/// In the child: close the copy of the parent's end of the channel, so that
/// the child reads end-of-file if the parent dies.
fn close_parent_end(parent: &ParentChannel) {
    // SAFETY: closing an fd number of this (child) process; the OwnedFd in
    // our copy of the parent's memory is never dropped (we exit with _exit).
    unsafe { libc::close(parent.raw_fd()) };
}

/// Leave the process now, without running Rust's exit machinery (atexit
/// handlers and buffered streams belong to the parent's copy).
pub fn exit_with(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_harness_is_seen_as_multithreaded_or_not_consistently() {
        // The answer depends on the harness; it must simply not panic and
        // agree with /proc/self/status.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let threads: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(is_multithreaded(), threads > 1);
    }
}

//! Network namespaces held by file descriptor.
//!
//! Mechanism: `unshare(CLONE_NEWNET)` moves the calling *thread* into a new,
//! empty network namespace (only a loopback device, down); opening
//! `/proc/thread-self/ns/net` gives an fd that keeps that namespace alive;
//! `setns(fd, CLONE_NEWNET)` moves the thread back. No bind mount under
//! /run/netns is needed: the monitor holds the fd for the container's whole
//! life, and hands the runtime the path `/proc/<monitor pid>/fd/<fd>` to
//! join. When the last fd and the last process of the namespace are gone,
//! the kernel destroys it, and with it the container's end of the veth pair
//! (which takes the host end along).
//!
//! [`NetNs::enter`] runs a closure inside a namespace and always comes back,
//! which is how a netlink socket is opened *in* the container's namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// The namespace the calling thread is in now.
    pub fn current() -> io::Result<NetNs> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// Open a namespace by path (`/proc/PID/ns/net`, a bind-mounted file).
    pub fn open(path: &Path) -> io::Result<NetNs> {
        let file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
        Ok(NetNs { fd: file.into() })
    }

    /// Make a new namespace without entering it for good: the thread steps
    /// into it (`unshare`), takes an fd, and steps back (`setns`).
    pub fn create() -> io::Result<NetNs> {
        let home = NetNs::current()?;
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("unshare(CLONE_NEWNET): {e}")))?;
        let created = NetNs::current();
        home.join()?;
        if let Ok(ns) = &created {
            tracing::debug!(step = "netns", path = %ns.proc_path(),
                "unshare(CLONE_NEWNET): a new, empty network namespace (only lo), kept alive by the fd {}", ns.proc_path());
        }
        created
    }

    /// `setns(2)` the calling thread into this namespace.
    fn join(&self) -> io::Result<()> {
        setns(&self.fd, CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("setns(CLONE_NEWNET): {e}")))
    }

    /// Run `f` with the calling thread inside this namespace, then return to
    /// the namespace it was in (even if `f` fails).
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        let home = NetNs::current()?;
        self.join()?;
        let result = f();
        home.join().map_err(|e| {
            io::Error::other(format!(
                "could not return to the original network namespace: {e}"
            ))
        })?;
        Ok(result)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A path naming this namespace for as long as this process keeps the fd
    /// open: `/proc/<pid>/fd/<n>` (what the runtime opens to join it).
    pub fn proc_path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    /// The namespace's inode number, which identifies it (as `ip netns identify`).
    pub fn inode(&self) -> io::Result<u64> {
        Ok(rustix::fs::fstat(&self.fd)?.st_ino)
    }
}

//! File descriptors the container's process starts with: stdio and the
//! preserved ones, nothing else.
//!
//! Mechanism: `dup3(2)` onto 0, 1, 2 (via temporary high numbers so that
//! overlapping sources cannot clobber each other), `close_range(2)` with
//! `CLOSE_RANGE_CLOEXEC` from the first fd that is not preserved, so that
//! every other inherited fd — a caller's fd opened without O_CLOEXEC, a
//! host directory (CVE-2024-21626 class) — is closed by execve itself.
//! `fcntl(F_SETFD, 0)` keeps the preserved ones (3 .. 3+N) open across exec.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use crate::error::{Error, Result};

/// Put `fds` on 0, 1 and 2.
pub fn install_stdio(fds: [BorrowedFd<'_>; 3]) -> Result<()> {
    // Duplicate above every target first: a source that *is* 0, 1 or 2 must
    // not be overwritten before it is copied.
    let mut high = Vec::with_capacity(3);
    for fd in fds {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a valid fd returns a new fd we own.
        let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if copy < 0 {
            return Err(Error::sys(
                "duplicate a stdio fd",
                nix::errno::Errno::last(),
            ));
        }
        high.push(copy);
    }
    for (target, source) in high.iter().enumerate() {
        // SAFETY: dup3 onto 0..2 with fds we own; the copies are closed after.
        let rc = unsafe { libc::dup3(*source, target as RawFd, 0) };
        if rc < 0 {
            return Err(Error::sys(
                format!("dup3 onto fd {target}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    for source in high {
        // SAFETY: closing fds this function created.
        unsafe { libc::close(source) };
    }
    Ok(())
}

/// Mark every fd from `3 + preserve` up close-on-exec, and clear it on the
/// preserved ones.
pub fn close_on_exec_all_but(preserve: u32) -> Result<()> {
    let first = 3 + preserve;
    for fd in 3..first {
        // SAFETY: F_SETFD on an fd number; EBADF for a missing one is ignored.
        unsafe { libc::fcntl(fd as RawFd, libc::F_SETFD, 0) };
    }
    // SAFETY: close_range with flags only changes the close-on-exec bits.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd.
    let entries =
        std::fs::read_dir("/proc/self/fd").map_err(|e| Error::io("list /proc/self/fd", e))?;
    let fds: Vec<RawFd> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first as RawFd)
        .collect();
    for fd in fds {
        // SAFETY: only sets FD_CLOEXEC; a stale number (the dir fd) gives EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

//! Where the runtime's own diagnostics (`tracing` output) are written, and
//! the names of the spans that tell which process emitted them.
//!
//! Mechanism: a process-wide file descriptor number, fd 2 unless moved.
//! The container's init replaces its fds 0, 1 and 2 with the container's
//! stdio (`dup3(2)`, see [`crate::fds`]) long before it is done narrating its
//! steps; if its diagnostics followed fd 2 they would land in the container's
//! output (and in `berth logs`). So the init first keeps a copy of the
//! stderr it was born with (`fcntl(F_DUPFD_CLOEXEC)`) and points
//! diagnostics there: its narration reaches the same place as its parent's
//! (the terminal of `berth run --explain`, or the monitor's log), and the
//! copy is closed by the `execve(2)` of the container's program, so no host
//! fd survives into the container.
//!
//! A subscriber uses it with `.with_writer(berth_runtime::diagnostics::writer)`;
//! a program opts in to the copy with [`keep_for_container_processes`].

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The span the init (the container's future PID 1) runs its setup in.
pub const INIT_SPAN: &str = "init";
/// The span a process joining a running container (`exec`) runs in.
pub const TENANT_SPAN: &str = "tenant";

/// -1: fd 2 (the default, which follows `dup2` onto 2).
static DIAGNOSTICS_FD: AtomicI32 = AtomicI32::new(-1);

/// Whether container processes keep narrating to their creator's stderr.
static KEEP_IN_CONTAINER_PROCESSES: AtomicBool = AtomicBool::new(false);

/// Let the container processes this process creates (the init, an exec'd
/// tenant) write their diagnostics to this process's stderr until their
/// `execve`, rather than to the container's stderr.
///
/// Only for a caller that starts the container right after creating it and
/// does not care that its stderr stays open until then (the berth command:
/// its monitor calls `start` before it reports). A runc-style `create` that
/// returns before `start` must not: whoever reads its stderr to the end
/// would wait for the container's start. So it is off by default.
pub fn keep_for_container_processes() {
    KEEP_IN_CONTAINER_PROCESSES.store(true, Ordering::Relaxed);
}

/// Where the copy goes if the fd limit allows: well above the numbers a
/// container's setup or a user's `-w /proc/self/fd/3` would meet.
const PREFERRED_COPY_FD: RawFd = 256;

/// Before fd 2 is replaced by the container's stderr: keep a close-on-exec
/// copy of the current fd 2, numbered at least `lowest` (above every fd the
/// program must inherit), and write diagnostics there from now on; only
/// when the creating program asked for it ([`keep_for_container_processes`]).
pub fn keep_stderr_before_stdio_changes(lowest: RawFd) {
    if !KEEP_IN_CONTAINER_PROCESSES.load(Ordering::Relaxed) {
        return;
    }
    // F_DUPFD fails with EINVAL at or above RLIMIT_NOFILE: then the lowest free.
    for at in [lowest.max(PREFERRED_COPY_FD), lowest] {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on fd 2 returns a new fd we own (or -1).
        let copy = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, at) };
        if copy >= 0 {
            // This process never closes the copy: execve or exit does.
            DIAGNOSTICS_FD.store(copy, Ordering::Relaxed);
            return;
        }
    }
}

/// The fd diagnostics go to right now.
pub fn fd() -> RawFd {
    match DIAGNOSTICS_FD.load(Ordering::Relaxed) {
        -1 => libc::STDERR_FILENO,
        fd => fd,
    }
}

/// A writer on the diagnostics fd; each `write` is one `write(2)`, so a
/// line formatted in one buffer reaches the terminal whole even when the
/// monitor and the init write at the same time.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiagnosticsWriter;

/// For `tracing_subscriber::fmt().with_writer(writer)`.
pub fn writer() -> DiagnosticsWriter {
    DiagnosticsWriter
}

impl io::Write for DiagnosticsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the fd stays open for the life of the process (fd 2, or the
        // copy above, which nothing closes); borrowed only for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd()) };
        loop {
            match nix::unistd::write(fd, buf) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_default_to_stderr() {
        // Only the init moves it; a test process never does.
        assert_eq!(fd(), libc::STDERR_FILENO);
    }
}

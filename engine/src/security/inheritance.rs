//! What a long-lived berth process (a container's monitor) must not keep
//! from the command that started it: the caller's open files and working
//! directory.
//!
//! Mechanism: `close(2)` of every fd listed in /proc/self/fd except stdio
//! and the ones the monitor was handed, and `chdir("/")`. A monitor is
//! forked from the `berth` command, so it inherits whatever that command
//! inherited — a CI runner's pipes, a lock file, a directory fd opened
//! without O_CLOEXEC — and would keep it open, and keep the directory the
//! user ran `berth run -d` in busy (unmountable), for the container's whole
//! life. None of it reaches the container (the runtime closes every extra fd
//! before the container's execve and enters the container's cwd itself:
//! tests/tests/escape_fds.rs), so this is hygiene, as a daemon does on
//! start.

use std::os::fd::RawFd;

/// Close every fd above 2 except `keep`, and make `/` the working directory.
pub fn drop_inherited(keep: &[RawFd]) {
    let open: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing an inherited fd number this process does not
            // use (nothing of ours refers to it: it was inherited, not
            // opened; the directory listing's own fd is gone already, and
            // closing it would only give EBADF).
            unsafe { libc::close(fd) };
        }
    }
    let _ = nix::unistd::chdir("/");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn inherited_fds_are_closed_and_kept_ones_stay() {
        // In a child, so the test harness's own fds are left alone.
        let keep = std::fs::File::open("/etc/hostname").unwrap();
        let stray = std::fs::File::open("/etc/passwd").unwrap();
        let (keep_fd, stray_fd) = (keep.as_raw_fd(), stray.as_raw_fd());
        // SAFETY: the child only makes system calls and _exits.
        match unsafe { libc::fork() } {
            0 => {
                drop_inherited(&[keep_fd]);
                // SAFETY: fcntl(F_GETFD) probes whether an fd is open.
                let kept = unsafe { libc::fcntl(keep_fd, libc::F_GETFD) } >= 0;
                // SAFETY: as above.
                let closed = unsafe { libc::fcntl(stray_fd, libc::F_GETFD) } < 0;
                let at_root = std::env::current_dir().is_ok_and(|d| d == std::path::Path::new("/"));
                // SAFETY: ending the child.
                unsafe { libc::_exit(if kept && closed && at_root { 0 } else { 1 }) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            }
        }
    }
}

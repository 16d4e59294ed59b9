//! Process identity and waiting, without trusting a bare pid.
//!
//! Mechanism: a pid can be reused after its process dies, so berth records the
//! process's start time (field 22 of `/proc/PID/stat`, in clock ticks since
//! boot) next to the pid and checks both. To wait for a process that is not
//! our child, berth opens a pidfd (`pidfd_open(2)`) after checking the start
//! time, and `poll(2)`s it: the kernel makes it readable when the process
//! exits, so waiting needs no sleep loop.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// The start time of `pid` (clock ticks since boot), or None if it is gone.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and ')': skip past the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3 (state); start time is field 22.
    after_name.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Whether `pid` still names the process that started at `start` (a zombie
/// included: it has exited but its parent has not reaped it yet).
pub fn is_same_process(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Whether the process that started at `start` is still running: the same
/// process, and not a zombie (`Z`) or dead (`X`) one. A container whose
/// monitor died leaves its PID 1 to be reaped by someone else; until then it
/// is a zombie and must count as exited.
pub fn is_running(pid: i32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let mut fields = after_name.split_whitespace();
    let state = fields.next().unwrap_or("X");
    let started = fields.nth(22 - 4).and_then(|f| f.parse::<u64>().ok());
    started == Some(start) && !matches!(state, "Z" | "X" | "x")
}

/// A pidfd for `pid`, only if it is still the process that started at `start`.
/// The check happens after opening, so a pid reused in between is caught.
pub fn open_pidfd(pid: i32, start: u64) -> io::Result<Option<OwnedFd>> {
    let Some(raw) = Pid::from_raw(pid) else {
        return Ok(None);
    };
    let fd = match pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    Ok(is_same_process(pid, start).then_some(fd))
}

/// Wait until the process behind `pidfd` exits, at most `timeout` (None:
/// forever). Returns true if it exited.
pub fn wait_pidfd(pidfd: &OwnedFd, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let timeout = timeout.map(|t| Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: t.subsec_nanos() as i64,
    });
    loop {
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// Send `signal` through a pidfd (no pid-reuse race).
pub fn signal_pidfd(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, a plain signal number, a
    // null siginfo and no flags; the kernel validates everything.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd.as_fd()),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_identifies_a_live_process_and_a_dead_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = start_time(pid).expect("a live child has a start time");
        assert!(is_same_process(pid, start));
        assert!(is_running(pid, start));
        assert!(
            !is_same_process(pid, start + 1),
            "another start time is another process"
        );
        let fd = open_pidfd(pid, start)
            .unwrap()
            .expect("pidfd for the live child");
        assert!(
            !wait_pidfd(&fd, Some(Duration::from_millis(1))).unwrap(),
            "still running"
        );
        signal_pidfd(&fd, libc::SIGKILL).unwrap();
        assert!(
            wait_pidfd(&fd, Some(Duration::from_secs(10))).unwrap(),
            "exits after SIGKILL"
        );
        child.wait().unwrap();
        assert_eq!(start_time(pid), None);
    }
}

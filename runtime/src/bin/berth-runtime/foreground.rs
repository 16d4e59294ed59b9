//! `run` and `exec` without `--detach`: wait for the container's process,
//! pass it the signals berth-runtime receives, relay its terminal, and exit
//! with its status.
//!
//! Mechanism: the forwarded signals are blocked and read from a `signalfd(2)`
//! (the container's process resets its mask before execve); `poll(2)` over
//! the signalfd, stdin and the pty master; `waitpid(2)` on SIGCHLD; the
//! terminal in raw mode (`tcsetattr(3)`) while relaying.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

/// Block the forwarded signals (before creating the process, so that none is
/// lost in between) and return a signalfd reading them.
pub fn block_signals() -> nix::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.thread_block()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// Wait for `pid` (our child), forwarding signals and relaying `console`.
/// Returns the exit code to use: the status, or 128+N when killed by signal N.
pub fn wait(pid: Pid, signals: &mut SignalFd, console: Option<OwnedFd>) -> i32 {
    let _raw = console
        .as_ref()
        .and_then(|_| RawMode::enable(std::io::stdin().as_fd()));
    if let Some(master) = &console {
        copy_window_size(std::io::stdin().as_fd(), master.as_fd());
    }
    let mut stdin_open = console.is_some();
    let mut master_open = console.is_some();
    loop {
        let mut fds = vec![libc::pollfd {
            fd: signals.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(master) = &console {
            fds.push(libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            });
            fds.push(libc::pollfd {
                fd: if master_open { master.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid array of pollfds for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            while let Ok(Some(info)) = signals.read_signal() {
                let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match signal {
                    Signal::SIGCHLD => {
                        if let Some(code) = reap(pid) {
                            if let Some(master) = &console {
                                drain(master.as_fd());
                            }
                            return code;
                        }
                    }
                    Signal::SIGWINCH => {
                        if let Some(master) = &console {
                            copy_window_size(std::io::stdin().as_fd(), master.as_fd());
                        }
                    }
                    other => {
                        let _ = nix::sys::signal::kill(pid, other);
                    }
                }
            }
        }
        if let Some(master) = &console {
            if fds[1].revents != 0 && !copy_once(std::io::stdin().as_fd(), master.as_fd()) {
                stdin_open = false;
            }
            if fds[2].revents != 0 && !copy_once(master.as_fd(), std::io::stdout().as_fd()) {
                master_open = false;
            }
        }
    }
}

fn reap(pid: Pid) -> Option<i32> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Some(128 + signal as i32),
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Some(255),
        }
    }
}

/// Copy what is available from `from` to `to`; false at EOF or error.
fn copy_once(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 8192];
    match rustix::io::read(from, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let mut written = 0;
            while written < n {
                match rustix::io::write(to, &buf[written..n]) {
                    Ok(k) => written += k,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => return false,
                }
            }
            true
        }
    }
}

/// Output left in the pty after the process exited.
fn drain(master: BorrowedFd<'_>) {
    let _ = rustix::fs::fcntl_setfl(master, rustix::fs::OFlags::NONBLOCK);
    while copy_once(master, std::io::stdout().as_fd()) {}
}

fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize through a valid pointer; on a
    // non-terminal it fails and nothing is copied.
    if unsafe { libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } == 0 {
        // SAFETY: TIOCSWINSZ reads the winsize we just filled.
        unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
}

/// The terminal in raw mode until dropped (keys go to the container as typed).
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enable(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = nix::sys::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin().as_fd(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

//! Relay between our terminal and a pty master (`berth exec -t`).
//!
//! Mechanism: `poll(2)` over stdin, the master, and a signalfd for SIGWINCH;
//! our terminal in raw mode (`cfmakeraw`) so keys reach the container's
//! process as bytes; window size copied with `ioctl(TIOCGWINSZ/TIOCSWINSZ)`.
//! The relay ends when the master reads EIO: the last process holding the
//! pty's other side has exited.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::poll::{PollFd, PollFlags};

use super::attach_client::wait_ready;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg};

/// Copy bytes both ways until the pty closes.
pub fn relay(master: OwnedFd, forward_stdin: bool) -> anyhow::Result<()> {
    let stdin = io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).ok();
    if let (true, Some(saved)) = (forward_stdin, &saved) {
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
    }
    let result = pump(&master, forward_stdin);
    if let (true, Some(saved)) = (forward_stdin, &saved) {
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, saved);
    }
    result
}

fn pump(master: &OwnedFd, forward_stdin: bool) -> anyhow::Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGWINCH);
    mask.thread_block()?;
    let winch = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    copy_window_size(master);
    let stdin = io::stdin();
    let mut stdin_open = forward_stdin;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = vec![
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(winch.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let is_ready = wait_ready(&mut fds)?;
        let ready = |i: usize| is_ready.get(i).copied().unwrap_or(false);
        let (from_master, resized, typed) = (ready(0), ready(1), stdin_open && ready(2));
        drop(fds);
        if from_master {
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => return Ok(()),
                Ok(n) => {
                    let mut out = io::stdout();
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        if resized {
            while winch.read_signal().ok().flatten().is_some() {}
            copy_window_size(master);
        }
        if typed {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    let _ = nix::unistd::write(master, &buf[..n]);
                }
                Err(_) => stdin_open = false,
            }
        }
    }
}

fn copy_window_size(master: &OwnedFd) {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through a valid pointer;
    // TIOCSWINSZ reads one from it.
    unsafe {
        if libc::ioctl(io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut size) == 0
            && size.ws_row > 0
        {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size);
        }
    }
}

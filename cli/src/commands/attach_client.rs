//! The client side of an attached container: what `run` (without `-d`),
//! `start -a` and `attach` do with the terminal.
//!
//! Mechanism: one `poll(2)` loop over the monitor's socket, our stdin, and a
//! `signalfd(2)` for SIGWINCH (terminal resized) and the signals that
//! `--sig-proxy` forwards. With `-t` the terminal is put in raw mode
//! (`tcsetattr(3)` with `cfmakeraw`) so that Ctrl-C and Ctrl-D travel to the
//! container as bytes instead of acting on berth; Ctrl-P Ctrl-Q detaches.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use berth_engine::container::attach::Frame;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};

/// docker's default detach sequence: Ctrl-P then Ctrl-Q.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// How the attached session behaves.
#[derive(Debug, Clone, Copy)]
pub struct AttachOptions {
    /// Forward our stdin to the container (`-i`).
    pub stdin: bool,
    /// The container has a terminal (`-t`): raw mode, resize, detach keys.
    pub tty: bool,
    /// Forward signals we receive to the container's PID 1 (`--sig-proxy`).
    pub sig_proxy: bool,
}

/// How the session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Detached,
}

/// Signals `--sig-proxy` forwards (docker forwards all it can catch).
const PROXIED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Relay between our stdio and the container until it exits or we detach.
pub fn relay(mut stream: UnixStream, options: AttachOptions) -> anyhow::Result<Ended> {
    let stdin_is_tty = termios::tcgetattr(io::stdin().as_fd()).is_ok();
    let _raw = if options.tty && options.stdin && stdin_is_tty {
        Some(RawMode::enter()?)
    } else {
        None
    };
    let signals = signal_fd(options)?;
    if options.tty {
        send_window_size(&mut stream);
    }
    let mut stdin_open = options.stdin;
    let mut detach = DetachMatcher::default();
    let stdin = io::stdin();
    loop {
        let mut fds = vec![PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
        if let Some(sfd) = &signals {
            fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
        }
        let stdin_index = fds.len();
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let ready = wait_ready(&mut fds)?;
        let is_ready = |i: usize| ready.get(i).copied().unwrap_or(false);
        let (socket_ready, signal_ready, input_ready) = (
            is_ready(0),
            signals.is_some() && is_ready(1),
            stdin_open && is_ready(stdin_index),
        );
        drop(fds);
        if socket_ready {
            match Frame::read_from(&mut stream) {
                Ok(Some(Frame::Stdout(data))) => write_out(&mut io::stdout(), &data),
                Ok(Some(Frame::Stderr(data))) => write_out(&mut io::stderr(), &data),
                Ok(Some(Frame::Exit(status))) => return Ok(Ended::Exited(status)),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    anyhow::bail!("lost the connection to the container's monitor before it reported an exit status")
                }
            }
        }
        if signal_ready {
            if let Some(sfd) = &signals {
                forward_signals(sfd, &mut stream, options);
            }
        }
        if input_ready {
            let mut buf = [0u8; 4096];
            let n = read_fd(stdin.as_fd(), &mut buf)?;
            if n == 0 {
                stdin_open = false;
                let _ = Frame::CloseStdin.write_to(&mut stream);
                continue;
            }
            let data = if options.tty {
                match detach.feed(&buf[..n]) {
                    Feed::Detach => return Ok(Ended::Detached),
                    Feed::Pass(data) => data,
                }
            } else {
                buf[..n].to_vec()
            };
            if !data.is_empty() && Frame::Stdin(data).write_to(&mut stream).is_err() {
                stdin_open = false;
            }
        }
    }
}

/// Wait until one of `fds` is ready and say which are; a wait interrupted
/// by a signal reports none ready (the caller's loop simply polls again).
pub fn wait_ready(fds: &mut [PollFd<'_>]) -> nix::Result<Vec<bool>> {
    match poll(fds, PollTimeout::NONE) {
        Ok(_) => Ok(fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect()),
        Err(nix::errno::Errno::EINTR) => Ok(vec![false; fds.len()]),
        Err(err) => Err(err),
    }
}

fn write_out(out: &mut impl Write, data: &[u8]) {
    let _ = out.write_all(data);
    let _ = out.flush();
}

fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// Block the signals we handle and read them from a signalfd instead.
fn signal_fd(options: AttachOptions) -> anyhow::Result<Option<SignalFd>> {
    let mut mask = SigSet::empty();
    if options.tty {
        mask.add(Signal::SIGWINCH);
    }
    // With a terminal, Ctrl-C reaches the container as a byte; docker does
    // not proxy signals then.
    if options.sig_proxy && !options.tty {
        for sig in PROXIED {
            mask.add(sig);
        }
    }
    if mask == SigSet::empty() {
        return Ok(None);
    }
    mask.thread_block()?;
    Ok(Some(SignalFd::with_flags(
        &mask,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )?))
}

fn forward_signals(sfd: &SignalFd, stream: &mut UnixStream, options: AttachOptions) {
    while let Ok(Some(info)) = sfd.read_signal() {
        let signo = info.ssi_signo as i32;
        if signo == libc::SIGWINCH {
            if options.tty {
                send_window_size(stream);
            }
        } else {
            let _ = Frame::Signal(signo).write_to(stream);
        }
    }
}

/// Tell the container our terminal's size (`ioctl(TIOCGWINSZ)` on stdout).
fn send_window_size(stream: &mut UnixStream) {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize struct through a valid pointer.
    let rc = unsafe { libc::ioctl(io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    if rc == 0 && size.ws_row > 0 {
        let _ = Frame::Resize {
            rows: size.ws_row,
            cols: size.ws_col,
        }
        .write_to(stream);
    }
}

/// The terminal in raw mode while it lives, restored on drop (also on error).
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Recognises the detach sequence across reads; a half-seen sequence is held
/// back until the next byte shows whether it was one.
#[derive(Debug, Default)]
struct DetachMatcher {
    matched: usize,
}

#[derive(Debug, PartialEq)]
enum Feed {
    Pass(Vec<u8>),
    Detach,
}

impl DetachMatcher {
    fn feed(&mut self, input: &[u8]) -> Feed {
        let mut out = Vec::with_capacity(input.len());
        for &byte in input {
            if byte == DETACH_KEYS[self.matched] {
                self.matched += 1;
                if self.matched == DETACH_KEYS.len() {
                    return Feed::Detach;
                }
                continue;
            }
            // Not the sequence after all: release what was held back.
            out.extend_from_slice(&DETACH_KEYS[..self.matched]);
            self.matched = 0;
            if byte == DETACH_KEYS[0] {
                self.matched = 1;
            } else {
                out.push(byte);
            }
        }
        Feed::Pass(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_p_ctrl_q_detaches_even_across_reads() {
        let mut m = DetachMatcher::default();
        assert_eq!(m.feed(b"ls\x10"), Feed::Pass(b"ls".to_vec()));
        assert_eq!(m.feed(b"\x11"), Feed::Detach);
    }

    #[test]
    fn ctrl_p_alone_is_passed_through() {
        let mut m = DetachMatcher::default();
        assert_eq!(m.feed(b"\x10a"), Feed::Pass(b"\x10a".to_vec()));
        assert_eq!(m.feed(b"\x10\x10\x11"), Feed::Detach);
    }
}

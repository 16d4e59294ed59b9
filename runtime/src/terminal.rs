//! The container's terminal: a pseudo-terminal from the container's own
//! devpts, its master handed to whoever drives it.
//!
//! Mechanism: `open("/dev/pts/ptmx")` inside the container (after
//! pivot_root, so the pty belongs to the container's devpts instance),
//! `ioctl(TIOCSPTLCK)` to unlock it, `ioctl(TIOCGPTPEER)` to open the slave
//! from the master without a path lookup, `setsid(2)` + `ioctl(TIOCSCTTY)` to
//! make it the controlling terminal, `ioctl(TIOCSWINSZ)` for the size, a bind
//! mount of the slave on /dev/console. The master goes out over a unix
//! socket with `sendmsg(2)` and `SCM_RIGHTS` — runc's `--console-socket`
//! protocol, which podman's conmon and containerd's shim speak.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::error::{Error, Result};
use crate::syscall::{Create, Source, Syscall, Target};

/// A pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// The slave's number, `/dev/pts/N`.
    pub number: u32,
}

/// Open a new pty from `ptmx` (inside the container: `/dev/pts/ptmx`).
pub fn open_pty(ptmx: &Path) -> Result<Pty> {
    let master = rustix::fs::open(
        ptmx,
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        Error::sys(
            format!("open {}", ptmx.display()),
            nix::errno::Errno::from_raw(e.raw_os_error()),
        )
    })?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int, valid for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(Error::sys(
            "unlock the pty (TIOCSPTLCK)",
            nix::errno::Errno::last(),
        ));
    }
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int through the valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } != 0 {
        return Err(Error::sys(
            "get the pty number (TIOCGPTN)",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: TIOCGPTPEER returns a new fd (which we then own) or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Error::sys(
            "open the pty slave (TIOCGPTPEER)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(Pty {
        master,
        // SAFETY: `slave` is a fresh fd returned by the kernel, owned by no one else.
        slave: unsafe { OwnedFd::from_raw_fd(slave) },
        number,
    })
}

/// Set the window size.
pub fn set_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize through the valid pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(Error::sys(
            "set the terminal size (TIOCSWINSZ)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Bind the pty slave onto /dev/console (in the container, after pivot_root).
pub fn bind_console(sys: &dyn Syscall, pty: &Pty) -> Result<()> {
    let root = sys
        .open_rootfs(Path::new("/"))
        .map_err(|e| Error::io("open /", e))?;
    let console = sys
        .resolve(&root, Path::new("/dev/console"), Create::File)
        .map_err(|e| Error::io("create /dev/console", e))?;
    let slave = Target::new(
        format!("/dev/pts/{}", pty.number).into(),
        Some(
            pty.slave
                .try_clone()
                .map_err(|e| Error::io("dup the pty slave", e))?,
        ),
    );
    sys.mount(
        Source::Target(&slave),
        &console,
        None,
        nix::mount::MsFlags::MS_BIND,
        None,
    )
    .map_err(|e| Error::io("bind the terminal on /dev/console", e))
}

/// Make `slave` this process's controlling terminal and its stdio.
pub fn take_as_controlling_terminal(slave: &OwnedFd) -> Result<()> {
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    // SAFETY: TIOCSCTTY with an integer argument on a valid tty fd.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::sys(
            "make the pty the controlling terminal (TIOCSCTTY)",
            nix::errno::Errno::last(),
        ));
    }
    crate::fds::install_stdio([
        std::os::fd::AsFd::as_fd(slave),
        std::os::fd::AsFd::as_fd(slave),
        std::os::fd::AsFd::as_fd(slave),
    ])
}

/// Send `fd` over the unix socket `socket` with SCM_RIGHTS; the payload is
/// `name` (runc sends the pty's path; receivers ignore it).
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>, name: &str) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let payload = [IoSlice::new(name.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    socket::sendmsg::<()>(
        socket.as_raw_fd(),
        &payload,
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| Error::sys("send the terminal over the console socket", e))?;
    Ok(())
}

/// Receive one fd sent with [`send_fd`].
pub fn recv_fd(socket: BorrowedFd<'_>) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| Error::sys("receive the terminal", e))?;
    for cmsg in msg
        .cmsgs()
        .map_err(|e| Error::sys("read control messages", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this fd for us; we own it now.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(Error::ProcessDied(
        "the container process closed the terminal socket without sending the pty".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn an_fd_travels_over_a_socket() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_fd(a.as_fd(), file.as_fd(), "/dev/pts/0").unwrap();
        let got = recv_fd(b.as_fd()).unwrap();
        let st1 = rustix::fs::fstat(&file).unwrap();
        let st2 = rustix::fs::fstat(&got).unwrap();
        assert_eq!((st1.st_dev, st1.st_ino), (st2.st_dev, st2.st_ino));
    }

    #[test]
    fn a_pty_pair_opens_from_the_hosts_ptmx() {
        let pty = open_pty(Path::new("/dev/ptmx")).unwrap();
        set_size(pty.master.as_fd(), 24, 80).unwrap();
        assert!(nix::unistd::isatty(&pty.slave).unwrap());
    }
}

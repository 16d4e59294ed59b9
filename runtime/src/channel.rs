//! The setup socket between the runtime (the parent) and the process it
//! creates (a container's init, or a process entering a running container).
//!
//! Mechanism: `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`. SEQPACKET
//! keeps message boundaries, so each message is one JSON datagram. Both ends
//! are close-on-exec: when the child's `execve` succeeds its end closes and
//! the parent reads end-of-file — that is how the parent learns that an exec
//! really happened without any message for it.
//!
//! The conversation for `create` (parent on the left):
//!
//! ```text
//!   [intermediate only]          <- Pid(host pid of the init)
//!   write uid/gid maps
//!   Go { host_pid }              ->
//!   join the v1 cgroups                (the init mounts meanwhile)
//!   Joined                       ->    (awaited before the cgroup namespace / cgroup mount)
//!                                <- RunHooks        (after the mounts, before pivot_root)
//!   run prestart + createRuntime
//!   HooksDone                    ->
//!                                <- Created         (init now waits on exec.fifo)
//!                                <- Failed(error)   (at any point instead)
//! ```
//!
//! For `exec` the child sends nothing on success: EOF after `Go` means execve
//! worked.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, WireError};

/// Every message either side sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// Intermediate -> parent: the pid of the process it cloned.
    Pid(i32),
    /// Parent -> child: id maps written; go on.
    Go { host_pid: i32 },
    /// Parent -> child: the process is in all its cgroups now.
    Joined,
    /// Init -> parent: the mounts are done, run prestart/createRuntime hooks now.
    RunHooks,
    /// Parent -> init: those hooks succeeded.
    HooksDone,
    /// Init -> parent: set up, waiting for `start`.
    Created,
    /// Child -> parent: a step failed; the child exits.
    Failed(WireError),
}

const MAX_MESSAGE: usize = 64 * 1024;

/// A new connected pair: (the parent's end, the child's end).
pub fn channel() -> Result<(ParentChannel, ChildChannel)> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair for the setup channel", e))?;
    Ok((ParentChannel { sock: a }, ChildChannel { sock: b }))
}

fn send(sock: &OwnedFd, message: &Message) -> Result<()> {
    let bytes =
        serde_json::to_vec(message).map_err(|e| Error::step("encode message", e.to_string()))?;
    socket::send(
        std::os::fd::AsRawFd::as_raw_fd(sock),
        &bytes,
        MsgFlags::MSG_NOSIGNAL,
    )
    .map_err(|e| Error::sys("send on the setup channel", e))?;
    Ok(())
}

/// The next message, or `None` at end-of-file (the other side closed or exec'd).
fn receive(sock: &OwnedFd) -> Result<Option<Message>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        match socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            &mut buf,
            MsgFlags::empty(),
        ) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                return serde_json::from_slice(&buf[..n])
                    .map(Some)
                    .map_err(|e| Error::step("decode message on the setup channel", e.to_string()))
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("receive on the setup channel", e)),
        }
    }
}

/// The runtime's end.
#[derive(Debug)]
pub struct ParentChannel {
    sock: OwnedFd,
}

/// What the child said while the parent waited for `Created`.
#[derive(Debug, PartialEq)]
pub enum InitEvent {
    RunHooks,
    Created,
}

impl ParentChannel {
    /// Intermediate process: which pid did it clone?
    pub fn wait_for_pid(&self) -> Result<i32> {
        match receive(&self.sock)? {
            Some(Message::Pid(pid)) => Ok(pid),
            other => Err(self.unexpected(other, "the pid of the new process")),
        }
    }

    pub fn send_go(&self, host_pid: i32) -> Result<()> {
        self.send(&Message::Go { host_pid }, "Go")
    }

    pub fn send_joined(&self) -> Result<()> {
        self.send(&Message::Joined, "Joined")
    }

    /// Send; if the child is gone (EPIPE), its `Failed` message may still be
    /// waiting in the socket: that, not "broken pipe", is the reason to report.
    fn send(&self, message: &Message, what: &str) -> Result<()> {
        match send(&self.sock, message) {
            Err(Error::Syscall {
                errno: nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET,
                ..
            }) => Err(self.unexpected(
                receive(&self.sock).ok().flatten(),
                &format!("the child to read {what}"),
            )),
            other => other,
        }
    }

    /// Wait for the init to ask for the hooks, or to be created.
    pub fn wait_for_init(&self) -> Result<InitEvent> {
        match receive(&self.sock)? {
            Some(Message::RunHooks) => Ok(InitEvent::RunHooks),
            Some(Message::Created) => Ok(InitEvent::Created),
            other => Err(self.unexpected(other, "the container to be created")),
        }
    }

    /// The fd number, for the child to close its inherited copy.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.sock)
    }

    pub fn send_hooks_done(&self) -> Result<()> {
        self.send(&Message::HooksDone, "HooksDone")
    }

    /// For exec: end-of-file means the new program runs; `Failed` means not.
    pub fn wait_for_exec(&self) -> Result<()> {
        match receive(&self.sock)? {
            None => Ok(()),
            other => Err(self.unexpected(other, "the process to start")),
        }
    }

    fn unexpected(&self, got: Option<Message>, waiting_for: &str) -> Error {
        match got {
            Some(Message::Failed(wire)) => wire.into(),
            None => Error::ProcessDied(format!(
                "the container process exited while berth-runtime waited for {waiting_for}"
            )),
            Some(other) => Error::step(
                "setup channel",
                format!("unexpected message {other:?} while waiting for {waiting_for}"),
            ),
        }
    }
}

/// The child's end. Its methods are the child's side of the conversation.
#[derive(Debug)]
pub struct ChildChannel {
    sock: OwnedFd,
}

impl ChildChannel {
    pub fn send_pid(&self, pid: i32) -> Result<()> {
        send(&self.sock, &Message::Pid(pid))
    }

    /// Block until the parent has written the id maps and joined the cgroups.
    pub fn wait_for_go(&self) -> Result<i32> {
        match receive(&self.sock)? {
            Some(Message::Go { host_pid }) => Ok(host_pid),
            other => Err(Error::step(
                "wait for the runtime",
                format!("expected Go, got {other:?}"),
            )),
        }
    }

    /// Block until the parent has put this process in its cgroups.
    pub fn wait_for_joined(&self) -> Result<()> {
        match receive(&self.sock)? {
            Some(Message::Joined) => Ok(()),
            other => Err(Error::step(
                "wait for the cgroups",
                format!("expected Joined, got {other:?}"),
            )),
        }
    }

    /// Ask the parent to run the prestart and createRuntime hooks and wait.
    pub fn run_create_runtime_hooks(&self) -> Result<()> {
        send(&self.sock, &Message::RunHooks)?;
        match receive(&self.sock)? {
            Some(Message::HooksDone) => Ok(()),
            other => Err(Error::step(
                "wait for createRuntime hooks",
                format!("expected HooksDone, got {other:?}"),
            )),
        }
    }

    pub fn send_created(&self) -> Result<()> {
        send(&self.sock, &Message::Created)
    }

    /// Report a failure (best effort: the parent may be gone).
    pub fn send_failure(&self, err: &Error) {
        let _ = send(&self.sock, &Message::Failed(WireError::from(err)));
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conversation_in_order() {
        let (parent, child) = channel().unwrap();
        child.send_pid(42).unwrap();
        assert_eq!(parent.wait_for_pid().unwrap(), 42);
        parent.send_go(42).unwrap();
        assert_eq!(child.wait_for_go().unwrap(), 42);
        parent.send_joined().unwrap();
        child.wait_for_joined().unwrap();
        send(&child.sock, &Message::RunHooks).unwrap();
        assert_eq!(parent.wait_for_init().unwrap(), InitEvent::RunHooks);
        child.send_created().unwrap();
        assert_eq!(parent.wait_for_init().unwrap(), InitEvent::Created);
    }

    #[test]
    fn a_failure_arrives_as_the_original_error() {
        let (parent, child) = channel().unwrap();
        child.send_failure(&Error::sys("pivot_root", nix::errno::Errno::EINVAL));
        assert_eq!(
            parent.wait_for_init().unwrap_err().to_string(),
            "pivot_root: Invalid argument"
        );
        drop(child);
        assert!(matches!(parent.wait_for_init(), Err(Error::ProcessDied(_))));
    }

    /// Regression (found by tests/tests/escape_image.rs): an init that failed
    /// and exited before the parent's `Joined` made the parent report
    /// "send on the setup channel: Broken pipe" instead of the init's reason.
    #[test]
    fn a_send_to_a_child_that_failed_reports_the_childs_reason() {
        let (parent, child) = channel().unwrap();
        child.send_failure(&Error::sys(
            "create mount point /proc",
            nix::errno::Errno::ENOENT,
        ));
        drop(child);
        assert_eq!(
            parent.send_joined().unwrap_err().to_string(),
            "create mount point /proc: No such file or directory"
        );
    }

    #[test]
    fn eof_means_exec_happened() {
        let (parent, child) = channel().unwrap();
        drop(child);
        parent.wait_for_exec().unwrap();
    }
}

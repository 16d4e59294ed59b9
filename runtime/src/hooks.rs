//! Lifecycle hooks: programs config.json asks to run at fixed points, with the
//! container's state (the spec's JSON) on their stdin.
//!
//! Mechanism: fork/exec of the hook (`std::process::Command`, argv[0] as
//! given), its stdout and stderr collected through one pipe for the error
//! message, and a timeout enforced with `pidfd_open(2)` + `poll(2)` and
//! `SIGKILL`.
//!
//! Where each kind runs (OCI runtime spec, "Lifecycle"):
//! - prestart (deprecated) and createRuntime: by the runtime, after the
//!   container's mounts, before pivot_root; a failure aborts create;
//! - createContainer: in the container's namespaces before pivot_root (the
//!   hook path still resolves on the host); a failure aborts create;
//! - startContainer: in the container, after `start`, before the program; a
//!   failure aborts start;
//! - poststart: after the program started; poststop: after delete. Their
//!   failures are logged as warnings and the lifecycle goes on.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Most hook output kept for an error message.
const MAX_OUTPUT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookKind {
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    /// The hooks of this kind in config.json.
    #[allow(deprecated)] // prestart is deprecated in the spec but still used (podman)
    pub fn of(self, hooks: Option<&oci_spec::runtime::Hooks>) -> Vec<Hook> {
        let Some(h) = hooks else {
            return Vec::new();
        };
        let list = match self {
            HookKind::Prestart => h.prestart(),
            HookKind::CreateRuntime => h.create_runtime(),
            HookKind::CreateContainer => h.create_container(),
            HookKind::StartContainer => h.start_container(),
            HookKind::Poststart => h.poststart(),
            HookKind::Poststop => h.poststop(),
        };
        list.clone().unwrap_or_default()
    }
}

/// Run each hook in order; the first failure stops and is returned.
pub fn run_all(kind: HookKind, hooks: &[Hook], state_json: &str) -> Result<()> {
    for hook in hooks {
        tracing::debug!(kind = kind.name(), path = %hook.path().display(), "run hook");
        run_one(hook, state_json).map_err(|detail| Error::Hook {
            kind: kind.name(),
            path: hook.path().clone(),
            detail,
        })?;
    }
    Ok(())
}

/// Run each hook; a failure is a warning (poststart, poststop).
pub fn run_all_warn(kind: HookKind, hooks: &[Hook], state_json: &str) {
    for hook in hooks {
        if let Err(detail) = run_one(hook, state_json) {
            let err = Error::Hook {
                kind: kind.name(),
                path: hook.path().clone(),
                detail,
            };
            tracing::warn!("{err} (continuing)");
            eprintln!("berth-runtime: warning: {err} (continuing)");
        }
    }
}

fn run_one(hook: &Hook, state_json: &str) -> std::result::Result<(), String> {
    let args = hook.args().clone().unwrap_or_default();
    let mut command = Command::new(hook.path());
    if let Some((arg0, rest)) = args.split_first() {
        command.arg0(arg0).args(rest);
    }
    command.env_clear();
    for pair in hook.env().iter().flatten() {
        if let Some((k, v)) = pair.split_once('=') {
            command.env(k, v);
        }
    }
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("pipe: {e}"))?;
    let writer2 = writer.try_clone().map_err(|e| format!("dup: {e}"))?;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2));
    let mut child = command.spawn().map_err(|e| format!("cannot run it: {e}"))?;
    // Drop our copies of the write end (moved into `command`): EOF when the hook exits.
    drop(command);
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE ignored).
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let timeout = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let output = read_until_exit(&mut child, reader, timeout)?;
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let output = String::from_utf8_lossy(&output).trim().to_string();
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("was killed by {status}"),
    };
    Err(if output.is_empty() {
        how
    } else {
        format!("{how}: {output}")
    })
}

/// Collect the hook's output until its pipe closes; kill it at the deadline.
fn read_until_exit(
    child: &mut std::process::Child,
    reader: std::os::fd::OwnedFd,
    timeout: Option<Duration>,
) -> std::result::Result<Vec<u8>, String> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut file = std::fs::File::from(reader);
    let mut output = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let wait_ms = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "timed out after {} s and was killed",
                        timeout.unwrap_or_default().as_secs()
                    ));
                }
                left.as_millis().min(i32::MAX as u128) as i32
            }
            None => -1,
        };
        let mut pfd = [libc::pollfd {
            fd: file.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), 1, wait_ms) };
        if n < 0 {
            let errno = nix::errno::Errno::last();
            if errno == nix::errno::Errno::EINTR {
                continue;
            }
            return Err(format!("poll: {}", errno.desc()));
        }
        if n == 0 {
            continue; // deadline check at the top
        }
        match file.read(&mut buf) {
            Ok(0) => return Ok(output),
            Ok(k) => {
                let room = MAX_OUTPUT.saturating_sub(output.len());
                output.extend_from_slice(&buf[..k.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read its output: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_hook_gets_the_state_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("state");
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}", out.display())]
        }));
        run_all(HookKind::CreateRuntime, &[h], "{\"id\":\"x\"}").unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "{\"id\":\"x\"}");
    }

    #[test]
    fn a_failing_hook_reports_its_status_and_output() {
        let h = hook(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", "echo broken >&2; exit 3"]
        }));
        let err = run_all(HookKind::Prestart, &[h], "{}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "prestart hook \"/bin/sh\": exited with status 3: broken"
        );
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let h = hook(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", "sleep 30"], "timeout": 1
        }));
        let started = Instant::now();
        let err = run_all(HookKind::CreateRuntime, &[h], "{}").unwrap_err();
        assert!(err.to_string().contains("timed out after 1 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_hook_binary_is_an_error() {
        let h = hook(serde_json::json!({"path": "/nonexistent/hook"}));
        let err = run_all(HookKind::CreateRuntime, &[h], "{}").unwrap_err();
        assert!(err.to_string().contains("cannot run it"), "{err}");
    }
}

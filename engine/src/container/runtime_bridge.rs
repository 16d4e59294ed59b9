//! The engine's only contact with berth-runtime: create and start a
//! container's process from a bundle, signal it, delete it. Kept in one place
//! so the monitor reads as a sequence of steps, not of runtime details.

use std::os::fd::OwnedFd;
use std::path::Path;

use berth_runtime as rt;
use nix::sys::signal::Signal;

/// How the container's stdio is wired.
#[derive(Debug)]
pub enum ContainerStdio {
    /// Three fds the container gets as 0, 1 and 2 (pipes to the monitor, or /dev/null).
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A new pseudo-terminal; the monitor receives its master.
    Terminal,
}

/// A container process that was created and started.
#[derive(Debug)]
pub struct Launched {
    /// Host pid of the container's PID 1 (a child of the caller).
    pub pid: i32,
    /// The pty master when a terminal was asked for.
    pub pty_master: Option<OwnedFd>,
}

/// Why a launch failed, in the classes docker turns into exit codes.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The command was not found (docker exit status 127).
    #[error("{0}")]
    NotFound(String),
    /// The command exists but cannot be executed (126).
    #[error("{0}")]
    CannotExecute(String),
    /// Anything else: berth failed (125).
    #[error("{0}")]
    Other(String),
}

impl LaunchError {
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::NotFound(_) => 127,
            LaunchError::CannotExecute(_) => 126,
            LaunchError::Other(_) => 125,
        }
    }
}

/// Create the container `id` from `bundle` and start its process. A stale
/// runtime state of the same id (left by a crashed monitor) is removed first.
pub fn create_and_start(
    runtime_root: &Path,
    id: &str,
    bundle: &Path,
    stdio: ContainerStdio,
) -> Result<Launched, LaunchError> {
    let _ = delete(runtime_root, id);
    let mut options = rt::CreateOptions::new(id, bundle, runtime_root);
    match stdio {
        ContainerStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => options.stdio = rt::Stdio::Fds([stdin, stdout, stderr]),
        ContainerStdio::Terminal => options.console = rt::Console::Return,
    }
    let created = rt::create(options).map_err(classify)?;
    if let Err(err) = rt::start(runtime_root, id) {
        // The init never became the program: kill it, reap it, forget it.
        let _ = rt::kill(runtime_root, id, Signal::SIGKILL, true);
        let _ = nix::sys::wait::waitpid(created.pid, None);
        let _ = rt::delete(runtime_root, id, true);
        return Err(classify(err));
    }
    Ok(Launched {
        pid: created.pid.as_raw(),
        pty_master: created.console,
    })
}

/// docker's exit-code classes for a runtime error.
fn classify(err: rt::Error) -> LaunchError {
    match err {
        rt::Error::ExecNotFound { .. } => LaunchError::NotFound(err.to_string()),
        rt::Error::ExecDenied { .. } => LaunchError::CannotExecute(err.to_string()),
        other => LaunchError::Other(other.to_string()),
    }
}

/// Send `signal` to the container's PID 1, or with `all` to every process
/// in its cgroup.
pub fn kill(runtime_root: &Path, id: &str, signal: i32, all: bool) -> Result<(), String> {
    let signal = Signal::try_from(signal).map_err(|e| format!("signal {signal}: {e}"))?;
    rt::kill(runtime_root, id, signal, all).map_err(|e| e.to_string())
}

/// Freeze (`frozen`) or thaw every process of container `id` (its cgroup's
/// freezer).
pub fn set_frozen(runtime_root: &Path, id: &str, frozen: bool) -> Result<(), String> {
    let result = if frozen {
        rt::pause(runtime_root, id)
    } else {
        rt::resume(runtime_root, id)
    };
    result.map_err(|e| e.to_string())
}

/// Remove the runtime's state and the cgroup of container `id` (forcing:
/// kill what is left). Removing an unknown container is not an error.
pub fn delete(runtime_root: &Path, id: &str) -> Result<(), String> {
    match rt::delete(runtime_root, id, true) {
        Ok(()) | Err(rt::Error::NotFound(_)) => Ok(()),
        Err(err) => Err(err.to_string()),
    }
}

/// Whether the kernel's OOM killer ended a process of the container (read
/// from its cgroup's memory events before the cgroup is removed).
pub fn oom_killed(_runtime_root: &Path, id: &str) -> bool {
    let path = super::bundle::cgroups_path(id);
    rt::cgroups::manager_for(Some(Path::new(&path)), id)
        .and_then(|manager| manager.stats())
        .is_ok_and(|stats| stats.oom_kills.unwrap_or(0) > 0)
}

/// Resolve a docker `USER` value against the rootfs's /etc/passwd and
/// /etc/group: (uid, gid, additional gids, home).
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>, String), String> {
    let resolved = rt::user::resolve_user(rootfs, user).map_err(|e| e.to_string())?;
    Ok((
        resolved.uid,
        resolved.gid,
        resolved.additional_gids,
        resolved.home,
    ))
}

/// A process to start inside a running container (`berth exec`).
#[derive(Debug)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// A terminal (`-t`): the caller receives the pty master.
    pub tty: bool,
    /// The process's stdin, stdout and stderr when there is no terminal.
    pub stdio: Option<[OwnedFd; 3]>,
    /// Leave the process running; the caller does not wait for it.
    pub detach: bool,
    /// The container's own capability sets and no-new-privileges flag,
    /// which an exec'd process gets too (as in docker).
    pub capabilities: Option<oci_spec::runtime::LinuxCapabilities>,
    pub no_new_privileges: bool,
}

/// Start `request` in container `id`; unless detached, the process is a
/// child of the caller, which waits for it.
pub fn exec(runtime_root: &Path, id: &str, request: ExecRequest) -> Result<Launched, LaunchError> {
    let mut process = oci_spec::runtime::Process::default();
    process.set_args(Some(request.args));
    process.set_env(Some(request.env));
    process.set_cwd(request.cwd.into());
    process.set_terminal(Some(request.tty));
    let mut user = oci_spec::runtime::User::default();
    user.set_uid(request.uid);
    user.set_gid(request.gid);
    user.set_additional_gids(Some(request.additional_gids));
    process.set_user(user);
    process.set_capabilities(request.capabilities);
    process.set_no_new_privileges(Some(request.no_new_privileges));
    let mut options = rt::ExecOptions {
        detach: request.detach,
        ..Default::default()
    };
    if request.tty {
        options.console = rt::Console::Return;
    }
    if let Some(stdio) = request.stdio {
        options.stdio = rt::Stdio::Fds(stdio);
    }
    let executed = rt::exec(runtime_root, id, process, options).map_err(classify)?;
    Ok(Launched {
        pid: executed.pid.as_raw(),
        pty_master: executed.console,
    })
}

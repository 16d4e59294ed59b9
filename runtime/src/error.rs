//! The runtime's one error type.
//!
//! Every message names the step that failed and, where a syscall failed, the
//! kernel's reason in the words of strerror(3): `pivot_root: Invalid argument`,
//! `exec "/bin/nosuch": No such file or directory`. Failures inside the
//! container's init process travel to the caller over the setup socket as a
//! [`WireError`] and become the same variants here, so the caller cannot tell
//! (and need not care) in which process a step failed.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::cgroups::CgroupError;

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No state directory for this id (podman matches on "does not exist").
    #[error("container \"{0}\" does not exist")]
    NotFound(String),

    #[error("container \"{0}\" already exists")]
    AlreadyExists(String),

    #[error("invalid container id {id:?}: {why}")]
    InvalidId { id: String, why: &'static str },

    /// The bundle's config.json (or an exec process.json) is unusable.
    #[error("{file}: {message}")]
    InvalidConfig { file: PathBuf, message: String },

    /// The operation needs the container in another state.
    #[error("container \"{id}\" is {status}: cannot {action} it{hint}")]
    WrongState {
        id: String,
        status: String,
        action: &'static str,
        hint: &'static str,
    },

    /// The program to run does not exist in the container (docker: exit 127).
    #[error("exec {path:?}: No such file or directory")]
    ExecNotFound { path: String },

    /// The program exists but cannot be executed: permission, format, a
    /// directory... (docker: exit 126).
    #[error("exec {path:?}: {}", errno.desc())]
    ExecDenied { path: String, errno: Errno },

    /// A step failed with an errno: `"{step}: {strerror}"`.
    #[error("{step}: {}", errno.desc())]
    Syscall { step: String, errno: Errno },

    /// A step failed for a reason that is not an errno.
    #[error("{step}: {message}")]
    Step { step: String, message: String },

    #[error("{kind} hook {path:?}: {detail}")]
    Hook {
        kind: &'static str,
        path: PathBuf,
        detail: String,
    },

    #[error(transparent)]
    Cgroup(#[from] CgroupError),

    /// A user or group name not found in the image (see [`crate::user`]).
    #[error(transparent)]
    User(#[from] crate::user::UserError),

    #[error("seccomp: {0}")]
    Seccomp(String),

    /// Asked for something this runtime does not do; says what instead.
    #[error("{0}")]
    Unsupported(String),

    /// The init or exec process vanished without saying why.
    #[error("{0}")]
    ProcessDied(String),
}

impl Error {
    /// An error for `step` from an errno.
    pub fn sys(step: impl Into<String>, errno: Errno) -> Error {
        Error::Syscall {
            step: step.into(),
            errno,
        }
    }

    /// An error for `step` from an `io::Error`, keeping the errno when there is one.
    pub fn io(step: impl Into<String>, err: io::Error) -> Error {
        match err.raw_os_error() {
            Some(code) => Error::sys(step, Errno::from_raw(code)),
            None => Error::Step {
                step: step.into(),
                message: err.to_string(),
            },
        }
    }

    pub fn step(step: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Step {
            step: step.into(),
            message: message.into(),
        }
    }

    /// The errno behind this error, if a syscall failed.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Syscall { errno, .. } | Error::ExecDenied { errno, .. } => Some(*errno),
            Error::ExecNotFound { .. } => Some(Errno::ENOENT),
            _ => None,
        }
    }
}

/// `map_err` helpers: `.map_err(sys("pivot_root"))`.
pub fn sys<E: Into<ErrnoLike>>(step: impl Into<String>) -> impl FnOnce(E) -> Error {
    let step = step.into();
    move |e| match e.into() {
        ErrnoLike::Errno(errno) => Error::sys(step, errno),
        ErrnoLike::Other(message) => Error::step(step, message),
    }
}

/// Anything a syscall wrapper returns as its error.
pub enum ErrnoLike {
    Errno(Errno),
    Other(String),
}

impl From<Errno> for ErrnoLike {
    fn from(e: Errno) -> Self {
        ErrnoLike::Errno(e)
    }
}

impl From<io::Error> for ErrnoLike {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(code) => ErrnoLike::Errno(Errno::from_raw(code)),
            None => ErrnoLike::Other(e.to_string()),
        }
    }
}

impl From<rustix::io::Errno> for ErrnoLike {
    fn from(e: rustix::io::Errno) -> Self {
        ErrnoLike::Errno(Errno::from_raw(e.raw_os_error()))
    }
}

/// How an error crosses from the init (or exec) process to its parent: the
/// variant's kind and its fields, as JSON on the setup socket or exec fifo.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum WireError {
    ExecNotFound {
        path: String,
    },
    ExecDenied {
        path: String,
        errno: i32,
    },
    Syscall {
        step: String,
        errno: i32,
    },
    Hook {
        kind: String,
        path: PathBuf,
        detail: String,
    },
    Other {
        message: String,
    },
}

impl From<&Error> for WireError {
    fn from(err: &Error) -> Self {
        match err {
            Error::ExecNotFound { path } => WireError::ExecNotFound { path: path.clone() },
            Error::ExecDenied { path, errno } => WireError::ExecDenied {
                path: path.clone(),
                errno: *errno as i32,
            },
            Error::Syscall { step, errno } => WireError::Syscall {
                step: step.clone(),
                errno: *errno as i32,
            },
            Error::Hook { kind, path, detail } => WireError::Hook {
                kind: kind.to_string(),
                path: path.clone(),
                detail: detail.clone(),
            },
            other => WireError::Other {
                message: other.to_string(),
            },
        }
    }
}

impl From<WireError> for Error {
    fn from(wire: WireError) -> Self {
        match wire {
            WireError::ExecNotFound { path } => Error::ExecNotFound { path },
            WireError::ExecDenied { path, errno } => Error::ExecDenied {
                path,
                errno: Errno::from_raw(errno),
            },
            WireError::Syscall { step, errno } => Error::Syscall {
                step,
                errno: Errno::from_raw(errno),
            },
            WireError::Hook { kind, path, detail } => Error::Hook {
                kind: hook_kind_name(&kind),
                path,
                detail,
            },
            WireError::Other { message } => Error::Step {
                step: "container init".into(),
                message,
            },
        }
    }
}

/// Hook kinds are a closed set; map the wire string back to a static name.
fn hook_kind_name(kind: &str) -> &'static str {
    match kind {
        "prestart" => "prestart",
        "createRuntime" => "createRuntime",
        "createContainer" => "createContainer",
        "startContainer" => "startContainer",
        "poststart" => "poststart",
        "poststop" => "poststop",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_step_and_the_kernel_reason() {
        assert_eq!(
            Error::sys("pivot_root", Errno::EINVAL).to_string(),
            "pivot_root: Invalid argument"
        );
        assert_eq!(
            Error::ExecNotFound {
                path: "/bin/nosuch".into()
            }
            .to_string(),
            "exec \"/bin/nosuch\": No such file or directory"
        );
        assert_eq!(
            Error::NotFound("abc".into()).to_string(),
            "container \"abc\" does not exist"
        );
    }

    #[test]
    fn errors_survive_the_trip_over_the_wire() {
        let cases = vec![
            Error::ExecNotFound { path: "x".into() },
            Error::ExecDenied {
                path: "/etc".into(),
                errno: Errno::EACCES,
            },
            Error::sys("mount proc on /proc", Errno::EPERM),
        ];
        for err in cases {
            let wire = WireError::from(&err);
            let json = serde_json::to_string(&wire).unwrap();
            let back: Error = serde_json::from_str::<WireError>(&json).unwrap().into();
            assert_eq!(back.to_string(), err.to_string());
        }
    }
}

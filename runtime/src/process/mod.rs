//! The processes the runtime creates and the last steps before their execve.
//!
//! Roles:
//! - the *parent* is the caller of [`crate::create`] / [`crate::exec`] (the
//!   engine's monitor, or the `berth-runtime` binary). It validates, creates
//!   the cgroup, spawns, writes the id maps, runs the runtime-side hooks and
//!   records the state;
//! - the *intermediate* ([`spawn`]) exists only when namespaces must be
//!   joined before the clone;
//! - the *init* ([`init`]) becomes the container's first process: it builds
//!   the rootfs, pivots, drops privileges, waits for `start` and execs;
//! - a *tenant* ([`tenant`]) is a process entering a running container
//!   (`exec`): it joins the init's namespaces and cgroup and execs.
//!
//! Both carry a [`settings::ProcessSettings`] (the OCI `process` object,
//! prepared) and end with its steps: drop privileges, find the program,
//! execve.
//!
//! Mechanism for the common last steps (this module): `execve(2)` of a path
//! found by searching the container's `PATH` (so that "not found" and
//! "cannot execute" are told apart before anything runs), `getcwd(2)` to
//! check the working directory is inside the container's root,
//! `sigaction(2)` / `sigprocmask(2)` to give the program default signal
//! handling (a Rust parent ignores SIGPIPE; that must not be inherited).

pub mod init;
pub mod settings;
pub mod spawn;
pub mod tenant;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::error::{Error, Result};

/// The PATH used when the process's environment has none (runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Find the program to run, as execvp(3) would, but telling apart "no such
/// file" (docker exit code 127) from "found but cannot execute" (126).
/// Called inside the container, after the uid change.
pub fn find_executable(program: &str, env: &[String]) -> Result<PathBuf> {
    if program.is_empty() {
        return Err(Error::ExecNotFound {
            path: program.to_string(),
        });
    }
    if program.contains('/') {
        return check_executable(Path::new(program)).map(|()| PathBuf::from(program));
    }
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied: Option<Errno> = None;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(program);
        match check_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Error::ExecDenied { errno, .. }) => {
                denied.get_or_insert(errno);
            }
            Err(_) => {}
        }
    }
    match denied {
        Some(errno) => Err(Error::ExecDenied {
            path: program.to_string(),
            errno,
        }),
        None => Err(Error::ExecNotFound {
            path: program.to_string(),
        }),
    }
}

fn check_executable(path: &Path) -> Result<()> {
    let text = path.to_string_lossy().into_owned();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::ExecNotFound { path: text })
        }
        Err(e) => {
            return Err(Error::ExecDenied {
                path: text,
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EACCES)),
            })
        }
    };
    if meta.is_dir() {
        return Err(Error::ExecDenied {
            path: text,
            errno: Errno::EACCES,
        });
    }
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK)
        .map_err(|errno| Error::ExecDenied { path: text, errno })
}

/// chdir into `cwd` and check the result is inside the container's root: a
/// directory fd leaked from the host (`/proc/self/fd/N`) would otherwise
/// give a working directory outside it (CVE-2024-21626).
pub fn enter_cwd(cwd: &Path) -> Result<()> {
    if !cwd.is_absolute() {
        return Err(Error::InvalidConfig {
            file: "config.json".into(),
            message: format!("process.cwd {:?} must be an absolute path", cwd.display()),
        });
    }
    nix::unistd::chdir(cwd).map_err(|e| Error::sys(format!("chdir {}", cwd.display()), e))?;
    match nix::unistd::getcwd() {
        Ok(now) if now.is_absolute() => Ok(()),
        Ok(now) => Err(Error::step(
            format!("chdir {}", cwd.display()),
            format!(
                "the working directory {} is outside the container",
                now.display()
            ),
        )),
        // getcwd fails with ENOENT when the directory is not reachable from the root.
        Err(errno) => Err(Error::step(
            format!("chdir {}", cwd.display()),
            format!(
                "the working directory is outside the container ({})",
                errno.desc()
            ),
        )),
    }
}

/// Default disposition for every signal and an empty mask.
pub fn reset_signals() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL is always valid; invalid
        // numbers (reserved by libc) just fail with EINVAL.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}

/// execve; returns only on failure, as the error to report.
pub fn execute(path: &Path, args: &[String], env: &[String]) -> Error {
    let to_c = |s: &str| CString::new(s).map_err(|_| ());
    let (Ok(c_path), Ok(c_args), Ok(c_env)) = (
        CString::new(path.as_os_str().as_bytes()).map_err(|_| ()),
        args.iter()
            .map(|a| to_c(a))
            .collect::<std::result::Result<Vec<_>, _>>(),
        env.iter()
            .map(|e| to_c(e))
            .collect::<std::result::Result<Vec<_>, _>>(),
    ) else {
        return Error::InvalidConfig {
            file: "config.json".into(),
            message: "process args and env must not contain NUL bytes".into(),
        };
    };
    let errno = match nix::unistd::execve(&c_path, &c_args, &c_env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let shown = args
        .first()
        .cloned()
        .unwrap_or_else(|| path.display().to_string());
    match errno {
        Errno::ENOENT => Error::ExecNotFound { path: shown },
        errno => Error::ExecDenied { path: shown, errno },
    }
}

/// The exit code a failed exec leaves, as docker's convention has it.
pub fn exit_code_for(err: &Error) -> i32 {
    match err {
        Error::ExecNotFound { .. } => 127,
        Error::ExecDenied { .. } => 126,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_and_not_executable_are_told_apart() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert!(find_executable("sh", &env).unwrap().ends_with("sh"));
        assert!(matches!(
            find_executable("no-such-program-here", &env),
            Err(Error::ExecNotFound { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not a program").unwrap();
        assert!(matches!(
            find_executable(plain.to_str().unwrap(), &env),
            Err(Error::ExecDenied {
                errno: Errno::EACCES,
                ..
            })
        ));
        assert!(matches!(
            find_executable("/etc", &env),
            Err(Error::ExecDenied { .. })
        ));
        assert!(matches!(
            find_executable("/nonexistent/x", &env),
            Err(Error::ExecNotFound { .. })
        ));
    }
}

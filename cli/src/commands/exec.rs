//! `berth exec`: run a command in a running container.
//!
//! The new process joins the container's namespaces and cgroup through
//! berth-runtime and is a child of this command, which waits for it (or, with
//! `-d`, leaves it running). With `-t` this command relays between its own
//! terminal (in raw mode) and the new pty's master.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use berth_engine::container::lifecycle;
use berth_engine::container::runtime_bridge::{self, ExecRequest};
use clap::Args;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::{pty_relay, ExitStatus};
use crate::commands::Context;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Set environment variables.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

pub fn run(args: ExecArgs, ctx: &Context) -> anyhow::Result<u8> {
    let record = lifecycle::find(&ctx.roots, &args.container)?;
    if record.state.status == berth_engine::container::Status::Paused {
        return Err(lifecycle::LifecycleError::PausedExec(record.id).into());
    }
    let Some(pid) = record.state.pid.filter(|_| record.state.status.is_active()) else {
        bail!("Container {} is not running", record.id);
    };
    // The container's files, as its PID 1 sees them (its mount namespace).
    let container_root = PathBuf::from(format!("/proc/{pid}/root"));
    let user = args
        .user
        .clone()
        .unwrap_or_else(|| record.config.user.clone());
    let (uid, gid, additional_gids, home) =
        runtime_bridge::resolve_user(&container_root, &user).map_err(anyhow::Error::msg)?;
    let mut env = record.config.env.clone();
    for entry in &args.env {
        let key = entry.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(entry.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    if args.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let stdio = if args.tty {
        None
    } else {
        Some(exec_stdio(args.interactive && !args.detach, args.detach)?)
    };
    let bundle_config = ctx.roots.containers().join(&record.id).join("config.json");
    let spec = oci_spec::runtime::Spec::load(&bundle_config)
        .with_context(|| format!("read the container's {}", bundle_config.display()))?;
    let process = spec.process().clone().unwrap_or_default();
    let request = ExecRequest {
        args: args.command.clone(),
        env,
        cwd: args
            .workdir
            .clone()
            .unwrap_or_else(|| record.config.working_dir.clone()),
        uid,
        gid,
        additional_gids,
        tty: args.tty,
        stdio,
        detach: args.detach,
        capabilities: process.capabilities().clone(),
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
    };
    let launched = match runtime_bridge::exec(&ctx.roots.runtime(), &record.id, request) {
        Ok(launched) => launched,
        Err(err) => {
            eprintln!("berth: {err}");
            return Err(ExitStatus(err.exit_code().clamp(0, 255) as u8).into());
        }
    };
    if args.detach {
        return Ok(0);
    }
    if let Some(master) = launched.pty_master {
        pty_relay::relay(master, args.interactive)?;
    }
    wait_for(launched.pid)
}

/// stdin (ours with `-i`, else /dev/null), stdout and stderr (ours, or
/// /dev/null when detached).
fn exec_stdio(keep_stdin: bool, detach: bool) -> anyhow::Result<[OwnedFd; 3]> {
    let null = || -> anyhow::Result<OwnedFd> {
        Ok(OwnedFd::from(
            File::options().read(true).write(true).open("/dev/null")?,
        ))
    };
    let ours = |fd: std::os::fd::BorrowedFd<'_>| -> anyhow::Result<OwnedFd> {
        fd.try_clone_to_owned()
            .context("duplicate a standard stream")
    };
    let stdin = if keep_stdin {
        ours(std::io::stdin().as_fd())?
    } else {
        null()?
    };
    let (stdout, stderr) = if detach {
        (null()?, null()?)
    } else {
        (
            ours(std::io::stdout().as_fd())?,
            ours(std::io::stderr().as_fd())?,
        )
    };
    Ok([stdin, stdout, stderr])
}

/// The exit status of our child `pid`, docker-style (128+N for signal N).
fn wait_for(pid: i32) -> anyhow::Result<u8> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code as u8),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as u8),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err).context("wait for the exec'd process"),
        }
    }
}

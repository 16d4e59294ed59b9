//! A process entering a running container (`exec`): what it does between
//! the clone and its execve.
//!
//! The intermediate already joined the container's namespaces with
//! `setns(pidfd, flags)` (one call, all namespaces of the init at once, and
//! the pidfd guarantees it is the init we recorded, not a reused pid) and
//! cloned this process into the container's cgroup. Joining the mount
//! namespace also set its root and working directory to the container's.
//! Steps here:
//! 1. non-dumpable until execve: a process already in the container cannot
//!    ptrace it or open its /proc/PID/exe — the runtime's own binary
//!    (CVE-2019-5736 class);
//! 2. wait for `Go` (the parent placed it in the v1 cgroups too);
//! 3. stdio, or a new pty from the container's devpts sent to the caller;
//! 4. oom_score_adj, rlimits, bounding set, ids, capabilities, umask,
//!    no_new_privs, the cwd (checked to be inside the root), the program;
//! 5. every extra fd close-on-exec, default signals, seccomp, execve. The
//!    setup channel closes with the execve: the parent reads EOF = success.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::capabilities::CapabilitySets;
use crate::channel::ChildChannel;
use crate::error::{Error, Result};
use crate::identity::{self, Identity};
use crate::rlimits::Rlimit;
use crate::seccomp::CompiledFilter;
use crate::terminal;

/// What the entering process needs, prepared by the parent.
#[derive(Debug)]
pub struct TenantConfig {
    pub stdio: Option<[OwnedFd; 3]>,
    pub console_socket: Option<OwnedFd>,
    pub console_size: Option<(u16, u16)>,
    pub oom_score_adj: Option<i32>,
    pub rlimits: Vec<Rlimit>,
    pub capabilities: Option<CapabilitySets>,
    pub identity: Identity,
    pub umask: u32,
    pub no_new_privs: bool,
    pub seccomp: Option<CompiledFilter>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub preserve_fds: u32,
    /// The container's cgroup v1 `tasks` files, written `0` to on arrival
    /// (empty in a user namespace: then the parent moves the process).
    pub cgroup_self_join: Vec<crate::cgroups::SelfJoinFile>,
}

/// The entry point; returns the exit code when it cannot exec.
pub fn main(mut cfg: TenantConfig, channel: &ChildChannel) -> i32 {
    // Our diagnostics must not follow fd 2 into the process's stderr.
    crate::diagnostics::keep_stderr_before_stdio_changes(3 + cfg.preserve_fds as i32);
    let _span = tracing::debug_span!("tenant").entered();
    let err = match run(&mut cfg, channel) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    channel.send_failure(&err);
    super::exit_code_for(&err)
}

fn run(cfg: &mut TenantConfig, channel: &ChildChannel) -> Result<std::convert::Infallible> {
    identity::set_non_dumpable()?;
    crate::cgroups::join_self(std::mem::take(&mut cfg.cgroup_self_join))?;
    channel.wait_for_go()?;
    if let Some(fds) = &cfg.stdio {
        crate::fds::install_stdio([fds[0].as_fd(), fds[1].as_fd(), fds[2].as_fd()])?;
    }
    if let Some(socket) = cfg.console_socket.take() {
        let pty = terminal::open_pty(Path::new("/dev/ptmx"))?;
        if let Some((rows, cols)) = cfg.console_size {
            terminal::set_size(pty.master.as_fd(), rows, cols)?;
        }
        terminal::send_fd(
            socket.as_fd(),
            pty.master.as_fd(),
            &format!("/dev/pts/{}", pty.number),
        )?;
        drop(pty.master);
        terminal::take_as_controlling_terminal(&pty.slave)?;
    }
    if let Some(score) = cfg.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(|e| Error::io(format!("set oom_score_adj to {score}"), e))?;
    }
    crate::rlimits::apply(&cfg.rlimits)?;
    if let Some(caps) = &cfg.capabilities {
        caps.drop_bounding()?;
    }
    let early = seccomp_early(cfg);
    if early {
        if let Some(filter) = &cfg.seccomp {
            crate::seccomp::install(filter)?;
        }
    }
    cfg.identity.switch()?;
    if let Some(caps) = &cfg.capabilities {
        caps.apply()?;
    }
    identity::set_umask(cfg.umask);
    if cfg.no_new_privs {
        identity::set_no_new_privs()?;
    }
    super::enter_cwd(&cfg.cwd)?;
    let program =
        super::find_executable(cfg.args.first().map(String::as_str).unwrap_or(""), &cfg.env)?;
    crate::fds::close_on_exec_all_but(cfg.preserve_fds)?;
    super::reset_signals();
    if !early {
        if let Some(filter) = &cfg.seccomp {
            crate::seccomp::install(filter)?;
        }
    }
    Err(super::execute(&program, &cfg.args, &cfg.env))
}

fn seccomp_early(cfg: &TenantConfig) -> bool {
    let keeps_sys_admin = cfg.capabilities.as_ref().is_none_or(|c| {
        c.effective
            .contains(&(caps::Capability::CAP_SYS_ADMIN.index()))
    });
    !cfg.no_new_privs && !keeps_sys_admin
}

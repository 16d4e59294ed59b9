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
//! 2. move itself into the container's v1 cgroups (`0` into each `tasks`
//!    file), then wait for `Go` (the parent finished the join);
//! 3. stdio, or a new pty from the container's devpts sent to the caller;
//! 4. oom_score_adj, rlimits, bounding set, ids, capabilities, umask,
//!    no_new_privs, the cwd (checked to be inside the root), the program;
//! 5. every extra fd close-on-exec, default signals, seccomp, execve. The
//!    setup channel closes with the execve: the parent reads EOF = success.
//!
//! Steps 4 and 5 are the init's too: [`super::settings`] holds them.

use std::os::fd::AsFd;
use std::path::Path;

use super::settings::ProcessSettings;
use crate::channel::ChildChannel;
use crate::error::Result;
use crate::identity;
use crate::terminal;

/// What the entering process needs, prepared by the parent: its `process`
/// object and nothing else (the container gives the rest).
pub type TenantConfig = ProcessSettings;

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
    cfg.join_cgroups_self()?;
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
    cfg.write_oom_score_adj()?;
    cfg.drop_privileges()?;
    let program = cfg.find_program()?;
    cfg.execute(&program)
}

//! The OCI `process` object, prepared by the parent for the process that
//! becomes it: the container's init (`create`) and a process entering a
//! running container (`exec`) end the same way, so both carry one
//! [`ProcessSettings`] and call the same steps.
//!
//! Mechanism, in the order the steps run: `setrlimit(2)`,
//! `prctl(PR_CAPBSET_DROP)` for the bounding set, `seccomp(2)` (before the
//! uid change when nothing would be left to allow it after), `setgroups(2)` /
//! `setresgid(2)` / `setresuid(2)`, `capset(2)`, `umask(2)`,
//! `prctl(PR_SET_NO_NEW_PRIVS)`; then `chdir(2)` and the PATH search; last,
//! every extra fd close-on-exec, default signals and `execve(2)`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use crate::capabilities::CapabilitySets;
use crate::cgroups::SelfJoinFile;
use crate::error::{Error, Result};
use crate::identity::{self, Identity};
use crate::rlimits::{self, Rlimit};
use crate::seccomp::CompiledFilter;

/// Everything about the program and its privileges, validated before the
/// clone (the child gets a copy of this memory).
#[derive(Debug)]
pub struct ProcessSettings {
    /// Explicit stdio; `None`: keep the inherited 0, 1, 2.
    pub stdio: Option<[OwnedFd; 3]>,
    /// Where to send the pty master (a connected unix socket) when a terminal is asked.
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
    /// Fds 3..3+N stay open across the execve.
    pub preserve_fds: u32,
    /// The cgroup v1 `tasks` files the new process writes `0` to, moving
    /// itself (empty in a user namespace: then the parent moves it).
    pub cgroup_self_join: Vec<SelfJoinFile>,
}

impl ProcessSettings {
    /// Prepare `process` (rlimits fitted to the host's hard limits) with the
    /// capabilities and seccomp filter the caller chose. Called while
    /// validating, before anything is made; the caller then sets the fds
    /// (stdio, console socket, preserved fds) and the cgroup files.
    pub fn from_spec(
        process: &Process,
        capabilities: Option<CapabilitySets>,
        seccomp: Option<CompiledFilter>,
    ) -> Result<Self> {
        let rlimits = rlimits::fit_to_host(&rlimits::from_spec(
            process.rlimits().as_deref().unwrap_or(&[]),
        )?)?;
        let user = process.user();
        Ok(Self {
            stdio: None,
            console_socket: None,
            console_size: process
                .console_size()
                .map(|b| (b.height() as u16, b.width() as u16)),
            oom_score_adj: process.oom_score_adj(),
            rlimits,
            capabilities,
            identity: Identity::from_spec(user),
            umask: user.umask().unwrap_or(0o022),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp,
            args: process.args().clone().unwrap_or_default(),
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().clone(),
            preserve_fds: 0,
            cgroup_self_join: Vec::new(),
        })
    }

    /// Into the v1 cgroups by ourselves, first thing (cgroups::self_join
    /// says why); the parent adds the rest.
    pub fn join_cgroups_self(&mut self) -> Result<()> {
        crate::cgroups::join_self(std::mem::take(&mut self.cgroup_self_join))?;
        Ok(())
    }

    pub fn write_oom_score_adj(&self) -> Result<()> {
        let Some(score) = self.oom_score_adj else {
            return Ok(());
        };
        std::fs::write("/proc/self/oom_score_adj", score.to_string()).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EACCES) {
                " (lowering it needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            Error::io(format!("set oom_score_adj to {score}{hint}"), e)
        })
    }

    /// Seccomp must be installed while the process may: with no_new_privs,
    /// or with CAP_SYS_ADMIN. Without no_new_privs and without CAP_SYS_ADMIN
    /// in the final set, it is installed before the privileges go (as runc
    /// does); otherwise last, so the filter need not allow the setup's calls.
    fn seccomp_early(&self) -> bool {
        let keeps_sys_admin = self.capabilities.as_ref().is_none_or(|c| {
            c.effective
                .contains(&(caps::Capability::CAP_SYS_ADMIN.index()))
        });
        !self.no_new_privs && !keeps_sys_admin
    }

    /// rlimits, the bounding set, the ids, the capabilities, the umask and
    /// no_new_privs, in that order (and seccomp among them when it must come
    /// early).
    pub fn drop_privileges(&self) -> Result<()> {
        crate::rlimits::apply(&self.rlimits)?;
        if let Some(caps) = &self.capabilities {
            caps.drop_bounding()?;
            let kept = crate::capabilities::names(&caps.bounding).join(" ");
            tracing::debug!(step = "capabilities.bounding", kept = %kept, "prctl(PR_CAPBSET_DROP) for every capability but: {kept}");
        }
        if self.seccomp_early() {
            self.install_seccomp()?;
        }
        self.identity.switch()?;
        let id = &self.identity;
        tracing::debug!(step = "identity", uid = id.uid, gid = id.gid, groups = ?id.additional_gids,
            "setgroups({:?}), setresgid({}), setresuid({})", id.additional_gids, id.gid, id.uid);
        if let Some(caps) = &self.capabilities {
            caps.apply()?;
            let effective = crate::capabilities::names(&caps.effective).join(" ");
            tracing::debug!(step = "capabilities", effective = %effective, "capset: effective and permitted capabilities: {effective}");
        }
        identity::set_umask(self.umask);
        if self.no_new_privs {
            identity::set_no_new_privs()?;
            tracing::debug!(step = "no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS, 1): setuid binaries and file capabilities grant nothing any more");
        }
        Ok(())
    }

    /// Enter the working directory (checked to be inside the root) and find
    /// the program as the new user, so "not found" (127) and "cannot
    /// execute" (126) are known before anything runs.
    pub fn find_program(&self) -> Result<PathBuf> {
        super::enter_cwd(&self.cwd)?;
        super::find_executable(
            self.args.first().map(String::as_str).unwrap_or(""),
            &self.env,
        )
    }

    /// The last steps: no extra fd survives, default signals, the late
    /// seccomp filter, execve. Returns only on failure.
    pub fn execute(&self, program: &Path) -> Result<std::convert::Infallible> {
        crate::fds::close_on_exec_all_but(self.preserve_fds)?;
        super::reset_signals();
        if !self.seccomp_early() {
            self.install_seccomp()?;
        }
        tracing::debug!(step = "execve", program = %program.display(), args = ?self.args,
            "execve({:?}, {:?}): this process, PID {} in its namespace, becomes the program", program.display().to_string(), self.args, std::process::id());
        Err(super::execute(program, &self.args, &self.env))
    }

    fn install_seccomp(&self) -> Result<()> {
        match &self.seccomp {
            Some(filter) => crate::seccomp::install(filter),
            None => Ok(()),
        }
    }
}

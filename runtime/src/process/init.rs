//! The container's init: what the new process does between clone3 and the
//! execve of the container's program. Each step is one function call below,
//! in this order (crun's and runc's order):
//!
//! 1. become non-dumpable, die with the parent (`PR_SET_PDEATHSIG`) until created;
//! 2. wait for `Go` (the parent wrote the id maps);
//! 3. in a new user namespace, become its root (`setresuid(0)`);
//! 4. unshare the time namespace, join namespaces by path;
//! 5. hostname, domainname, oom_score_adj;
//! 6. stdio; the rootfs ([`crate::rootfs::prepare`]) — which, before its
//!    first cgroup mount (or at its end), waits for `Joined` (the parent put
//!    us in our cgroups meanwhile) and unshares the cgroup namespace;
//! 7. ask the parent to run prestart/createRuntime hooks; run createContainer hooks;
//! 8. `pivot_root`; the terminal; read-only root;
//! 9. personality, rlimits, bounding set, uid/gid/groups, capabilities,
//!    umask, cwd (checked inside the root), find the program, no_new_privs;
//! 10. tell the parent `Created`, stop dying with it;
//! 11. block opening `exec.fifo` for writing until `start` opens it for reading;
//! 12. startContainer hooks; mark every extra fd close-on-exec; default
//!     signals; seccomp; execve.
//!
//! Steps 9 (but personality) and 12 (but the hooks) are an exec'd process's
//! too: [`super::settings`] holds them.
//!
//! Errors before `Created` go to the parent over the setup channel; after
//! it, to `start` through the fifo (whose write end closes on a successful
//! execve, which is how `start` knows the program runs).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Hook, LinuxPersonalityDomain};

use super::settings::ProcessSettings;
use crate::channel::ChildChannel;
use crate::error::{Error, Result, WireError};
use crate::hooks::{self, HookKind};
use crate::identity;
use crate::namespaces::{self, Join, CLONE_NEWTIME};
use crate::rootfs::{self, cgroupfs::HostCgroups, RootfsPlan};
use crate::state::ContainerState;
use crate::syscall::{self, Syscall};
use crate::terminal;

/// Everything the init needs, prepared and validated by the parent before
/// the clone (the child gets a copy of this memory).
#[derive(Debug)]
pub struct InitConfig {
    /// The program, its stdio and its privileges (shared with `exec`).
    pub process: ProcessSettings,
    pub plan: RootfsPlan,
    /// Joined by the init after `Go` (empty when an intermediate joined them).
    pub joins: Vec<Join>,
    pub new_user_ns: bool,
    pub unshare_later: CloneFlags,
    pub time_offsets: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub personality: Option<LinuxPersonalityDomain>,
    pub readonly_root: bool,
    pub no_pivot: bool,
    /// O_PATH fd of exec.fifo and of the host's /proc (to reopen the fifo
    /// through /proc/thread-self/fd after pivot_root).
    pub fifo: OwnedFd,
    pub host_proc: OwnedFd,
    pub create_container_hooks: Vec<Hook>,
    pub start_container_hooks: Vec<Hook>,
    /// The state hooks receive (pid and status filled in at the time).
    pub hook_state: ContainerState,
}

/// The init's entry point; returns the exit code when it cannot exec.
pub fn main(mut cfg: InitConfig, channel: &ChildChannel) -> i32 {
    // Our narration must not follow fd 2 into the container's stderr.
    crate::diagnostics::keep_stderr_before_stdio_changes(3 + cfg.process.preserve_fds as i32);
    let _span = tracing::debug_span!("init").entered();
    let program = match set_up(&mut cfg, channel) {
        Ok(program) => program,
        Err(err) => {
            channel.send_failure(&err);
            return super::exit_code_for(&err);
        }
    };
    // From here on the parent of `create` may be gone: report through the fifo.
    let fifo = match wait_for_start(&cfg) {
        Ok(fifo) => fifo,
        // Nobody to tell: the fifo could not be opened.
        Err(err) => return super::exit_code_for(&err),
    };
    let err = match start_program(&cfg, &program) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    report_through_fifo(&fifo, &err);
    super::exit_code_for(&err)
}

fn set_up(cfg: &mut InitConfig, channel: &ChildChannel) -> Result<PathBuf> {
    die_with_parent()?;
    identity::set_non_dumpable()?;
    // Exact modes for device nodes and mount points.
    identity::set_umask(0);
    let host_pid = channel.wait_for_go()?;
    cfg.hook_state.pid = host_pid;
    // The parent adds the rest of the cgroups and then says `Joined`.
    cfg.process.join_cgroups_self()?;

    if cfg.new_user_ns {
        become_namespace_root()?;
    }
    unshare_time_namespace(cfg)?;
    namespaces::join_all(&cfg.joins)?;

    let sys = syscall::real();
    if let Some(name) = &cfg.hostname {
        sys.sethostname(name)
            .map_err(|e| Error::io(format!("sethostname {name:?}"), e))?;
        tracing::debug!(step = "hostname", hostname = %name, "sethostname({name:?}) in the container's UTS namespace");
    }
    if let Some(name) = &cfg.domainname {
        sys.setdomainname(name)
            .map_err(|e| Error::io(format!("setdomainname {name:?}"), e))?;
    }
    cfg.process.write_oom_score_adj()?;
    if let Some(fds) = &cfg.process.stdio {
        crate::fds::install_stdio([fds[0].as_fd(), fds[1].as_fd(), fds[2].as_fd()])?;
    }

    // Called before the first cgroup mount, or after all mounts.
    let mut joined: Option<HostCgroups> = None;
    let unshare_cgroup = cfg.unshare_later.contains(CloneFlags::CLONE_NEWCGROUP);
    let mounts_cgroups = cfg
        .plan
        .mounts
        .iter()
        .any(|m| matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2")));
    let mut cgroups_ready = || -> Result<HostCgroups> {
        if let Some(host) = &joined {
            return Ok(host.clone());
        }
        channel.wait_for_joined()?;
        // The host paths of our cgroups: read before our cgroup namespace hides them.
        let host = if mounts_cgroups {
            HostCgroups::read()?
        } else {
            HostCgroups::default()
        };
        if unshare_cgroup {
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| Error::sys("unshare(CLONE_NEWCGROUP)", e))?;
            tracing::debug!(step = "unshare", "unshare(CLONE_NEWCGROUP): from now on the container's cgroup looks like the root, /");
        }
        joined = Some(host.clone());
        Ok(host)
    };
    let root = rootfs::prepare(&sys, &cfg.plan, &mut cgroups_ready)?;
    cgroups_ready()?;
    channel.run_create_runtime_hooks()?;
    cfg.hook_state.status = crate::state::Status::Creating;
    hooks::run_all(
        HookKind::CreateContainer,
        &cfg.create_container_hooks,
        &cfg.hook_state.hook_json(),
    )?;
    drop(root);
    rootfs::pivot(&sys, &cfg.plan.rootfs, cfg.no_pivot)?;
    if let Some(socket) = cfg.process.console_socket.take() {
        set_up_terminal(&sys, socket, cfg.process.console_size)?;
    }
    if cfg.readonly_root {
        rootfs::remount_root_readonly(&sys)?;
    }

    if let Some(domain) = cfg.personality {
        set_personality(domain)?;
    }
    cfg.process.drop_privileges()?;
    let program = cfg.process.find_program()?;
    channel.send_created()?;
    // SAFETY: prctl with integer arguments only. Created: the init now lives
    // on even if `berth-runtime create` exits (a subreaper adopts it).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    Ok(program)
}

/// Kill this process if the parent dies during setup. (Had it died before
/// this call, the setup channel reports end-of-file at the next step; getppid
/// cannot tell: in a new pid namespace it is 0.)
fn die_with_parent() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_PDEATHSIG)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

fn become_namespace_root() -> Result<()> {
    let zero_gid = nix::unistd::Gid::from_raw(0);
    let zero_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(zero_gid, zero_gid, zero_gid)
        .map_err(|e| Error::sys("setresgid 0 in the user namespace (is gid 0 mapped?)", e))?;
    nix::unistd::setresuid(zero_uid, zero_uid, zero_uid)
        .map_err(|e| Error::sys("setresuid 0 in the user namespace (is uid 0 mapped?)", e))
}

fn unshare_time_namespace(cfg: &InitConfig) -> Result<()> {
    if cfg.unshare_later.contains(CLONE_NEWTIME) {
        nix::sched::unshare(CLONE_NEWTIME).map_err(|e| Error::sys("unshare(CLONE_NEWTIME)", e))?;
        // The new time namespace is entered by execve; offsets must be set
        // before any process is inside it, i.e. now.
        if let Some(text) = &cfg.time_offsets {
            std::fs::write("/proc/self/timens_offsets", text)
                .map_err(|e| Error::io("write /proc/self/timens_offsets", e))?;
        }
    }
    Ok(())
}

fn set_up_terminal(sys: &dyn Syscall, socket: OwnedFd, size: Option<(u16, u16)>) -> Result<()> {
    let pty = terminal::open_pty(Path::new("/dev/pts/ptmx"))?;
    if let Some((rows, cols)) = size {
        terminal::set_size(pty.master.as_fd(), rows, cols)?;
    }
    terminal::bind_console(sys, &pty)?;
    terminal::send_fd(
        socket.as_fd(),
        pty.master.as_fd(),
        &format!("/dev/pts/{}", pty.number),
    )?;
    drop(pty.master);
    terminal::take_as_controlling_terminal(&pty.slave)
}

fn set_personality(domain: LinuxPersonalityDomain) -> Result<()> {
    let persona = match domain {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) with an integer argument.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(Error::sys("personality", nix::errno::Errno::last()));
    }
    Ok(())
}

/// Block until `start` opens the fifo for reading; return our write end.
fn wait_for_start(cfg: &InitConfig) -> Result<OwnedFd> {
    let path = format!("thread-self/fd/{}", cfg.fifo.as_raw_fd());
    rustix::fs::openat(
        &cfg.host_proc,
        path.as_str(),
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        Error::sys(
            "open exec.fifo",
            nix::errno::Errno::from_raw(e.raw_os_error()),
        )
    })
}

fn start_program(cfg: &InitConfig, program: &Path) -> Result<std::convert::Infallible> {
    let mut state = cfg.hook_state.clone();
    state.status = crate::state::Status::Created;
    hooks::run_all(
        HookKind::StartContainer,
        &cfg.start_container_hooks,
        &state.hook_json(),
    )?;
    cfg.process.execute(program)
}

fn report_through_fifo(fifo: &OwnedFd, err: &Error) {
    let (Ok(json), Ok(copy)) = (serde_json::to_vec(&WireError::from(err)), fifo.try_clone()) else {
        return;
    };
    let _ = std::fs::File::from(copy).write_all(&json);
}

//! The lifecycle operations: create, start, state, kill, delete, pause,
//! resume, list, ps, update, exec. Each is a function of the state root and
//! the container id, so any process (the engine's monitor, the
//! `berth-runtime` binary, a test) can call them; state lives on disk (see
//! [`crate::state`]).
//!
//! Mechanism beyond the modules it drives: `mkfifo(3)` for the exec fifo,
//! `pidfd_open(2)` + `pidfd_send_signal(2)` to signal exactly the recorded
//! init (its start time is checked after opening the pidfd, so a reused pid
//! is never signalled), `poll(2)` on the fifo and the pidfd in `start`.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Process, Spec};

use crate::bundle;
use crate::capabilities::CapabilitySets;
use crate::cgroups::{self, CgroupError, CgroupManager, SelfJoinFile};
use crate::channel::{self, InitEvent};
use crate::devices;
use crate::error::{Error, Result, WireError};
use crate::hooks::{self, HookKind};
use crate::namespaces::{self, NamespacePlan};
use crate::process::settings::ProcessSettings;
use crate::process::{init, spawn, tenant};
use crate::rootfs::RootfsPlan;
use crate::seccomp;
use crate::state::{self, ContainerState, Record, StateDir, Status};
use crate::sysctl;

/// The container process's stdin, stdout and stderr.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The caller's own 0, 1 and 2.
    #[default]
    Inherit,
    /// These fds (e.g. pipes to a monitor), in the order stdin, stdout, stderr.
    Fds([OwnedFd; 3]),
}

impl Stdio {
    /// The fds the new process installs as 0, 1 and 2; `None` keeps its own.
    fn into_fds(self) -> Option<[OwnedFd; 3]> {
        match self {
            Stdio::Inherit => None,
            Stdio::Fds(fds) => Some(fds),
        }
    }
}

/// Where the pty master goes when `process.terminal` is true.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Console {
    /// No terminal (an error if the process asks for one).
    #[default]
    None,
    /// Connect to this unix socket and send the master with SCM_RIGHTS
    /// (runc's `--console-socket`, as conmon and containerd use it).
    Socket(PathBuf),
    /// Return the master to the caller ([`Created::console`], [`Executed::console`]).
    Return,
}

/// Arguments of [`create`].
#[derive(Debug)]
pub struct CreateOptions {
    pub id: String,
    /// The bundle directory (config.json + rootfs).
    pub bundle: PathBuf,
    /// The state root (runc's `--root`; the engine passes `<state>/runtime`).
    pub root: PathBuf,
    pub stdio: Stdio,
    pub console: Console,
    /// Write the init's host pid here once created.
    pub pid_file: Option<PathBuf>,
    /// Keep the caller's fds 3 .. 3+N open in the container (LISTEN_FDS).
    pub preserve_fds: u32,
    /// `MS_MOVE` + `chroot` instead of `pivot_root` (a rootfs on a ramfs).
    pub no_pivot: bool,
}

impl CreateOptions {
    pub fn new(
        id: impl Into<String>,
        bundle: impl Into<PathBuf>,
        root: impl Into<PathBuf>,
    ) -> Self {
        CreateOptions {
            id: id.into(),
            bundle: bundle.into(),
            root: root.into(),
            stdio: Stdio::Inherit,
            console: Console::None,
            pid_file: None,
            preserve_fds: 0,
            no_pivot: false,
        }
    }
}

/// What [`create`] returns.
#[derive(Debug)]
pub struct Created {
    /// Host pid of the init: a child of the caller, waiting for [`start`].
    pub pid: Pid,
    /// The pty master, with [`Console::Return`].
    pub console: Option<OwnedFd>,
}

/// Arguments of [`exec`].
#[derive(Debug, Default)]
pub struct ExecOptions {
    pub stdio: Stdio,
    pub console: Console,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Make the process *not* a child of the caller (it is adopted by the
    /// nearest subreaper or init).
    pub detach: bool,
}

/// What [`exec`] returns, once the process's execve succeeded.
#[derive(Debug)]
pub struct Executed {
    pub pid: Pid,
    pub console: Option<OwnedFd>,
}

/// Undo a half-made container when create fails: kill and reap the init,
/// remove the cgroup, remove the state directory. (Mounts live in the init's
/// mount namespace and vanish with it.)
struct Rollback<'a> {
    dir: Option<StateDir>,
    cgroup: Option<&'a dyn CgroupManager>,
    pid: Option<Pid>,
}

impl Rollback<'_> {
    fn commit(mut self) -> StateDir {
        self.pid = None;
        self.cgroup = None;
        self.dir.take().expect("state dir present until commit")
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            tracing::debug!(%pid, "create failed: killing the init");
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(cgroup) = self.cgroup {
            let _ = cgroup.kill_all(Signal::SIGKILL);
            if let Err(e) = cgroup.destroy() {
                tracing::warn!("create failed and its cgroup could not be removed: {e}");
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

fn spec_cgroups_path(spec: &Spec) -> Option<PathBuf> {
    spec.linux().as_ref().and_then(|l| l.cgroups_path().clone())
}

fn manager_for(spec: &Spec, id: &str) -> Result<Box<dyn CgroupManager>> {
    Ok(cgroups::manager_for(
        spec_cgroups_path(spec).as_deref(),
        id,
    )?)
}

/// Create the container: everything up to (not including) running its
/// program. The init is a child of the caller and waits for [`start`].
pub fn create(opts: CreateOptions) -> Result<Created> {
    state::validate_id(&opts.id)?;
    let bundle = std::fs::canonicalize(&opts.bundle)
        .map_err(|e| Error::io(format!("bundle {}", opts.bundle.display()), e))?;
    let spec = bundle::load_config(&bundle)?;
    let rootfs = bundle::rootfs_path(&spec, &bundle)?;
    let process = spec.process().clone().expect("checked by load_config");
    let linux = spec.linux().clone().expect("checked by load_config");
    let terminal = process.terminal().unwrap_or(false);
    check_console(terminal, &opts.console)?;

    // Everything that can be checked without creating anything.
    let ns = NamespacePlan::from_spec(
        linux.namespaces().as_deref().unwrap_or(&[]),
        linux.uid_mappings().as_deref().unwrap_or(&[]),
        linux.gid_mappings().as_deref().unwrap_or(&[]),
    )?;
    let own = sysctl::OwnNamespaces {
        net: ns.has(oci_spec::runtime::LinuxNamespaceType::Network),
        ipc: ns.has(oci_spec::runtime::LinuxNamespaceType::Ipc),
        uts: ns.has(oci_spec::runtime::LinuxNamespaceType::Uts),
    };
    if (spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        || spec.domainname().as_deref().is_some_and(|h| !h.is_empty()))
        && !own.uts
    {
        return Err(Error::InvalidConfig {
            file: bundle.join("config.json"),
            message: "hostname/domainname need a UTS namespace: add {\"type\": \"uts\"} to linux.namespaces".into(),
        });
    }
    let sysctls = sysctl::validate(&linux.sysctl().clone().unwrap_or_default(), own)?;
    let time_offsets = match linux.time_offsets() {
        Some(offsets) if !offsets.is_empty() => {
            if !ns.unshare_later.contains(namespaces::CLONE_NEWTIME) {
                return Err(Error::InvalidConfig {
                    file: bundle.join("config.json"),
                    message: "linux.timeOffsets need a new time namespace".into(),
                });
            }
            Some(namespaces::time_offsets_text(offsets)?)
        }
        _ => None,
    };
    let mut settings = ProcessSettings::from_spec(
        &process,
        process
            .capabilities()
            .as_ref()
            .map(CapabilitySets::from_spec),
        linux.seccomp().as_ref().map(seccomp::compile).transpose()?,
    )?;
    let all_devices = devices::all_devices(linux.devices().as_deref().unwrap_or(&[]))?;
    let mounts = spec.mounts().clone().unwrap_or_default();
    let plan = RootfsPlan {
        rootfs: rootfs.clone(),
        bundle: bundle.clone(),
        setup_dev: devices::needs_dev_setup(&mounts),
        mounts,
        propagation: linux.rootfs_propagation().clone(),
        devices: all_devices.clone(),
        masked_paths: linux.masked_paths().clone().unwrap_or_default(),
        readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
        sysctl: sysctls,
        user_ns: ns.new_user || ns.has(oci_spec::runtime::LinuxNamespaceType::User),
        cgroup_ns: ns.has(oci_spec::runtime::LinuxNamespaceType::Cgroup),
        net_ns: own.net,
        host_cgroups: None,
    };

    // From here on, everything made is undone if a later step fails.
    let dir = StateDir::create(&opts.root, &opts.id)?;
    let cgroup = manager_for(&spec, &opts.id)?;
    let mut rollback = Rollback {
        dir: Some(dir),
        cgroup: None,
        pid: None,
    };
    cgroup.create()?;
    rollback.cgroup = Some(cgroup.as_ref());
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(devices::cgroup_rules(
        resources.devices().as_deref().unwrap_or(&[]),
        &all_devices,
    )));
    cgroup.apply_resources(&resources)?;

    let dir_path = rollback.dir.as_ref().expect("present").path.clone();
    let fifo = make_exec_fifo(&dir_path.join(state::EXEC_FIFO), &linux)?;
    let host_proc = open_path(Path::new("/proc"))?;
    let (console_for_child, console_for_us) = console_sockets(&opts.console)?;
    let (parent_channel, child_channel) = channel::channel()?;

    let mut hook_state = ContainerState {
        oci_version: state::OCI_VERSION.into(),
        id: opts.id.clone(),
        status: Status::Creating,
        pid: 0,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: chrono::Utc::now(),
        owner: String::new(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        init_start_time: 0,
    };
    // Outside user namespaces the init moves itself into the v1 hierarchies
    // (no RCU grace period to wait for; cgroups::self_join).
    let in_user_ns = ns.new_user || ns.has(oci_spec::runtime::LinuxNamespaceType::User);
    settings.cgroup_self_join = self_join_files(cgroup.as_ref(), in_user_ns)?;
    settings.stdio = opts.stdio.into_fds();
    settings.console_socket = console_for_child;
    settings.preserve_fds = opts.preserve_fds;
    let config = init::InitConfig {
        process: settings,
        plan,
        joins: if ns.join_before_clone {
            Vec::new()
        } else {
            take_joins(&ns)?
        },
        new_user_ns: ns.new_user,
        unshare_later: ns.unshare_later,
        time_offsets,
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
        personality: linux.personality().as_ref().map(|p| p.domain()),
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        no_pivot: opts.no_pivot,
        fifo,
        host_proc,
        create_container_hooks: HookKind::CreateContainer.of(spec.hooks().as_ref()),
        start_container_hooks: HookKind::StartContainer.of(spec.hooks().as_ref()),
        hook_state: hook_state.clone(),
    };

    let cgroup_fd = cgroup.clone_into_fd();
    let request = spawn::SpawnRequest {
        flags: ns.clone_flags,
        join_first: if ns.join_before_clone { &ns.joins } else { &[] },
        join_pidfd: None,
        cgroup: cgroup_fd.as_ref().map(|fd| fd.as_fd()),
        detach: false,
    };
    // The init is a copy of this process: it must not keep the state
    // directory's lock (flock belongs to the open file, which a clone
    // shares). An init whose creator was killed before `start` would hold it
    // forever, and `state`, `delete` and `kill` would wait for it forever.
    let state_lock = rollback.dir.as_ref().expect("present").lock_fd();
    let pid = spawn::spawn(request, &parent_channel, &child_channel, || {
        // SAFETY: closes the child's copy of the lock fd; nothing in the
        // child uses it (the parent's StateDir keeps its own copy open).
        unsafe { libc::close(state_lock) };
        init::main(config, &child_channel)
    })?;
    rollback.pid = Some(pid);
    drop(child_channel);
    tracing::debug!(%pid, "init cloned");

    if ns.new_user {
        namespaces::write_id_maps(
            pid.as_raw(),
            linux.uid_mappings().as_deref().unwrap_or(&[]),
            linux.gid_mappings().as_deref().unwrap_or(&[]),
        )?;
    }
    parent_channel.send_go(pid.as_raw())?;
    // The init builds its mounts meanwhile and waits for `Joined` only
    // before its cgroup namespace.
    finish_cgroup_join(cgroup.as_ref(), pid, in_user_ns)?;
    parent_channel.send_joined()?;

    hook_state.pid = pid.as_raw();
    // The init asks for the runtime-side hooks once, then reports Created.
    while let InitEvent::RunHooks = parent_channel.wait_for_init()? {
        let json = hook_state.hook_json();
        hooks::run_all(
            HookKind::Prestart,
            &HookKind::Prestart.of(spec.hooks().as_ref()),
            &json,
        )?;
        hooks::run_all(
            HookKind::CreateRuntime,
            &HookKind::CreateRuntime.of(spec.hooks().as_ref()),
            &json,
        )?;
        parent_channel.send_hooks_done()?;
    }
    let console = match console_for_us {
        Some(sock) => Some(crate::terminal::recv_fd(sock.as_fd())?),
        None => None,
    };
    let start_time = state::proc_stat(pid.as_raw())
        .map(|s| s.start_time)
        .ok_or_else(|| Error::ProcessDied("the init exited right after create".into()))?;
    let record = Record {
        id: opts.id.clone(),
        pid: pid.as_raw(),
        init_start_time: start_time,
        bundle,
        rootfs,
        created: hook_state.created,
        paused: false,
        config: spec,
    };
    rollback.dir.as_ref().expect("present").write(&record)?;
    if let Some(pid_file) = &opts.pid_file {
        state::write_atomically(pid_file, pid.as_raw().to_string().as_bytes())?;
    }
    rollback.commit();
    tracing::debug!(id = %opts.id, %pid, "created");
    Ok(Created { pid, console })
}

fn take_joins(ns: &NamespacePlan) -> Result<Vec<namespaces::Join>> {
    ns.joins
        .iter()
        .map(|j| {
            Ok(namespaces::Join {
                kind: j.kind,
                path: j.path.clone(),
                fd: j
                    .fd
                    .try_clone()
                    .map_err(|e| Error::io("dup a namespace fd", e))?,
            })
        })
        .collect()
}

fn check_console(terminal: bool, console: &Console) -> Result<()> {
    match (terminal, console) {
        (true, Console::None) => Err(Error::Unsupported(
            "process.terminal is true: give a console socket (--console-socket) to receive the pty, or set terminal to false".into(),
        )),
        (false, Console::Socket(_)) | (false, Console::Return) => Err(Error::Unsupported(
            "a console socket was given but process.terminal is false: set terminal to true, or drop --console-socket".into(),
        )),
        _ => Ok(()),
    }
}

/// (the end the child sends on, the end the caller receives on).
fn console_sockets(console: &Console) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    match console {
        Console::None => Ok((None, None)),
        Console::Socket(path) => {
            let stream = UnixStream::connect(path).map_err(|e| {
                Error::io(format!("connect to console socket {}", path.display()), e)
            })?;
            Ok((Some(stream.into()), None))
        }
        Console::Return => {
            let (a, b) =
                UnixStream::pair().map_err(|e| Error::io("socketpair for the terminal", e))?;
            Ok((Some(a.into()), Some(b.into())))
        }
    }
}

fn open_path(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        Error::sys(
            format!("open {}", path.display()),
            nix::errno::Errno::from_raw(e.raw_os_error()),
        )
    })
}

/// The fifo the init blocks on until `start`: writable by anyone (the init
/// may run as any user by then), in a directory only root can list.
fn make_exec_fifo(path: &Path, linux: &oci_spec::runtime::Linux) -> Result<OwnedFd> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::sys(format!("mkfifo {}", path.display()), e))?;
    // mkfifo's mode is filtered by the umask: set it exactly.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    // In a user namespace the init is "root" only inside: give it the fifo.
    let host_root = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .find(|m| m.container_id() == 0)
            .map(|m| m.host_id())
    };
    if let (Some(uid), Some(gid)) = (
        host_root(linux.uid_mappings()),
        host_root(linux.gid_mappings()),
    ) {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| Error::sys(format!("chown {}", path.display()), e))?;
    }
    open_path(path)
}

/// Open a pidfd for the recorded init, checking it is still that process.
fn open_init(record: &Record) -> Result<OwnedFd> {
    // SAFETY: pidfd_open with a pid and no flags; returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, record.pid, 0) };
    if fd < 0 {
        return Err(Error::sys(
            format!("pidfd_open {}", record.pid),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: a fresh fd from the kernel, owned by no one else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd pins the process; if it is still the one we recorded now,
    // every signal through the pidfd reaches it and no other.
    if !record.init_alive() {
        return Err(Error::ProcessDied(format!(
            "the init of container \"{}\" (pid {}) has exited",
            record.id, record.pid
        )));
    }
    Ok(pidfd)
}

fn pidfd_send_signal(pidfd: &OwnedFd, signal: Signal) -> Result<()> {
    // SAFETY: pidfd_send_signal on a valid pidfd with a null siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(Error::sys(
            format!("send {signal}"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Wait until the pidfd's process exits, at most `timeout`; true if it did.
fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), 1, left.as_millis() as i32) };
        if n > 0 {
            return true;
        }
        if n == 0 || left.is_zero() {
            return false;
        }
    }
}

/// Run the container's program: unblock the init waiting on exec.fifo, and
/// return once its execve succeeded (or with the reason it failed).
pub fn start(root: &Path, id: &str) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let record = dir.read()?;
    let status = record.status(&dir.path);
    if status != Status::Created {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            action: "start",
            hint: " (only a created container can be started)",
        });
    }
    let pidfd = open_init(&record)?;
    let fifo_path = dir.fifo_path();
    let fifo = rustix::fs::open(
        &fifo_path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        Error::sys(
            format!("open {}", fifo_path.display()),
            nix::errno::Errno::from_raw(e.raw_os_error()),
        )
    })?;
    tracing::debug!(step = "start", fifo = %fifo_path.display(),
        "start: open {} for reading, which unblocks the init waiting to open it for writing", fifo_path.display());
    let report = read_fifo_until_exec(&fifo, &pidfd)?;
    let _ = std::fs::remove_file(&fifo_path);
    if !report.is_empty() {
        let wire: WireError = serde_json::from_slice(&report)
            .map_err(|e| Error::step("start", format!("unreadable report from the init: {e}")))?;
        return Err(wire.into());
    }
    let mut state = record.state(&dir.path);
    state.status = Status::Running;
    drop(dir);
    hooks::run_all_warn(
        HookKind::Poststart,
        &HookKind::Poststart.of(record.config.hooks().as_ref()),
        &state.hook_json(),
    );
    Ok(())
}

/// Read what the init writes into the fifo until it closes (execve or exit).
fn read_fifo_until_exec(fifo: &OwnedFd, pidfd: &OwnedFd) -> Result<Vec<u8>> {
    let mut report = Vec::new();
    let mut writer_seen = false;
    loop {
        let mut pfds = [
            libc::pollfd {
                fd: fifo.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds for the duration of the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let errno = nix::errno::Errno::last();
            if errno == nix::errno::Errno::EINTR {
                continue;
            }
            return Err(Error::sys("poll exec.fifo", errno));
        }
        if pfds[0].revents != 0 {
            writer_seen = true;
            let mut buf = [0u8; 4096];
            match rustix::io::read(fifo, &mut buf) {
                Ok(0) => return Ok(report),
                Ok(k) => report.extend_from_slice(&buf[..k]),
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(Error::sys(
                        "read exec.fifo",
                        nix::errno::Errno::from_raw(e.raw_os_error()),
                    ))
                }
            }
            continue;
        }
        if pfds[1].revents != 0 && !writer_seen {
            return Err(Error::ProcessDied(
                "the container's init exited before it could be started".into(),
            ));
        }
    }
}

/// The container's state (the OCI state JSON plus runc's extras).
pub fn state(root: &Path, id: &str) -> Result<ContainerState> {
    let dir = StateDir::open(root, id)?;
    Ok(dir.read()?.state(&dir.path))
}

/// Every container under `root`.
pub fn list(root: &Path) -> Result<Vec<ContainerState>> {
    let mut out = Vec::new();
    for id in state::list_ids(root)? {
        match state(root, &id) {
            Ok(s) => out.push(s),
            Err(Error::NotFound(_)) => {} // deleted meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Send `signal` to the init, or with `all` to every process of the container.
pub fn kill(root: &Path, id: &str, signal: Signal, all: bool) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let record = dir.read()?;
    let status = record.status(&dir.path);
    if status == Status::Stopped {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            action: "kill",
            hint: " (its processes have exited)",
        });
    }
    if all {
        let cgroup = manager_for(&record.config, id)?;
        cgroup.kill_all(signal)?;
        return Ok(());
    }
    let pidfd = open_init(&record)?;
    pidfd_send_signal(&pidfd, signal)
}

/// Remove a container: its processes (with `force`, or when only created),
/// its cgroup and its state; then run the poststop hooks.
///
/// A caller whose child the init is (the monitor) should reap it first:
/// cgroup v1 keeps an unreaped zombie in its cgroup, which cannot be removed
/// until then (`delete` waits up to the driver's timeout, then fails with
/// [`crate::cgroups::CgroupError::Busy`]).
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = match StateDir::open(root, id) {
        Ok(dir) => dir,
        Err(Error::NotFound(_)) if force && root.join(id).is_dir() => {
            // A create that died before writing its state: only the directory is left.
            state::validate_id(id)?;
            let _ = std::fs::remove_dir_all(root.join(id));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let record = dir.read()?;
    let status = record.status(&dir.path);
    let cgroup = manager_for(&record.config, id)?;
    match status {
        Status::Stopped => {}
        Status::Created => stop_init(&record, cgroup.as_ref())?,
        Status::Running | Status::Paused | Status::Creating if force => {
            stop_init(&record, cgroup.as_ref())?
        }
        _ => {
            return Err(Error::WrongState {
                id: id.to_string(),
                status: status.to_string(),
                action: "delete",
                hint: " (stop it first, or use --force)",
            })
        }
    }
    // Processes that outlived a non-pid-namespaced init.
    let _ = cgroup.kill_all(Signal::SIGKILL);
    cgroup.destroy()?;
    let mut final_state = record.state(&dir.path);
    final_state.status = Status::Stopped;
    final_state.pid = record.pid;
    dir.remove()?;
    hooks::run_all_warn(
        HookKind::Poststop,
        &HookKind::Poststop.of(record.config.hooks().as_ref()),
        &final_state.hook_json(),
    );
    Ok(())
}

/// SIGKILL every process (cgroup kill) and the init, and wait for the init.
fn stop_init(record: &Record, cgroup: &dyn CgroupManager) -> Result<()> {
    let pidfd = open_init(record).ok();
    if let Err(e) = cgroup.kill_all(Signal::SIGKILL) {
        tracing::debug!("cgroup kill failed ({e}); signalling the init directly");
    }
    if let Some(pidfd) = &pidfd {
        let _ = pidfd_send_signal(pidfd, Signal::SIGKILL);
    }
    // A frozen cgroup delivers SIGKILL only once thawed.
    let _ = cgroup.thaw();
    if let Some(pidfd) = pidfd {
        if !wait_exit(&pidfd, Duration::from_secs(10)) {
            return Err(Error::step(
                "delete",
                format!(
                    "the init (pid {}) did not exit within 10 s of SIGKILL",
                    record.pid
                ),
            ));
        }
    }
    Ok(())
}

/// The files through which a new process moves itself into the v1
/// hierarchies (cgroups::self_join): none in a user namespace, where it
/// cannot, and the parent moves it instead ([`finish_cgroup_join`]).
fn self_join_files(
    cgroup: &dyn CgroupManager,
    in_user_ns: bool,
) -> std::result::Result<Vec<SelfJoinFile>, CgroupError> {
    if in_user_ns {
        Ok(Vec::new())
    } else {
        cgroup.self_join_files()
    }
}

/// The parent's half of a new process's cgroup join.
fn finish_cgroup_join(
    cgroup: &dyn CgroupManager,
    pid: Pid,
    in_user_ns: bool,
) -> std::result::Result<(), CgroupError> {
    if in_user_ns {
        // Slow on cgroup v1: the first write waits for an RCU grace period.
        cgroup.add_process(pid)
    } else {
        cgroup.join_remaining(pid)
    }
}

/// Freeze every process of the container.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    set_frozen(root, id, true)
}

/// Thaw a paused container.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    set_frozen(root, id, false)
}

/// `pause` (freeze the cgroup) or `resume` (thaw it), and record it.
fn set_frozen(root: &Path, id: &str, frozen: bool) -> Result<()> {
    let (required, action, hint) = if frozen {
        (
            Status::Running,
            "pause",
            " (only a running container can be paused)",
        )
    } else {
        (
            Status::Paused,
            "resume",
            " (only a paused container can be resumed)",
        )
    };
    let dir = StateDir::open(root, id)?;
    let mut record = dir.read()?;
    let status = record.status(&dir.path);
    if status != required {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            action,
            hint,
        });
    }
    let cgroup = manager_for(&record.config, id)?;
    if frozen {
        cgroup.freeze()?;
    } else {
        cgroup.thaw()?;
    }
    record.paused = frozen;
    dir.write(&record)
}

/// Host pids of every process in the container's cgroup.
pub fn ps(root: &Path, id: &str) -> Result<Vec<Pid>> {
    let dir = StateDir::open(root, id)?;
    let record = dir.read()?;
    let mut pids = manager_for(&record.config, id)?.pids()?;
    pids.sort();
    Ok(pids)
}

/// Change the cgroup limits of a container (`update --resources`).
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let record = dir.read()?;
    let status = record.status(&dir.path);
    if status == Status::Stopped {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            action: "update",
            hint: "",
        });
    }
    manager_for(&record.config, id)?.apply_resources(resources)?;
    Ok(())
}

/// Run `process` inside the container `id`: in its namespaces and cgroup,
/// with the process's own user, capabilities, env, cwd and rlimits and the
/// container's seccomp profile. Returns once the program's execve succeeded.
/// Unless `detach`, the process is a child of the caller, who waits for it.
pub fn exec(root: &Path, id: &str, process: Process, opts: ExecOptions) -> Result<Executed> {
    let dir = StateDir::open(root, id)?;
    let record = dir.read()?;
    let status = record.status(&dir.path);
    if !matches!(status, Status::Running | Status::Created) {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            action: "exec in",
            hint: " (it must be running)",
        });
    }
    let terminal = process.terminal().unwrap_or(false);
    check_console(terminal, &opts.console)?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidConfig {
            file: "process".into(),
            message: "args is empty: nothing to run".into(),
        });
    }
    let linux = record.config.linux().clone().unwrap_or_default();
    let join: CloneFlags = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|n| namespaces::flag_of(n.typ()))
        .fold(CloneFlags::empty(), |acc, f| acc | f);
    // No capabilities in the exec'd process: the container's own (as runc),
    // never the runtime's full set.
    let capabilities = process.capabilities().as_ref().or_else(|| {
        record
            .config
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
    });
    let mut config: tenant::TenantConfig = ProcessSettings::from_spec(
        &process,
        capabilities.map(CapabilitySets::from_spec),
        linux.seccomp().as_ref().map(seccomp::compile).transpose()?,
    )?;
    let cgroup = manager_for(&record.config, id)?;
    let in_user_ns = join.contains(CloneFlags::CLONE_NEWUSER);
    let pidfd = open_init(&record)?;
    let (console_for_child, console_for_us) = console_sockets(&opts.console)?;
    let (parent_channel, child_channel) = channel::channel()?;
    config.cgroup_self_join = self_join_files(cgroup.as_ref(), in_user_ns)?;
    config.stdio = opts.stdio.into_fds();
    config.console_socket = console_for_child;
    config.preserve_fds = opts.preserve_fds;
    let cgroup_fd = cgroup.clone_into_fd();
    let request = spawn::SpawnRequest {
        flags: CloneFlags::empty(),
        join_first: &[],
        join_pidfd: Some((pidfd.as_fd(), join)),
        cgroup: cgroup_fd.as_ref().map(|fd| fd.as_fd()),
        detach: opts.detach,
    };
    drop(dir); // other commands need not wait for this exec
               // If the container's PID 1 exits while we enter, the kernel answers with
               // whatever the half-torn-down namespaces give (setns: ESRCH, clone3 into
               // a dying pid namespace: ENOMEM): say what really happened.
    let because_init_exited = |err: Error| {
        if record.init_alive() {
            err
        } else {
            Error::ProcessDied(format!(
                "container \"{}\" stopped while the process was entering it: its init (pid {}) exited",
                record.id, record.pid
            ))
        }
    };
    let pid = spawn::spawn(request, &parent_channel, &child_channel, || {
        tenant::main(config, &child_channel)
    })
    .map_err(because_init_exited)?;
    drop(child_channel);
    let kill_on_error = |err: Error| {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        if !opts.detach {
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        because_init_exited(err)
    };
    finish_cgroup_join(cgroup.as_ref(), pid, in_user_ns).map_err(|e| kill_on_error(e.into()))?;
    parent_channel
        .send_go(pid.as_raw())
        .map_err(kill_on_error)?;
    let console = match console_for_us {
        Some(sock) => match crate::terminal::recv_fd(sock.as_fd()) {
            Ok(fd) => Some(fd),
            // The process failed before sending its pty: the channel says why.
            Err(err) => {
                let reason = parent_channel.wait_for_exec().err().unwrap_or(err);
                return Err(kill_on_error(reason));
            }
        },
        None => None,
    };
    if let Err(err) = parent_channel.wait_for_exec() {
        if !opts.detach {
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        return Err(because_init_exited(err));
    }
    if let Some(pid_file) = &opts.pid_file {
        state::write_atomically(pid_file, pid.as_raw().to_string().as_bytes())?;
    }
    Ok(Executed { pid, console })
}

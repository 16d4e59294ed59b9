//! The monitor: one small process per running container, like conmon or a
//! containerd shim.
//!
//! Mechanism: `fork(2)` twice with `setsid(2)` in between, so the monitor is
//! nobody's child but init's and survives the `berth` command that started it
//! (even a SIGKILLed one). It then
//! 1. takes `flock(2)` on `<state>/containers/<id>/monitor.lock` for its whole
//!    life: anyone can tell a live monitor from a dead one (or from a reused
//!    pid) by trying that lock;
//! 2. becomes a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`);
//! 3. enters a private mount namespace (`unshare(CLONE_NEWNS)`, propagation
//!    `MS_SLAVE`) and mounts the container's overlay rootfs there, so the mount
//!    vanishes with the monitor and the container, never leaking onto the host;
//! 4. prepares the container's mounts (volumes, binds, tmpfs) and network
//!    (namespace, veth, address, published ports, /etc files) once for its
//!    life, then creates and starts the container with berth-runtime, as the
//!    container's parent, and tells the `berth` command (through a pipe) that
//!    it started;
//! 5. serves: reads the container's stdout/stderr (pipes or a pty master) into
//!    the json-file log and to attached clients, writes their input to the
//!    container's stdin, forwards resizes and signals;
//! 6. reaps the container (`SIGCHLD` through a `signalfd(2)`, `waitpid(2)`),
//!    records the exit atomically, tells every client, and applies the
//!    restart policy or, with `--rm`, removes the container;
//! 7. disconnects the network: ports and address at once, the veth pair
//!    after telling the clients (deleting it waits for the kernel's RCU
//!    grace periods, tens of milliseconds nobody should wait for).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, setsid, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::attach::{Frame, Hello};
use super::bundle::Prepared;
use super::logs::{LineSplitter, LogWriter, Stream};
use super::overlay::{self, OverlayDirs};
use super::record::Status;
use super::runtime_bridge::{self, ContainerStdio, LaunchError};
use super::{procinfo, ContainerStore};
use crate::fsutil::FileLock;
use crate::network::container::ContainerNetwork;
use crate::paths::Roots;
use crate::volume::VolumeStore;

/// What the monitor tells the `berth` command that spawned it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Ready {
    /// The container's process runs with this host pid.
    Started { pid: i32 },
    /// It could not be started; `exit_code` is docker's (125, 126, 127).
    Failed { exit_code: i32, error: String },
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("starting the monitor: {step}: {source}")]
    Spawn {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "the monitor of container {0} exited before reporting; see its log in the state directory"
    )]
    Vanished(String),
}

fn spawn_err(step: &'static str) -> impl FnOnce(io::Error) -> MonitorError {
    move |source| MonitorError::Spawn { step, source }
}

/// The per-boot directory of container `id`: lock, socket, monitor log.
pub fn state_dir(roots: &Roots, id: &str) -> PathBuf {
    roots.run_containers().join(id)
}

/// Whether a monitor holds container `id`'s lock right now.
pub fn is_alive(roots: &Roots, id: &str) -> bool {
    let path = state_dir(roots, id).join("monitor.lock");
    let Ok(file) = File::open(&path) else {
        return false;
    };
    matches!(
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared),
        Err(rustix::io::Errno::WOULDBLOCK)
    )
}

/// Block until no monitor holds container `id`'s lock, and keep holding it so
/// that none can start (used by `rm` before it deletes the container).
pub fn wait_gone_and_hold(roots: &Roots, id: &str) -> io::Result<FileLock> {
    FileLock::exclusive(&state_dir(roots, id).join("monitor.lock"))
}

/// Connect to container `id`'s monitor and send `hello`. Unix socket paths
/// are limited to 108 bytes, so the connection goes through
/// `/proc/self/fd/<dirfd>/attach.sock`, which is short whatever the state dir.
pub fn connect(roots: &Roots, id: &str, hello: Hello) -> io::Result<UnixStream> {
    let dir = File::open(state_dir(roots, id))?;
    let mut stream = UnixStream::connect(short_path(&dir, "attach.sock"))?;
    Frame::Hello(hello).write_to(&mut stream)?;
    Ok(stream)
}

fn short_path(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Spawn the monitor of container `id` and wait until it reports. With
/// `attach`, the returned stream is already attached (no output is missed).
pub fn spawn(
    roots: &Roots,
    id: &str,
    attach: Option<Hello>,
) -> Result<(Ready, Option<UnixStream>), MonitorError> {
    let dir = state_dir(roots, id);
    fs::create_dir_all(&dir).map_err(spawn_err("create state directory"))?;
    let (client, monitor_end) = match attach {
        Some(_) => {
            let (a, b) = UnixStream::pair().map_err(spawn_err("socketpair"))?;
            (Some(a), Some(b))
        }
        None => (None, None),
    };
    let (ready_read, ready_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| spawn_err("pipe")(e.into()))?;

    // SAFETY: the berth CLI is single-threaded when it starts a monitor, so
    // the child may run arbitrary code after fork.
    match unsafe { fork() }.map_err(|e| spawn_err("fork")(e.into()))? {
        ForkResult::Child => {
            drop(ready_read);
            drop(client);
            let _ = setsid();
            // SAFETY: still single-threaded (we are the only thread of the child).
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    // Keep nothing of the caller's but what we were handed.
                    let mut keep = vec![ready_write.as_raw_fd()];
                    keep.extend(monitor_end.as_ref().map(|s| s.as_raw_fd()));
                    crate::security::inheritance::drop_inherited(&keep);
                    let code = Monitor::run(
                        roots.clone(),
                        id.to_string(),
                        ready_write,
                        monitor_end,
                        attach,
                    );
                    std::process::exit(code)
                }
                _ => {
                    // SAFETY: _exit skips atexit handlers and destructors that
                    // belong to the parent's copy of the process state.
                    unsafe { libc::_exit(0) }
                }
            }
        }
        ForkResult::Parent { child } => {
            drop(ready_write);
            drop(monitor_end);
            let _ = waitpid(child, None);
            let mut text = String::new();
            File::from(ready_read)
                .read_to_string(&mut text)
                .map_err(spawn_err("read the monitor's report"))?;
            let ready: Ready = serde_json::from_str(text.trim())
                .map_err(|_| MonitorError::Vanished(id.to_string()))?;
            Ok((ready, client))
        }
    }
}

/// One attached client.
struct Client {
    stream: UnixStream,
    hello: Hello,
}

/// Where the container's output comes from.
struct Outputs {
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// Write end of the container's stdin pipe (`-i` without a terminal).
    stdin: Option<OwnedFd>,
    /// The pty master (`-t`): output and input both go through it.
    pty: Option<OwnedFd>,
    split_out: LineSplitter,
    split_err: LineSplitter,
}

struct Monitor {
    roots: Roots,
    store: ContainerStore,
    id: String,
    dirs: OverlayDirs,
    listener: UnixListener,
    signals: SignalFd,
    clients: Vec<Client>,
    log: LogWriter,
    /// Mounts and namespace, prepared by the first start and reused by restarts.
    prepared: Option<Prepared>,
    network: Option<ContainerNetwork>,
    /// Held for the monitor's whole life (see module docs).
    _lock: FileLock,
}

impl Monitor {
    /// The monitor's whole life; returns its exit status.
    fn run(
        roots: Roots,
        id: String,
        ready: OwnedFd,
        first_client: Option<UnixStream>,
        hello: Option<Hello>,
    ) -> i32 {
        let mut ready = Some(File::from(ready));
        // Every event of this process (and of the container's init, cloned
        // from it) is inside this span: `--log-level debug` and `--explain`
        // show which process did what.
        let _span = tracing::debug_span!("monitor").entered();
        tracing::debug!(step = "monitor", pid = std::process::id(),
            "the monitor, pid {}: forked twice with setsid(2) in between, so it is nobody's child and outlives this command",
            std::process::id());
        let mut monitor = match Monitor::setup(&roots, &id) {
            Ok(m) => m,
            Err(err) => {
                report(
                    &mut ready,
                    Ready::Failed {
                        exit_code: 125,
                        error: err,
                    },
                );
                return 1;
            }
        };
        if let (Some(stream), Some(hello)) = (first_client, hello) {
            monitor.clients.push(Client { stream, hello });
        }
        let code = monitor.supervise(&mut ready);
        monitor.teardown();
        code
    }

    /// Steps 1-3: lock, subreaper, signals, private mount namespace, overlay.
    fn setup(roots: &Roots, id: &str) -> Result<Monitor, String> {
        let store = ContainerStore::open(roots).map_err(|e| e.to_string())?;
        let record = store.load(id).map_err(|e| e.to_string())?;
        let dir = state_dir(roots, id);
        let lock = take_monitor_lock(&dir)?;
        let _ = fs::remove_file(dir.join("exit"));

        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        ignore_terminal_signals();
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block()
            .map_err(|e| format!("block SIGCHLD: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("signalfd: {e}"))?;

        enter_private_mount_namespace()?;
        let layers = super::image_layers(roots, &record.image_id).map_err(|e| e.to_string())?;
        let dirs = OverlayDirs::new(&store.dir(id));
        dirs.create()
            .map_err(|e| format!("create overlay directories: {e}"))?;
        overlay::mount_overlay(&layers, &dirs).map_err(|e| e.to_string())?;

        let listener = bind_attach_socket(&dir).map_err(|e| format!("attach socket: {e}"))?;
        let log = LogWriter::open(&store.dir(id).join(format!("{id}-json.log")))
            .map_err(|e| format!("open log: {e}"))?;
        tracing::debug!(id, monitor = std::process::id(), "monitor ready");
        Ok(Monitor {
            roots: roots.clone(),
            store,
            id: id.to_string(),
            dirs,
            listener,
            signals,
            clients: Vec::new(),
            log,
            prepared: None,
            network: None,
            _lock: lock,
        })
    }

    /// Steps 4-6, repeated while the restart policy says so.
    fn supervise(&mut self, ready: &mut Option<File>) -> i32 {
        let mut backoff = Duration::from_millis(100);
        loop {
            let (pid, mut outputs) = match self.launch() {
                Ok(launched) => launched,
                Err(err) => {
                    self.record_failed_start(&err);
                    report(
                        ready,
                        Ready::Failed {
                            exit_code: err.exit_code(),
                            error: err.to_string(),
                        },
                    );
                    self.notify_exit(err.exit_code());
                    return 1;
                }
            };
            report(ready, Ready::Started { pid });
            detach_stdio(&self.roots, &self.id);
            // From here on the monitor only relays and waits, for as long as
            // the container lives: give back what the setup used.
            super::memory::release_setup_memory();
            let started = Instant::now();
            let status = self.serve(pid, &mut outputs);
            let record = self.record_exit(status);
            let Some(record) = record else { return 0 };
            // record_exit decided under the record's lock (and counted the
            // restart already: asking the policy again here would see one
            // restart too many and stop `on-failure:N` one run early).
            if record.state.status != Status::Restarting {
                // The host ports must be free when `stop` returns (a `run -p`
                // of the same port may follow at once).
                self.release_network();
                if record.host.auto_remove {
                    self.remove_container();
                }
                self.notify_exit(status);
                return 0;
            }
            self.notify_exit(status);
            // docker's back-off: double the delay after each quick failure,
            // reset it when the container ran for at least 10 seconds.
            backoff = if started.elapsed() >= Duration::from_secs(10) {
                Duration::from_millis(100)
            } else {
                (backoff * 2).min(Duration::from_secs(60))
            };
            if !self.wait_before_restart(backoff) {
                return 0;
            }
        }
    }

    /// Make the bundle (config.json) and start the container's process.
    fn launch(&mut self) -> Result<(i32, Outputs), LaunchError> {
        let record = self
            .store
            .load(&self.id)
            .map_err(|e| LaunchError::Other(e.to_string()))?;
        let bundle = self.store.dir(&self.id);
        let prepared = self.prepare_start(&record)?;
        super::bundle::write_bundle(&self.roots, &record, &self.dirs, &bundle, &prepared)
            .map_err(LaunchError::Other)?;
        let (stdio, outputs) = wire_stdio(record.config.tty, record.config.open_stdin)
            .map_err(|e| LaunchError::Other(format!("container stdio: {e}")))?;
        let launched =
            runtime_bridge::create_and_start(&self.roots.runtime(), &self.id, &bundle, stdio)?;
        let mut outputs = outputs;
        outputs.pty = launched.pty_master;
        let start_time = procinfo::start_time(launched.pid);
        let monitor_pid = std::process::id() as i32;
        let network = self
            .network
            .as_ref()
            .map(|n| n.settings().clone())
            .unwrap_or_default();
        self.store
            .update(&self.id, |r| {
                r.state.network = network;
                r.state.status = Status::Running;
                r.state.pid = Some(launched.pid);
                r.state.pid_start_time = start_time;
                r.state.monitor_pid = Some(monitor_pid);
                r.state.started_at = Some(Utc::now());
                r.state.exit_code = 0;
                r.state.error.clear();
                r.state.oom_killed = false;
                r.state.health = r
                    .config
                    .healthcheck
                    .as_ref()
                    .map(|_| super::health::Health::starting());
            })
            .map_err(|e| LaunchError::Other(e.to_string()))?;
        if let (Some(check), Some(start)) = (record.config.healthcheck.clone(), start_time) {
            super::health::spawn_checker(&self.roots, &self.id, launched.pid, start, check);
        }
        tracing::debug!(step = "started", id = %self.id, pid = launched.pid,
            "the container runs: its PID 1 is pid {} on the host", launched.pid);
        Ok((launched.pid, outputs))
    }

    /// Step 4's preparation, once per monitor life (restarts reuse it): the
    /// volumes, binds and tmpfs mounts, then the network and its /etc files.
    fn prepare_start(&mut self, record: &super::ContainerRecord) -> Result<Prepared, LaunchError> {
        if let Some(prepared) = &self.prepared {
            return Ok(prepared.clone());
        }
        let mut mounts = self.prepare_mounts(record)?;
        let network = self.connect_network(record)?;
        mounts.extend(network.etc_mounts(&record.host.mounts));
        let prepared = Prepared {
            mounts,
            netns_path: Some(network.netns_path()),
        };
        self.prepared = Some(prepared.clone());
        Ok(prepared)
    }

    /// Volumes (seeded from the image on first use), binds (read-only ones
    /// made read-only recursively), tmpfs: as OCI mounts.
    fn prepare_mounts(
        &mut self,
        record: &super::ContainerRecord,
    ) -> Result<Vec<serde_json::Value>, LaunchError> {
        let volumes =
            VolumeStore::open(&self.roots).map_err(|e| LaunchError::Other(e.to_string()))?;
        crate::volume::mounts::prepare(
            &volumes,
            &record.host.mounts,
            &self.dirs.merged,
            &state_dir(&self.roots, &self.id),
        )
        .map_err(|e| LaunchError::Other(e.to_string()))
    }

    /// The container's network namespace, address, ports and /etc files.
    fn connect_network(
        &mut self,
        record: &super::ContainerRecord,
    ) -> Result<&ContainerNetwork, LaunchError> {
        let network = crate::network::container::connect(
            &self.roots,
            record,
            &state_dir(&self.roots, &self.id),
            &self.store.dir(&self.id),
        )
        .map_err(|e| LaunchError::Other(e.to_string()))?;
        Ok(self.network.insert(network))
    }

    /// Step 7, the quick half, before the clients hear of the exit: ports,
    /// DNAT elements, address, peers' hosts entries. The veth (slow to
    /// delete) follows in teardown; if the monitor died in between, the
    /// kernel would delete it with the namespace.
    fn release_network(&mut self) {
        if let Some(network) = self.network.as_mut() {
            network.release();
        }
    }

    /// Step 7: give back the address, ports, veth and namespace.
    fn disconnect_network(&mut self) {
        if let Some(network) = self.network.take() {
            network.disconnect();
        }
    }

    /// The event loop while the container runs; returns its exit status once
    /// it has exited and its output is drained.
    fn serve(&mut self, pid: i32, out: &mut Outputs) -> i32 {
        let mut exit_status: Option<i32> = None;
        loop {
            if let Some(status) = exit_status {
                if out.stdout.is_none() && out.stderr.is_none() && out.pty.is_none() {
                    return status;
                }
            }
            let mut sources: Vec<Source> = vec![Source::Signals, Source::Listener];
            let mut pollfds: Vec<PollFd> = vec![
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            ];
            for (source, fd) in [
                (Source::Stdout, &out.stdout),
                (Source::Stderr, &out.stderr),
                (Source::Pty, &out.pty),
            ] {
                if let Some(fd) = fd {
                    sources.push(source);
                    pollfds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                }
            }
            for (i, client) in self.clients.iter().enumerate() {
                sources.push(Source::Client(i));
                pollfds.push(PollFd::new(client.stream.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut pollfds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    tracing::error!(%err, "monitor poll failed");
                    return 255;
                }
            }
            let ready: Vec<Source> = sources
                .iter()
                .zip(&pollfds)
                .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(s, _)| *s)
                .collect();
            drop(pollfds);
            let mut dropped_clients = Vec::new();
            for source in ready {
                match source {
                    Source::Signals => {
                        if let Some(status) = self.reap(pid) {
                            exit_status = Some(status);
                        }
                    }
                    Source::Listener => self.accept_client(),
                    Source::Stdout => self.pump(
                        &mut out.stdout,
                        Stream::Stdout,
                        &mut out.split_out,
                        &mut dropped_clients,
                    ),
                    Source::Stderr => self.pump(
                        &mut out.stderr,
                        Stream::Stderr,
                        &mut out.split_err,
                        &mut dropped_clients,
                    ),
                    Source::Pty => self.pump(
                        &mut out.pty,
                        Stream::Stdout,
                        &mut out.split_out,
                        &mut dropped_clients,
                    ),
                    Source::Client(i) if dropped_clients.contains(&i) => {}
                    Source::Client(i) => {
                        if !self.handle_client_frame(i, pid, out) {
                            dropped_clients.push(i);
                        }
                    }
                }
            }
            dropped_clients.sort_unstable();
            dropped_clients.dedup();
            for i in dropped_clients.into_iter().rev() {
                self.clients.remove(i);
            }
        }
    }

    /// Reap every exited child; the container's status if it was among them.
    fn reap(&mut self, pid: i32) -> Option<i32> {
        while self.signals.read_signal().ok().flatten().is_some() {}
        let mut status = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => status = Some(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                    status = Some(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return status,
                Ok(_) => continue,
            }
        }
    }

    /// Read container output from `fd` into the log and to clients; closes
    /// `fd` at end of stream (EIO on a pty master means the same).
    /// Clients whose socket failed are added to `gone` (by index), not
    /// removed here: the caller removes them all at the end of the poll
    /// round, so indices of the round stay valid.
    fn pump(
        &mut self,
        fd: &mut Option<OwnedFd>,
        stream: Stream,
        splitter: &mut LineSplitter,
        gone: &mut Vec<usize>,
    ) {
        let Some(raw) = fd.as_ref() else { return };
        // 8 KiB, as conmon reads: a larger buffer on the stack would stay
        // resident in every monitor for the container's whole life.
        let mut buf = [0u8; 8 * 1024];
        match nix::unistd::read(raw, &mut buf) {
            Ok(0) | Err(Errno::EIO) => {
                if let Some(rest) = splitter.finish() {
                    let _ = self.log.write_line(stream, &rest);
                }
                *fd = None;
            }
            Ok(n) => {
                let data = &buf[..n];
                for line in splitter.push(data) {
                    if let Err(err) = self.log.write_line(stream, &line) {
                        tracing::warn!(%err, "writing the container log");
                    }
                }
                let frame = match stream {
                    Stream::Stdout => Frame::Stdout(data.to_vec()),
                    Stream::Stderr => Frame::Stderr(data.to_vec()),
                };
                let wants = |c: &Client| match stream {
                    Stream::Stdout => c.hello.stdout,
                    Stream::Stderr => c.hello.stderr,
                };
                for (i, client) in self.clients.iter_mut().enumerate() {
                    if wants(client) && frame.write_to(&mut client.stream).is_err() {
                        gone.push(i);
                    }
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(err) => {
                tracing::warn!(%err, "reading container output");
                *fd = None;
            }
        }
    }

    fn accept_client(&mut self) {
        let Ok((mut stream, _)) = self.listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        match Frame::read_from(&mut stream) {
            Ok(Some(Frame::Hello(hello))) => {
                let _ = stream.set_read_timeout(None);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                self.clients.push(Client { stream, hello });
            }
            _ => tracing::debug!("dropping an attach client that sent no hello"),
        }
    }

    /// Handle one frame from client `i`; false when the client is gone.
    fn handle_client_frame(&mut self, i: usize, pid: i32, out: &mut Outputs) -> bool {
        let frame = match Frame::read_from(&mut self.clients[i].stream) {
            Ok(Some(frame)) => frame,
            _ => return false,
        };
        match frame {
            Frame::Stdin(data) if self.clients[i].hello.stdin => {
                let target = out.pty.as_ref().or(out.stdin.as_ref());
                if let Some(fd) = target {
                    let _ = write_all_fd(fd.as_fd(), &data);
                }
            }
            Frame::CloseStdin if self.clients[i].hello.stdin => {
                if out.pty.is_some() {
                    // A terminal has no end of file of its own: send ^D.
                    if let Some(fd) = out.pty.as_ref() {
                        let _ = write_all_fd(fd.as_fd(), &[4]);
                    }
                } else {
                    out.stdin = None;
                }
            }
            Frame::Resize { rows, cols } => {
                if let Some(fd) = out.pty.as_ref() {
                    set_window_size(fd.as_fd(), rows, cols);
                }
            }
            Frame::Signal(sig) => {
                if let Ok(signal) = Signal::try_from(sig) {
                    let _ = kill(Pid::from_raw(pid), signal);
                }
            }
            _ => {}
        }
        true
    }

    /// Record the exit (status, time, OOM) and clean up the runtime's side.
    fn record_exit(&mut self, status: i32) -> Option<super::ContainerRecord> {
        let runtime_root = self.roots.runtime();
        let oom = runtime_bridge::oom_killed(&runtime_root, &self.id);
        if let Err(err) = runtime_bridge::delete(&runtime_root, &self.id) {
            tracing::warn!(id = %self.id, %err, "runtime delete");
        }
        let result = self.store.update(&self.id, |r| {
            let restart = r.host.restart_policy.should_restart(
                status,
                r.state.restart_count,
                r.state.stopped_by_user,
            );
            r.state.status = if restart {
                Status::Restarting
            } else {
                Status::Exited
            };
            r.state.exit_code = status;
            r.state.oom_killed = oom;
            r.state.pid = None;
            r.state.pid_start_time = None;
            r.state.finished_at = Some(Utc::now());
            if restart {
                r.state.restart_count += 1;
            } else {
                r.state.network = Default::default();
            }
        });
        tracing::debug!(id = %self.id, status, oom, "container exited");
        result.ok().map(|(record, ())| record)
    }

    fn record_failed_start(&mut self, err: &LaunchError) {
        let _ = runtime_bridge::delete(&self.roots.runtime(), &self.id);
        let message = err.to_string();
        let code = err.exit_code();
        let _ = self.store.update(&self.id, |r| {
            r.state.status = if r.state.started_at.is_some() {
                Status::Exited
            } else {
                Status::Created
            };
            r.state.exit_code = code;
            r.state.error = message;
            r.state.pid = None;
            r.state.pid_start_time = None;
            r.state.network = Default::default();
        });
    }

    /// Tell every client the container exited, then let them go.
    fn notify_exit(&mut self, status: i32) {
        for mut client in self.clients.drain(..) {
            let _ = Frame::Exit(status).write_to(&mut client.stream);
        }
    }

    /// Sleep out the restart back-off while still answering new clients;
    /// false when the user stopped the container meanwhile.
    fn wait_before_restart(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            let stopped = self
                .store
                .load(&self.id)
                .map(|r| r.state.stopped_by_user)
                .unwrap_or(true);
            if stopped {
                let _ = self
                    .store
                    .update(&self.id, |r| r.state.status = Status::Exited);
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                .unwrap_or(PollTimeout::MAX);
            if let Ok(n) = poll(&mut fds, timeout) {
                if n > 0 {
                    // A new client (e.g. `stop` attaching): it only wants the exit.
                    self.accept_client();
                }
            }
        }
    }

    /// `--rm`: remove everything of the container (its overlay first), and
    /// its anonymous volumes, as docker does.
    fn remove_container(&mut self) {
        overlay::unmount_overlay(&self.dirs);
        let mounts = self
            .store
            .load(&self.id)
            .map(|r| r.host.mounts)
            .unwrap_or_default();
        if let Err(err) = self.store.remove(&self.id) {
            tracing::warn!(id = %self.id, %err, "auto-remove");
        }
        if let Err(err) = VolumeStore::open(&self.roots).and_then(|v| v.remove_anonymous(&mounts)) {
            tracing::warn!(id = %self.id, %err, "auto-remove: anonymous volumes");
        }
        let _ = fs::remove_dir_all(state_dir(&self.roots, &self.id));
    }

    fn teardown(&mut self) {
        self.disconnect_network();
        overlay::unmount_overlay(&self.dirs);
        let _ = fs::remove_file(state_dir(&self.roots, &self.id).join("attach.sock"));
    }
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Signals,
    Listener,
    Stdout,
    Stderr,
    Pty,
    Client(usize),
}

/// Send the one report line to the waiting `berth` command (once).
fn report(ready: &mut Option<File>, message: Ready) {
    if let Some(mut file) = ready.take() {
        let mut line = serde_json::to_vec(&message).expect("Ready serialises");
        line.push(b'\n');
        let _ = file.write_all(&line);
    }
}

fn take_monitor_lock(dir: &Path) -> Result<FileLock, String> {
    let path = dir.join("monitor.lock");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            drop(file);
            FileLock::exclusive(&path).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(_) => Err("the container is already running (another monitor holds it)".into()),
    }
}

/// The monitor must outlive terminals and broken clients.
fn ignore_terminal_signals() {
    use nix::sys::signal::{signal, SigHandler};
    for sig in [
        Signal::SIGPIPE,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe {
            let _ = signal(sig, SigHandler::SigIgn);
        }
    }
}

/// A mount namespace of the monitor's own, receiving the host's mounts
/// (`MS_SLAVE`) but never sending its own back.
pub(crate) fn enter_private_mount_namespace() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("make / a slave mount: {e}"))?;
    tracing::debug!(step = "unshare",
        "unshare(CLONE_NEWNS), then / made MS_SLAVE|MS_REC: a mount namespace of this process's own, so what it mounts never appears on the host");
    Ok(())
}

fn bind_attach_socket(dir: &Path) -> io::Result<UnixListener> {
    let handle = File::open(dir)?;
    let path = short_path(&handle, "attach.sock");
    let _ = fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    fs::set_permissions(
        dir.join("attach.sock"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    Ok(listener)
}

/// After the start is reported, the monitor must not write to the terminal of
/// the command that started it: stdio goes to /dev/null and the monitor's own
/// log file.
fn detach_stdio(roots: &Roots, id: &str) {
    let log = state_dir(roots, id).join("monitor.log");
    let Ok(null) = File::open("/dev/null") else {
        return;
    };
    let log = fs::OpenOptions::new().create(true).append(true).open(log);
    let _ = nix::unistd::dup2_stdin(&null);
    let _ = nix::unistd::dup2_stdout(&null);
    if let Ok(log) = log {
        let _ = nix::unistd::dup2_stderr(&log);
    }
}

/// Pipes (or a terminal) for the container's stdio: the container's ends go
/// to the runtime, the monitor keeps the others.
fn wire_stdio(tty: bool, open_stdin: bool) -> io::Result<(ContainerStdio, Outputs)> {
    let mut outputs = Outputs {
        stdout: None,
        stderr: None,
        stdin: None,
        pty: None,
        split_out: LineSplitter::default(),
        split_err: LineSplitter::default(),
    };
    if tty {
        return Ok((ContainerStdio::Terminal, outputs));
    }
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (out_r, out_w) = nix::unistd::pipe2(cloexec)?;
    let (err_r, err_w) = nix::unistd::pipe2(cloexec)?;
    let stdin = if open_stdin {
        let (in_r, in_w) = nix::unistd::pipe2(cloexec)?;
        outputs.stdin = Some(in_w);
        in_r
    } else {
        OwnedFd::from(File::open("/dev/null")?)
    };
    outputs.stdout = Some(out_r);
    outputs.stderr = Some(err_r);
    Ok((
        ContainerStdio::Pipes {
            stdin,
            stdout: out_w,
            stderr: err_w,
        },
        outputs,
    ))
}

fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// `ioctl(TIOCSWINSZ)`: the pty's size, which the kernel reports to the
/// container's processes with SIGWINCH.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct from a valid pointer.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

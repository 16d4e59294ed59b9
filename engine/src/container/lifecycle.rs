//! The container lifecycle as the `berth` commands drive it: create, start,
//! stop, kill, rm, wait, and the reconciliation of records whose monitor died.
//!
//! Graceful stop, in numbered phases (as moby's daemon/stop.go reads):
//! 1. mark the container stopped by the user, so no restart policy revives it;
//! 2. attach to its monitor, to hear when the exit is on record;
//! 3. send the stop signal to PID 1 through a pidfd (no pid-reuse race);
//! 4. wait for PID 1 to exit (`poll` on the pidfd) up to the timeout;
//! 5. if it is still there, SIGKILL every process of its cgroup (daemonized
//!    descendants too) and wait again;
//! 6. wait for the monitor's exit frame: the record now says `Exited`.
//!
//! Every wait is on a kernel event (pidfd, socket, flock), never a sleep loop.

use std::io;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use chrono::Utc;

use super::attach::{Frame, Hello};
use super::monitor::{self, Ready};
use super::record::{ContainerRecord, HostConfig, State, Status};
use super::spec::{merge_run_config, ImageDefaults, RunRequest, SpecError};
use super::{names, procinfo, runtime_bridge, ContainerError, ContainerStore};
use crate::paths::Roots;
use crate::volume::VolumeStore;

/// Seconds `stop` waits for the stop signal to work when nothing says otherwise.
pub const DEFAULT_STOP_TIMEOUT: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] ContainerError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Monitor(#[from] monitor::MonitorError),
    #[error("You cannot remove a running container {0}. Stop the container before attempting removal or force remove")]
    RemoveRunning(String),
    #[error("Container {0} is not running")]
    NotRunning(String),
    #[error("Container {0} is paused, unpause the container before exec")]
    PausedExec(String),
    #[error("Container {0} is not paused")]
    NotPaused(String),
    #[error("Container {0} is already paused")]
    AlreadyPaused(String),
    #[error("cannot start a paused container, try unpause instead")]
    StartPaused,
    #[error("invalid signal {0:?}: use a name like SIGTERM or TERM, or a number")]
    BadSignal(String),
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("{0}")]
    Invalid(String),
    #[error("container {id}: {what}: {source}")]
    Io {
        id: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Everything `create` needs, resolved by the caller (the image already found).
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The image as the user named it.
    pub image: String,
    pub image_id: String,
    pub image_defaults: ImageDefaults,
    pub run: RunRequest,
    pub host: HostConfig,
    /// `--name`; None generates one.
    pub name: Option<String>,
    /// `--volumes-from CONTAINER[:ro|:rw]`, as given.
    pub volumes_from: Vec<String>,
}

/// Make a container record (status Created); nothing runs yet.
pub fn create(roots: &Roots, request: CreateRequest) -> Result<ContainerRecord, LifecycleError> {
    let store = ContainerStore::open(roots)?;
    let id = names::new_id();
    let config = merge_run_config(&request.image_defaults, &request.run, &id)?;
    let host = host_with_mounts_and_ports(roots, &store, &request, &config)?;
    let mut record = ContainerRecord {
        id,
        name: request.name.unwrap_or_default(),
        created: Utc::now(),
        image: request.image,
        image_id: request.image_id,
        config,
        host,
        state: State::default(),
    };
    // Volumes are made under the volume store's lock, held until the record
    // that names them exists, so `volume rm`/`prune` cannot remove them in between.
    let volumes = VolumeStore::open(roots)?;
    let _volumes_lock = volumes.lock()?;
    let made = volumes.provide(&mut record.host.mounts)?;
    if let Err(err) = store.create(&mut record) {
        volumes.discard_locked(&made);
        return Err(err.into());
    }
    tracing::debug!(id = %record.id, name = %record.name, "container created");
    let c = &record.config;
    tracing::debug!(step = "create", id = %record.id, name = %record.name,
        "recorded container {} ({}) in {}: command {:?} {:?}, user {:?}, working dir {:?}, {} environment variables (image config merged with the flags; nothing runs yet)",
        record.id, record.name, store.dir(&record.id).join("container.json").display(),
        c.path, c.args, if c.user.is_empty() { "root" } else { c.user.as_str() },
        if c.working_dir.is_empty() { "/" } else { c.working_dir.as_str() }, c.env.len());
    Ok(record)
}

/// The host config with every mount (`--volumes-from`, the image's VOLUMEs)
/// and published port (`-P`) spelled out, and `--network` checked.
fn host_with_mounts_and_ports(
    roots: &Roots,
    store: &ContainerStore,
    request: &CreateRequest,
    config: &super::RunConfig,
) -> Result<HostConfig, LifecycleError> {
    let mut host = request.host.clone();
    crate::network::container::validate_mode(
        roots,
        &host.network_mode,
        !host.port_bindings.is_empty() || host.publish_all,
        request.run.hostname.is_some(),
    )?;
    for text in &request.volumes_from {
        let (reference, read_only) =
            crate::volume::spec::parse_volumes_from(text).map_err(LifecycleError::Invalid)?;
        let other = store.find(&reference)?;
        host.mounts
            .extend(crate::volume::inherit(&other.host.mounts, read_only));
    }
    let image_volumes =
        crate::volume::spec::image_volumes(&request.image_defaults.volumes, &host.mounts)
            .map_err(LifecycleError::Invalid)?;
    host.mounts.extend(image_volumes);
    crate::volume::spec::check_duplicates(&host.mounts).map_err(LifecycleError::Invalid)?;
    crate::volume::spec::check_bind_sources(&host.mounts).map_err(LifecycleError::Invalid)?;
    if host.publish_all {
        for exposed in &config.exposed_ports {
            let spec =
                crate::network::ports::exposed_to_spec(exposed).map_err(LifecycleError::Invalid)?;
            if !host
                .port_bindings
                .iter()
                .any(|p| p.container_port == spec.container_port && p.protocol == spec.protocol)
            {
                host.port_bindings.push(spec);
            }
        }
    }
    Ok(host)
}

/// Find a container and bring its record up to date with reality.
pub fn find(roots: &Roots, reference: &str) -> Result<ContainerRecord, LifecycleError> {
    let store = ContainerStore::open(roots)?;
    let record = store.find(reference)?;
    reconcile(roots, &store, record)
}

/// Every container, each reconciled (for `ps`).
pub fn list(roots: &Roots) -> Result<Vec<ContainerRecord>, LifecycleError> {
    let store = ContainerStore::open(roots)?;
    store
        .list()?
        .into_iter()
        .map(|record| reconcile(roots, &store, record))
        .collect()
}

/// A record that says "running" while no monitor lives is fixed here: if the
/// container's PID 1 is gone too, its exit was never recorded (the monitor was
/// killed, or the host rebooted and `--state` is empty), so it is marked
/// exited with status 255 and its cgroup is cleaned up. A PID 1 that still
/// runs is shown as running, as it really is.
pub fn reconcile(
    roots: &Roots,
    store: &ContainerStore,
    record: ContainerRecord,
) -> Result<ContainerRecord, LifecycleError> {
    if !record.state.status.is_active() || monitor::is_alive(roots, &record.id) {
        return Ok(record);
    }
    if init_is_alive(&record) {
        return Ok(record);
    }
    let _lock = store.lock(&record.id)?;
    let record = store.load(&record.id)?;
    if !record.state.status.is_active()
        || monitor::is_alive(roots, &record.id)
        || init_is_alive(&record)
    {
        return Ok(record);
    }
    tracing::info!(id = %record.id, "monitor gone without recording the exit; marking exited");
    let _ = runtime_bridge::delete(&roots.runtime(), &record.id);
    crate::network::container::cleanup_leftovers_from_env(
        roots,
        &record.id,
        &monitor::state_dir(roots, &record.id),
    );
    let mut fixed = record;
    fixed.state.status = Status::Exited;
    fixed.state.exit_code = 255;
    fixed.state.pid = None;
    fixed.state.pid_start_time = None;
    fixed.state.finished_at = Some(Utc::now());
    fixed.state.error = "the monitor died before recording the exit status".into();
    store.save(&fixed)?;
    Ok(fixed)
}

fn init_is_alive(record: &ContainerRecord) -> bool {
    match (record.state.pid, record.state.pid_start_time) {
        (Some(pid), Some(start)) => procinfo::is_running(pid, start),
        _ => false,
    }
}

/// What `start` did.
#[derive(Debug)]
pub enum Started {
    /// A monitor started the container.
    Now {
        ready: Ready,
        attach: Option<UnixStream>,
    },
    /// It was running already (docker's `start` of a running container is a no-op).
    AlreadyRunning,
}

/// Start a created or exited container under a new monitor.
pub fn start(
    roots: &Roots,
    reference: &str,
    attach: Option<Hello>,
) -> Result<Started, LifecycleError> {
    let record = find(roots, reference)?;
    if record.state.status == Status::Paused {
        return Err(LifecycleError::StartPaused);
    }
    if record.state.status.is_active() {
        return Ok(Started::AlreadyRunning);
    }
    // A monitor that just recorded the exit may still be unmounting: wait
    // (on its lock, which the kernel releases when it exits) until it is gone.
    if monitor::is_alive(roots, &record.id) {
        drop(
            monitor::wait_gone_and_hold(roots, &record.id)
                .map_err(io_err(&record.id, "wait for the previous monitor"))?,
        );
    }
    let store = ContainerStore::open(roots)?;
    store.update(&record.id, |r| r.state.stopped_by_user = false)?;
    let (ready, attach) = monitor::spawn(roots, &record.id, attach)?;
    Ok(Started::Now { ready, attach })
}

/// docker's signal names and numbers: `SIGTERM`, `TERM`, `term`, `15`.
pub fn parse_signal(text: &str) -> Result<i32, LifecycleError> {
    let bad = || LifecycleError::BadSignal(text.to_string());
    if let Ok(number) = text.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(number)
            .map(|s| s as i32)
            .map_err(|_| bad());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

/// Graceful stop (see the module docs for the phases).
pub fn stop(
    roots: &Roots,
    reference: &str,
    timeout: Option<u32>,
    signal: Option<&str>,
) -> Result<ExitSeen, LifecycleError> {
    let record = find(roots, reference)?;
    let id = record.id.clone();
    if !record.state.status.is_active() {
        return Ok(ExitSeen {
            status: record.state.exit_code,
            record: Some(record),
        });
    }
    let signal = parse_signal(signal.unwrap_or(&record.config.stop_signal))?;
    let timeout = timeout
        .or(record.config.stop_timeout)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    let store = ContainerStore::open(roots)?;
    // Phase 1.
    store.update(&id, |r| r.state.stopped_by_user = true)?;
    // Phase 2.
    let watch = monitor::connect(roots, &id, Hello::default()).ok();
    // Phases 3-5.
    let mut killed = false;
    if let Some(pidfd) = open_init_pidfd(&record)? {
        tracing::debug!(%id, signal, timeout, "sending the stop signal to PID 1");
        let _ = procinfo::signal_pidfd(&pidfd, signal);
        thaw_if_paused(roots, &record);
        let exited = procinfo::wait_pidfd(&pidfd, Some(Duration::from_secs(timeout.into())))
            .map_err(io_err(&id, "wait for PID 1"))?;
        if !exited {
            tracing::debug!(%id, "stop timeout passed: killing every process of the container");
            kill_everything(roots, &id, &pidfd);
            killed = true;
            procinfo::wait_pidfd(&pidfd, None).map_err(io_err(&id, "wait for PID 1"))?;
        }
    }
    // Phase 6.
    finish_waiting(
        roots,
        &store,
        &id,
        watch,
        if killed { 137 } else { 128 + signal },
    )
}

/// `pause`: freeze every process of a running container (the cgroup
/// freezer: `freezer.state` on v1, `cgroup.freeze` on v2). The processes
/// stay in memory and get no CPU until `unpause`.
pub fn pause(roots: &Roots, reference: &str) -> Result<ContainerRecord, LifecycleError> {
    let record = find(roots, reference)?;
    match record.state.status {
        Status::Running => {}
        Status::Paused => return Err(LifecycleError::AlreadyPaused(record.id)),
        _ => return Err(LifecycleError::NotRunning(record.id)),
    }
    set_paused(roots, &record.id, true)?;
    Ok(record)
}

/// `unpause`: thaw a paused container.
pub fn unpause(roots: &Roots, reference: &str) -> Result<ContainerRecord, LifecycleError> {
    let record = find(roots, reference)?;
    if record.state.status != Status::Paused {
        return Err(LifecycleError::NotPaused(record.id));
    }
    set_paused(roots, &record.id, false)?;
    Ok(record)
}

/// Freeze or thaw the container's cgroup, then record it (under the
/// container's lock, so a monitor recording an exit meanwhile wins).
fn set_paused(roots: &Roots, id: &str, paused: bool) -> Result<(), LifecycleError> {
    runtime_bridge::set_frozen(&roots.runtime(), id, paused).map_err(LifecycleError::Invalid)?;
    let (from, to) = if paused {
        (Status::Running, Status::Paused)
    } else {
        (Status::Paused, Status::Running)
    };
    ContainerStore::open(roots)?.update(id, |r| {
        if r.state.status == from {
            r.state.status = to;
        }
    })?;
    Ok(())
}

/// A paused container's processes cannot act on a signal until thawed: once
/// the signal that is to end it has been sent (the stop signal, SIGKILL),
/// thaw it, as docker does.
fn thaw_if_paused(roots: &Roots, record: &ContainerRecord) {
    if record.state.status == Status::Paused {
        if let Err(err) = set_paused(roots, &record.id, false) {
            tracing::warn!(id = %record.id, %err, "thawing the paused container");
        }
    }
}

/// `kill`: send `signal` to PID 1 (docker's default is SIGKILL). Does not wait.
pub fn kill(
    roots: &Roots,
    reference: &str,
    signal: &str,
) -> Result<ContainerRecord, LifecycleError> {
    let record = find(roots, reference)?;
    if !record.state.status.is_active() {
        return Err(LifecycleError::NotRunning(record.id));
    }
    let signal = parse_signal(signal)?;
    if signal == libc::SIGKILL {
        let store = ContainerStore::open(roots)?;
        store.update(&record.id, |r| r.state.stopped_by_user = true)?;
    }
    match open_init_pidfd(&record)? {
        Some(pidfd) => {
            procinfo::signal_pidfd(&pidfd, signal).map_err(io_err(&record.id, "signal PID 1"))?
        }
        None => return Err(LifecycleError::NotRunning(record.id)),
    }
    // A signal meant to end the container is delivered at once; any other
    // waits, pending, until `unpause` (as with docker).
    if signal == libc::SIGKILL || parse_signal(&record.config.stop_signal).ok() == Some(signal) {
        thaw_if_paused(roots, &record);
    }
    Ok(record)
}

/// `rm [-f]`: a running container is refused unless forced, then killed;
/// everything of the container goes once its monitor is gone.
pub fn remove(
    roots: &Roots,
    reference: &str,
    force: bool,
) -> Result<ContainerRecord, LifecycleError> {
    remove_with_volumes(roots, reference, force, false)
}

/// `rm [-f] [-v]`: [`remove`], and with `volumes` the container's anonymous
/// volumes too (those no other container uses).
pub fn remove_with_volumes(
    roots: &Roots,
    reference: &str,
    force: bool,
    volumes: bool,
) -> Result<ContainerRecord, LifecycleError> {
    let record = find(roots, reference)?;
    let id = record.id.clone();
    let store = ContainerStore::open(roots)?;
    if record.state.status.is_active() {
        if !force {
            return Err(LifecycleError::RemoveRunning(id));
        }
        store.update(&id, |r| r.state.stopped_by_user = true)?;
        if let Some(pidfd) = open_init_pidfd(&record)? {
            kill_everything(roots, &id, &pidfd);
            thaw_if_paused(roots, &record);
            procinfo::wait_pidfd(&pidfd, None).map_err(io_err(&id, "wait for PID 1"))?;
        }
    }
    // The monitor records the exit and unmounts; hold its lock so no new
    // monitor can start while the container is deleted.
    let _hold =
        monitor::wait_gone_and_hold(roots, &id).map_err(io_err(&id, "wait for the monitor"))?;
    let _ = runtime_bridge::delete(&roots.runtime(), &id);
    let state_dir = monitor::state_dir(roots, &id);
    crate::network::container::cleanup_leftovers_from_env(roots, &id, &state_dir);
    store.remove(&id)?;
    let _ = std::fs::remove_dir_all(&state_dir);
    if volumes {
        VolumeStore::open(roots)?.remove_anonymous(&record.host.mounts)?;
    }
    tracing::debug!(%id, "container removed");
    Ok(record)
}

/// `wait`: block until the container is not running; its exit status.
pub fn wait(roots: &Roots, reference: &str) -> Result<i32, LifecycleError> {
    let record = find(roots, reference)?;
    if !record.state.status.is_active() {
        return Ok(record.state.exit_code);
    }
    let store = ContainerStore::open(roots)?;
    let watch = monitor::connect(roots, &record.id, Hello::default()).ok();
    if watch.is_none() {
        if let Some(pidfd) = open_init_pidfd(&record)? {
            procinfo::wait_pidfd(&pidfd, None).map_err(io_err(&record.id, "wait for PID 1"))?;
        }
    }
    let fallback = record.state.exit_code;
    Ok(finish_waiting(roots, &store, &record.id, watch, fallback)?.status)
}

/// A pidfd for the container's PID 1 if it is still the process we started.
fn open_init_pidfd(
    record: &ContainerRecord,
) -> Result<Option<std::os::fd::OwnedFd>, LifecycleError> {
    match (record.state.pid, record.state.pid_start_time) {
        (Some(pid), Some(start)) => {
            procinfo::open_pidfd(pid, start).map_err(io_err(&record.id, "pidfd_open"))
        }
        _ => Ok(None),
    }
}

/// SIGKILL every process in the container's cgroup; if the runtime cannot
/// (its state is gone), kill PID 1, which takes its pid namespace with it.
fn kill_everything(roots: &Roots, id: &str, pidfd: &std::os::fd::OwnedFd) {
    if let Err(err) = runtime_bridge::kill(&roots.runtime(), id, libc::SIGKILL, true) {
        tracing::debug!(%id, %err, "cgroup kill failed; killing PID 1");
        let _ = procinfo::signal_pidfd(pidfd, libc::SIGKILL);
    }
}

/// What a wait for the exit learned.
#[derive(Debug)]
pub struct ExitSeen {
    /// The container's exit status.
    pub status: i32,
    /// The record afterwards; None when the container removed itself (`--rm`).
    pub record: Option<ContainerRecord>,
}

/// Wait for the monitor's exit frame (the record then says exited); if there
/// is no monitor to tell us, reconcile the record ourselves.
fn finish_waiting(
    roots: &Roots,
    store: &ContainerStore,
    id: &str,
    watch: Option<UnixStream>,
    status_if_unrecorded: i32,
) -> Result<ExitSeen, LifecycleError> {
    let mut framed_status = None;
    if let Some(mut stream) = watch {
        loop {
            match Frame::read_from(&mut stream) {
                Ok(Some(Frame::Exit(status))) => {
                    framed_status = Some(status);
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
    let record = match store.load(id) {
        Ok(record) => record,
        Err(ContainerError::NotFound(_)) => {
            return Ok(ExitSeen {
                status: framed_status.unwrap_or(status_if_unrecorded),
                record: None,
            })
        }
        Err(err) => return Err(err.into()),
    };
    let unrecorded =
        record.state.status.is_active() && !monitor::is_alive(roots, id) && !init_is_alive(&record);
    if !unrecorded {
        let record = reconcile(roots, store, record)?;
        return Ok(ExitSeen {
            status: framed_status.unwrap_or(record.state.exit_code),
            record: Some(record),
        });
    }
    let _lock = store.lock(id)?;
    let mut fixed = store.load(id)?;
    let _ = runtime_bridge::delete(&roots.runtime(), id);
    fixed.state.status = Status::Exited;
    fixed.state.exit_code = status_if_unrecorded;
    fixed.state.pid = None;
    fixed.state.pid_start_time = None;
    fixed.state.finished_at = Some(Utc::now());
    store.save(&fixed)?;
    Ok(ExitSeen {
        status: status_if_unrecorded,
        record: Some(fixed),
    })
}

fn io_err<'a>(id: &'a str, what: &'static str) -> impl FnOnce(io::Error) -> LifecycleError + 'a {
    move |source| LifecycleError::Io {
        id: id.to_string(),
        what,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_short_name_and_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("term").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGQUIT").unwrap(), libc::SIGQUIT);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}

//! What `berth compose up|down|start|stop|restart|build|pull` do, on top of
//! the engine's own operations: networks (`network::manage`), volumes
//! (`volume`), images (`build`, `registry`) and containers
//! (`container::lifecycle`). No state of compose's own is kept: a project's
//! containers, networks and volumes are found again by their names and
//! docker compose's labels.
//!
//! Order: `up` starts services dependencies first and waits for each
//! dependency's condition (`service_started`, `service_healthy` — the
//! container's healthcheck says healthy —, `service_completed_successfully`)
//! before starting the service that needs it. `stop` and `down` go the other
//! way, in waves: a service stops only once everything depending on it has
//! stopped, each with its own graceful stop (its `stop_signal`, then
//! SIGKILL after its `stop_grace_period`), the services of one wave at the
//! same time, each in its own thread (stopping forks nothing; starting
//! forks a monitor, so starts stay on the calling thread).
//!
//! Every step is reported through a callback as docker compose prints it:
//! (`"Container"`, `"proj-web-1"`, `"Started"`).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;

use super::convert::{self, ServiceImage};
use super::model::{Condition, Service};
use super::project::{self, Project};
use super::ComposeError;
use crate::container::health::HealthStatus;
use crate::container::lifecycle::{self, Started};
use crate::container::monitor::Ready;
use crate::container::spec::ImageDefaults;
use crate::container::ContainerRecord;
use crate::image::{ImageError, ImageStore};
use crate::network::{manage, NetworkOptions, NetworkStore};
use crate::paths::Roots;
use crate::volume::VolumeStore;

/// The progress callback: (what, name, state), e.g. ("Container", "p-web-1", "Started").
pub type Report<'a> = dyn FnMut(&str, &str, &str) + 'a;

/// `up`'s flags.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Only these services (and, unless `no_deps`, their dependencies).
    pub services: Vec<String>,
    /// `--build`: build images before starting.
    pub build: bool,
    /// `--force-recreate`.
    pub force_recreate: bool,
    /// `--no-deps`.
    pub no_deps: bool,
}

/// `down`'s flags.
#[derive(Debug, Clone, Default)]
pub struct DownOptions {
    /// `-v`: remove the project's named volumes and the containers' anonymous ones.
    pub volumes: bool,
    /// `--remove-orphans`: also containers of services no longer in the file.
    pub remove_orphans: bool,
    /// `-t`: seconds before SIGKILL, instead of each service's own.
    pub timeout: Option<u32>,
}

/// Every container of project `name` (reconciled), oldest first.
pub fn project_containers(roots: &Roots, name: &str) -> Result<Vec<ContainerRecord>, ComposeError> {
    let mut records: Vec<ContainerRecord> = lifecycle::list(roots)?
        .into_iter()
        .filter(|r| {
            r.config
                .labels
                .get(project::LABEL_PROJECT)
                .is_some_and(|p| p == name)
        })
        .collect();
    records.reverse();
    Ok(records)
}

/// The service a container belongs to (its label).
pub fn service_of(record: &ContainerRecord) -> &str {
    record
        .config
        .labels
        .get(project::LABEL_SERVICE)
        .map(String::as_str)
        .unwrap_or_default()
}

/// The containers of `services` (every one of the project when empty).
pub fn containers_of(
    roots: &Roots,
    project: &Project,
    services: &[String],
) -> Result<Vec<ContainerRecord>, ComposeError> {
    for name in services {
        project.service(name)?;
    }
    Ok(project_containers(roots, &project.name)?
        .into_iter()
        .filter(|r| services.is_empty() || services.iter().any(|s| s == service_of(r)))
        .collect())
}

/// `up`: networks, volumes, images, then each service's container, created
/// (or recreated when its configuration changed) and started in dependency
/// order. Returns the services' containers, in start order.
pub fn up(
    roots: &Roots,
    project: &Project,
    options: &UpOptions,
    out: &mut dyn Write,
    report: &mut Report<'_>,
) -> Result<Vec<ContainerRecord>, ComposeError> {
    let services = project.start_order(&options.services, !options.no_deps)?;
    // Images first: a missing one stops `up` before anything is created.
    for service in &services {
        let needs_build = service.build.is_some()
            && (options.build || find_image(roots, project, service)?.is_none());
        if needs_build {
            build_service(roots, project, service, false, out, report)?;
        }
    }
    // From here until the containers' records name their images, the
    // store's collector (`rmi`, `image prune`) waits.
    let _hold = ImageStore::open(roots)?.hold()?;
    let mut images = BTreeMap::new();
    for service in &services {
        let image =
            find_image(roots, project, service)?.ok_or_else(|| missing_image(project, service))?;
        images.insert(service.name.clone(), image);
    }
    ensure_networks(roots, project, &project.networks_used(&services), report)?;
    ensure_volumes(roots, project, &project.volumes_used(&services), report)?;
    let mut started = Vec::new();
    for service in &services {
        wait_for_dependencies(roots, project, service, report)?;
        let record = converge(
            roots,
            project,
            service,
            &images[&service.name],
            options.force_recreate,
            report,
        )?;
        if record.state.status.is_active() {
            started.push(record);
        } else {
            started.push(start_container(roots, &record, report)?);
        }
    }
    Ok(started)
}

/// The service's image in the store, with what a container needs of it.
fn find_image(
    roots: &Roots,
    project: &Project,
    service: &Service,
) -> Result<Option<ServiceImage>, ComposeError> {
    let reference = project.image_name(service);
    let store = ImageStore::open(roots)?;
    match store.resolve(&reference) {
        Ok(image) => Ok(Some(ServiceImage {
            reference,
            id: image.id.to_string(),
            defaults: ImageDefaults::of(&image),
        })),
        Err(ImageError::NotFound(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn missing_image(project: &Project, service: &Service) -> ComposeError {
    let reference = project.image_name(service);
    ComposeError::Invalid(format!(
        "service {:?}: Unable to find image '{reference}' locally: load it with `berth load -i FILE` or pull it with `berth compose pull`",
        service.name
    ))
}

/// Create the project networks `keys` that do not exist yet.
fn ensure_networks(
    roots: &Roots,
    project: &Project,
    keys: &[String],
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    if keys.is_empty() {
        return Ok(());
    }
    let options = NetworkOptions::from_env()?;
    let store = NetworkStore::open(roots, &options)?;
    for key in keys {
        let name = project.network_name(key);
        let def = project.model.networks.iter().find(|n| &n.key == key);
        if store.try_find(&name)?.is_some() {
            continue;
        }
        if def.is_some_and(|d| d.external) {
            return Err(ComposeError::Invalid(format!(
                "network {name} declared as external, but could not be found: create it with `berth network create {name}`"
            )));
        }
        let mut labels = def.map(|d| d.labels.clone()).unwrap_or_default();
        labels.insert(project::LABEL_PROJECT.into(), project.name.clone());
        labels.insert(project::LABEL_NETWORK.into(), key.clone());
        let subnet = match def.and_then(|d| d.subnet.as_deref()) {
            Some(text) => Some(text.parse().map_err(|e| {
                ComposeError::Invalid(format!("network {key}: subnet {text:?}: {e}"))
            })?),
            None => None,
        };
        report("Network", &name, "Creating");
        manage::create_network(roots, &options, &name, subnet, labels)?;
        report("Network", &name, "Created");
    }
    Ok(())
}

/// Create the project volumes `keys` that do not exist yet.
fn ensure_volumes(
    roots: &Roots,
    project: &Project,
    keys: &[String],
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    let store = VolumeStore::open(roots)?;
    for key in keys {
        let name = project.volume_name(key);
        let def = project.model.volumes.iter().find(|v| &v.key == key);
        if store.get(&name).is_ok() {
            continue;
        }
        if def.is_some_and(|d| d.external) {
            return Err(ComposeError::Invalid(format!(
                "volume {name:?} declared as external, but could not be found: create it with `berth volume create {name}`"
            )));
        }
        let mut labels = def.map(|d| d.labels.clone()).unwrap_or_default();
        labels.insert(project::LABEL_PROJECT.into(), project.name.clone());
        labels.insert(project::LABEL_VOLUME.into(), key.clone());
        report("Volume", &name, "Creating");
        store.create(Some(&name), labels)?;
        report("Volume", &name, "Created");
    }
    Ok(())
}

/// The service's container, as the file now says it should be: the
/// existing one when its config hash matches, otherwise a new one (the old
/// one stopped and removed first).
fn converge(
    roots: &Roots,
    project: &Project,
    service: &Service,
    image: &ServiceImage,
    force_recreate: bool,
    report: &mut Report<'_>,
) -> Result<ContainerRecord, ComposeError> {
    let name = project.container_name(service, 1);
    let hash = convert::config_hash(service, image);
    let existing = containers_of(roots, project, std::slice::from_ref(&service.name))?;
    if let Some(old) = existing.into_iter().next() {
        let same = old.config.labels.get(project::LABEL_CONFIG_HASH) == Some(&hash);
        if same && !force_recreate {
            if old.state.status.is_active() {
                report("Container", &old.name, "Running");
            }
            return Ok(old);
        }
        report("Container", &old.name, "Recreate");
        lifecycle::stop(roots, &old.id, None, None)?;
        lifecycle::remove(roots, &old.id, false)?;
    }
    let request = convert::create_request(project, service, 1, image)?;
    report("Container", &name, "Creating");
    let record = lifecycle::create(roots, request)?;
    report("Container", &name, "Created");
    Ok(record)
}

/// Start a container that is not running (no-op for one that is).
fn start_container(
    roots: &Roots,
    record: &ContainerRecord,
    report: &mut Report<'_>,
) -> Result<ContainerRecord, ComposeError> {
    report("Container", &record.name, "Starting");
    match lifecycle::start(roots, &record.id, None)? {
        Started::Now {
            ready: Ready::Failed { error, .. },
            ..
        } => {
            return Err(ComposeError::Invalid(format!(
                "container {}: {error}",
                record.name
            )))
        }
        Started::Now { .. } | Started::AlreadyRunning => {}
    }
    report("Container", &record.name, "Started");
    Ok(lifecycle::find(roots, &record.id)?)
}

/// Wait until each dependency of `service` meets its condition.
fn wait_for_dependencies(
    roots: &Roots,
    project: &Project,
    service: &Service,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    for dependency in &service.depends_on {
        let Some(record) =
            containers_of(roots, project, std::slice::from_ref(&dependency.service))?
                .into_iter()
                .next()
        else {
            continue;
        };
        match dependency.condition {
            Condition::ServiceStarted => {}
            Condition::ServiceHealthy => {
                report("Container", &record.name, "Waiting");
                wait_healthy(roots, &record)?;
                report("Container", &record.name, "Healthy");
            }
            Condition::ServiceCompletedSuccessfully => {
                report("Container", &record.name, "Waiting");
                let status = lifecycle::wait(roots, &record.id)?;
                if status != 0 {
                    return Err(ComposeError::Dependency(format!(
                        "service {:?} didn't complete successfully: exit {status}",
                        dependency.service
                    )));
                }
                report("Container", &record.name, "Exited");
            }
        }
    }
    Ok(())
}

/// Wait until the container's healthcheck says healthy. The record is
/// re-read whenever it is replaced (inotify on its directory: every write
/// is a rename into it), with a one-second fallback.
fn wait_healthy(roots: &Roots, record: &ContainerRecord) -> Result<(), ComposeError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let dir = roots.containers().join(&record.id);
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| ComposeError::Invalid(format!("inotify: {e}")))?;
    let _ = inotify.add_watch(
        &dir,
        AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_DELETE_SELF,
    );
    loop {
        let now = lifecycle::find(roots, &record.id)?;
        if !now.state.status.is_active() {
            return Err(ComposeError::Dependency(format!(
                "dependency failed to start: container {} exited ({})",
                now.name, now.state.exit_code
            )));
        }
        match now.state.health.as_ref().map(|h| h.status) {
            None => {
                return Err(ComposeError::Dependency(format!(
                    "dependency failed to start: container {} has no healthcheck configured",
                    now.name
                )))
            }
            Some(HealthStatus::Healthy) => return Ok(()),
            Some(HealthStatus::Unhealthy) => {
                return Err(ComposeError::Dependency(format!(
                    "dependency failed to start: container {} is unhealthy",
                    now.name
                )))
            }
            Some(HealthStatus::Starting) => {}
        }
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(1000u16));
        let _ = inotify.read_events();
    }
}

/// `build`: the images of `services` (every service with `build:` when empty).
pub fn build(
    roots: &Roots,
    project: &Project,
    services: &[String],
    no_cache: bool,
    out: &mut dyn Write,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    for service in project.start_order(services, false)? {
        if service.build.is_some() {
            build_service(roots, project, service, no_cache, out, report)?;
        }
    }
    Ok(())
}

fn build_service(
    roots: &Roots,
    project: &Project,
    service: &Service,
    no_cache: bool,
    out: &mut dyn Write,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    let Some(build) = &service.build else {
        return Ok(());
    };
    let context = convert::resolve_host_path(&project.dir, &build.context);
    let build_args = build
        .args
        .iter()
        .filter_map(|(k, v)| {
            v.clone()
                .or_else(|| project.lookup(k))
                .map(|v| (k.clone(), v))
        })
        .collect();
    let image = project.image_name(service);
    let options = crate::build::BuildOptions {
        dockerfile: build
            .dockerfile
            .as_ref()
            .map(|d| convert::resolve_host_path(&context, d)),
        context,
        tags: vec![image.clone()],
        build_args,
        no_cache,
        target: build.target.clone(),
        host_network: false,
    };
    report("Image", &image, "Building");
    crate::build::build(roots, &options, out)?;
    report("Image", &image, "Built");
    Ok(())
}

/// `pull`: the images of `services` that are not built.
pub fn pull(
    roots: &Roots,
    project: &Project,
    services: &[String],
    out: &mut dyn Write,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    let credentials = crate::registry::CredentialStore::default_location();
    let progress = crate::progress::Progress::new(false);
    for service in project.start_order(services, false)? {
        let (Some(image), None) = (&service.image, &service.build) else {
            continue;
        };
        report("Image", image, "Pulling");
        crate::registry::pull(
            roots,
            image,
            &Default::default(),
            &credentials,
            out,
            &progress,
        )?;
        report("Image", image, "Pulled");
    }
    Ok(())
}

/// `start`: the existing containers of `services`, in dependency order.
pub fn start(
    roots: &Roots,
    project: &Project,
    services: &[String],
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    let containers = containers_of(roots, project, services)?;
    if containers.is_empty() {
        return Err(ComposeError::Invalid(format!(
            "project {} has no containers to start: create them with `berth compose up`",
            project.name
        )));
    }
    for service in project.start_order(services, false)? {
        for record in containers.iter().filter(|r| service_of(r) == service.name) {
            wait_for_dependencies(roots, project, service, report)?;
            if !record.state.status.is_active() {
                start_container(roots, record, report)?;
            }
        }
    }
    Ok(())
}

/// `stop`: the running containers of `services`, dependents first.
pub fn stop(
    roots: &Roots,
    project: &Project,
    services: &[String],
    timeout: Option<u32>,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    let containers = containers_of(roots, project, services)?;
    stop_in_waves(roots, project, &containers, timeout, report)
}

/// `restart`: stop, then start again, each in its order.
pub fn restart(
    roots: &Roots,
    project: &Project,
    services: &[String],
    timeout: Option<u32>,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    stop(roots, project, services, timeout, report)?;
    start(roots, project, services, report)
}

/// Stop `containers` in reverse dependency order (see the module docs).
fn stop_in_waves(
    roots: &Roots,
    project: &Project,
    containers: &[ContainerRecord],
    timeout: Option<u32>,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    let mut names: Vec<String> = Vec::new();
    for record in containers {
        let service = service_of(record).to_string();
        if !names.contains(&service) {
            names.push(service);
        }
    }
    for wave in super::graph::stop_waves(&project.model, &names) {
        let members: Vec<&ContainerRecord> = containers
            .iter()
            .filter(|r| wave.iter().any(|s| s == service_of(r)) && r.state.status.is_active())
            .collect();
        for record in &members {
            report("Container", &record.name, "Stopping");
        }
        tracing::debug!(?wave, "stopping a wave of services");
        let results: Vec<Result<(), ComposeError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = members
                .iter()
                .map(|record| {
                    scope.spawn(move || {
                        lifecycle::stop(roots, &record.id, timeout, None)
                            .map(|_| ())
                            .map_err(ComposeError::from)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ComposeError::Invalid("a stop thread panicked".into()))
                    })
                })
                .collect()
        });
        for (record, result) in members.iter().zip(results) {
            result?;
            report("Container", &record.name, "Stopped");
        }
    }
    Ok(())
}

/// `down`: stop (dependents first) and remove the containers, then the
/// project's networks, and with `volumes` its named volumes.
pub fn down(
    roots: &Roots,
    project: &Project,
    options: &DownOptions,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    let all = project_containers(roots, &project.name)?;
    let (containers, orphans): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| options.remove_orphans || project.model.service(service_of(r)).is_some());
    if !orphans.is_empty() {
        let names: Vec<&str> = orphans.iter().map(|r| r.name.as_str()).collect();
        report("Warning", "", &format!(
            "Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(", ")
        ));
    }
    stop_in_waves(roots, project, &containers, options.timeout, report)?;
    for record in &containers {
        report("Container", &record.name, "Removing");
        lifecycle::remove_with_volumes(roots, &record.id, true, options.volumes)?;
        report("Container", &record.name, "Removed");
    }
    remove_networks(roots, project, report)?;
    if options.volumes {
        remove_volumes(roots, project, report)?;
    }
    Ok(())
}

/// The project's own networks (the default one and the declared ones that
/// are not external).
fn remove_networks(
    roots: &Roots,
    project: &Project,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    let options = NetworkOptions::from_env()?;
    let store = NetworkStore::open(roots, &options)?;
    let mut keys = vec![project::DEFAULT_NETWORK_KEY.to_string()];
    keys.extend(
        project
            .model
            .networks
            .iter()
            .filter(|n| !n.external)
            .map(|n| n.key.clone()),
    );
    keys.dedup();
    for key in keys {
        let name = project.network_name(&key);
        let Some(network) = store.try_find(&name)? else {
            continue;
        };
        if network.labels.get(project::LABEL_PROJECT) != Some(&project.name) {
            continue; // not made by this project: leave it
        }
        report("Network", &name, "Removing");
        manage::remove_network(roots, &options, &name)?;
        report("Network", &name, "Removed");
    }
    Ok(())
}

fn remove_volumes(
    roots: &Roots,
    project: &Project,
    report: &mut Report<'_>,
) -> Result<(), ComposeError> {
    let store = VolumeStore::open(roots)?;
    for def in project.model.volumes.iter().filter(|v| !v.external) {
        let name = project.volume_name(&def.key);
        if store.get(&name).is_err() {
            continue;
        }
        report("Volume", &name, "Removing");
        store.remove(&name, true)?;
        report("Volume", &name, "Removed");
    }
    Ok(())
}

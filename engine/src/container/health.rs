//! Healthchecks: docker's HEALTHCHECK (and compose's `healthcheck:`), run
//! inside the container at an interval, with the result kept in the record
//! as docker's `State.Health` (`starting`, `healthy`, `unhealthy`).
//!
//! Mechanism: after each start the monitor forks one small *checker*
//! process per container (`fork(2)`, `prctl(PR_SET_PDEATHSIG, SIGKILL)` so
//! it dies with the monitor, every inherited fd closed). The checker holds a
//! pidfd of the container's PID 1 and `poll(2)`s it with the interval as the
//! timeout: a timeout means "time for a probe", readability means the
//! container exited and the checker ends with it. A probe is an exec into
//! the container through berth-runtime (the same join of namespaces and
//! cgroup as `berth exec`), its output read from a pipe up to the probe's
//! timeout, after which it is SIGKILLed. The result is written to the record
//! under its lock, only while the record still names the same PID 1 (so a
//! late probe never marks a restarted or stopped container).
//!
//! Why a process and not the monitor's own event loop: a probe blocks (exec,
//! then waiting up to its timeout), and the monitor must keep relaying the
//! container's output meanwhile; a separate process also keeps the
//! monitor's reaping of the container untouched by probe children.
//!
//! Status rules are moby's (daemon/health.go): exit 0 is a success and
//! resets the failing streak; any other result is a failure, which does not
//! count during the start period while the container has never been
//! healthy; `retries` consecutive failures make it `unhealthy`. The last
//! five probes are kept in the log, each output cut at 4096 bytes.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::runtime_bridge::{self, ExecRequest};
use super::{procinfo, ContainerRecord, ContainerStore};
use crate::paths::Roots;

/// Docker's defaults for fields a healthcheck leaves at zero.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: u32 = 3;
/// How many probe results the record keeps (moby's maxLogEntries).
pub const LOG_ENTRIES: usize = 5;
/// How much of a probe's output is kept (moby's maxOutputLen).
pub const MAX_OUTPUT: usize = 4096;

/// A healthcheck as docker's image config and API spell it (durations in
/// nanoseconds; zero means "the default", or "the image's" when merging).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Healthcheck {
    /// `["CMD", program, args...]`, `["CMD-SHELL", command]`, or `["NONE"]`
    /// (disabled); empty: inherit the image's test.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub start_interval: i64,
    pub retries: u32,
}

impl Healthcheck {
    /// The image config's `Healthcheck` object, if it is one.
    pub fn from_image_config(value: &serde_json::Value) -> Option<Healthcheck> {
        serde_json::from_value(value.clone()).ok()
    }

    /// The argv of a probe, or None when the test runs nothing (NONE, empty,
    /// or an unknown form).
    pub fn probe_args(&self) -> Option<Vec<String>> {
        let (kind, rest) = self.test.split_first()?;
        match kind.as_str() {
            "CMD" if !rest.is_empty() => Some(rest.to_vec()),
            "CMD-SHELL" if !rest.is_empty() => Some(vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                rest.join(" "),
            ]),
            _ => None,
        }
    }

    pub fn interval(&self) -> Duration {
        nanos_or(self.interval, DEFAULT_INTERVAL)
    }

    pub fn timeout(&self) -> Duration {
        nanos_or(self.timeout, DEFAULT_TIMEOUT)
    }

    pub fn start_period(&self) -> Duration {
        nanos_or(self.start_period, Duration::ZERO)
    }

    pub fn start_interval(&self) -> Duration {
        nanos_or(self.start_interval, DEFAULT_START_INTERVAL)
    }

    pub fn retries(&self) -> u32 {
        if self.retries == 0 {
            DEFAULT_RETRIES
        } else {
            self.retries
        }
    }
}

fn nanos_or(nanos: i64, default: Duration) -> Duration {
    if nanos > 0 {
        Duration::from_nanos(nanos as u64)
    } else {
        default
    }
}

/// The container's healthcheck: `request` (compose's `healthcheck:`) over
/// the image's, field by field as docker merges them. None when neither
/// has one or the result is disabled (`NONE`).
pub fn merge(image: Option<&Healthcheck>, request: Option<&Healthcheck>) -> Option<Healthcheck> {
    let mut merged = match (request, image) {
        (Some(request), Some(image)) => {
            let pick = |mine: i64, theirs: i64| if mine != 0 { mine } else { theirs };
            Healthcheck {
                test: if request.test.is_empty() {
                    image.test.clone()
                } else {
                    request.test.clone()
                },
                interval: pick(request.interval, image.interval),
                timeout: pick(request.timeout, image.timeout),
                start_period: pick(request.start_period, image.start_period),
                start_interval: pick(request.start_interval, image.start_interval),
                retries: if request.retries != 0 {
                    request.retries
                } else {
                    image.retries
                },
            }
        }
        (Some(only), None) | (None, Some(only)) => only.clone(),
        (None, None) => return None,
    };
    merged.probe_args()?;
    merged.test.shrink_to_fit();
    Some(merged)
}

/// docker's health statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's result (docker's `State.Health.Log[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLogEntry {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// 0 healthy, anything else a failure (-1: it could not run or timed out).
    pub exit_code: i32,
    pub output: String,
}

/// A container's health (docker's `State.Health`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    pub log: Vec<HealthLogEntry>,
}

impl Health {
    /// The health of a container that has just started.
    pub fn starting() -> Health {
        Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// Apply one probe's result (moby's handleProbeResult). `since_start`
    /// is how long after the container's start the probe began.
    pub fn record(&mut self, entry: HealthLogEntry, check: &Healthcheck, since_start: Duration) {
        if entry.exit_code == 0 {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else {
            let in_start_period =
                self.status == HealthStatus::Starting && since_start < check.start_period();
            if !in_start_period {
                self.failing_streak += 1;
                if self.failing_streak >= check.retries() {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
        self.log.push(entry);
        let extra = self.log.len().saturating_sub(LOG_ENTRIES);
        self.log.drain(..extra);
    }
}

/// Fork the checker of container `id`, whose PID 1 is `pid` (started at
/// `start_time`). Only call from a single-threaded process (the monitor).
pub fn spawn_checker(roots: &Roots, id: &str, pid: i32, start_time: u64, check: Healthcheck) {
    let parent = std::process::id() as i32;
    let log = super::monitor::state_dir(roots, id).join("monitor.log");
    // SAFETY: the monitor is single-threaded, so the child may run any code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: PR_SET_PDEATHSIG takes a signal number.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            if nix::unistd::getppid().as_raw() != parent {
                // SAFETY: _exit skips the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            detach_from_monitor(&log);
            checker(roots, id, pid, start_time, &check);
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            tracing::debug!(id, checker = child.as_raw(), interval = ?check.interval(),
                "healthcheck process started");
        }
        Err(err) => tracing::warn!(id, %err, "could not fork the healthcheck process"),
    }
}

/// In the checker: nothing of the monitor's stays open (its lock above all:
/// a shared flock would make a dead monitor look alive), stdio goes to
/// /dev/null and the monitor's log, signals are back to their defaults.
fn detach_from_monitor(log: &std::path::Path) {
    crate::security::inheritance::drop_inherited(&[]);
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        match File::options().create(true).append(true).open(log) {
            Ok(log) => {
                let _ = nix::unistd::dup2_stderr(&log);
            }
            Err(_) => {
                let _ = nix::unistd::dup2_stderr(&null);
            }
        }
    }
    use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
    for sig in [
        Signal::SIGPIPE,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        // SAFETY: SIG_DFL installs no handler code.
        unsafe {
            let _ = signal(sig, SigHandler::SigDfl);
        }
    }
    let _ = SigSet::all().thread_unblock();
}

/// The checker's life: wait an interval on the container's pidfd, probe,
/// record; end when the container's PID 1 exits.
fn checker(roots: &Roots, id: &str, pid: i32, start_time: u64, check: &Healthcheck) {
    let Ok(Some(pidfd)) = procinfo::open_pidfd(pid, start_time) else {
        return;
    };
    let Ok(store) = ContainerStore::open(roots) else {
        return;
    };
    let started = Instant::now();
    let mut status = HealthStatus::Starting;
    loop {
        let in_start_period = started.elapsed() < check.start_period();
        let wait = if in_start_period && status == HealthStatus::Starting {
            check.start_interval()
        } else {
            check.interval()
        };
        match procinfo::wait_pidfd(&pidfd, Some(wait)) {
            Ok(false) => {}
            _ => return, // the container exited (or its pidfd failed)
        }
        let Ok(record) = store.load(id) else { return };
        if record.state.status == super::record::Status::Paused {
            continue; // a frozen container cannot answer: no probe until unpause
        }
        let since_start = started.elapsed();
        let entry = probe(roots, &record, pid, check);
        tracing::debug!(id, exit_code = entry.exit_code, "health probe");
        let updated = store.update(id, |r| {
            if r.state.pid != Some(pid) {
                return None;
            }
            let health = r.state.health.get_or_insert_with(Health::starting);
            health.record(entry, check, since_start);
            Some(health.status)
        });
        match updated {
            Ok((_, Some(now))) => status = now,
            _ => return,
        }
    }
}

/// Run one probe and time it.
fn probe(roots: &Roots, record: &ContainerRecord, pid: i32, check: &Healthcheck) -> HealthLogEntry {
    let start = Utc::now();
    let (exit_code, output) = match run_probe(roots, record, pid, check) {
        Ok(result) => result,
        Err(message) => (-1, message),
    };
    HealthLogEntry {
        start,
        end: Utc::now(),
        exit_code,
        output,
    }
}

/// Exec the test in the container as its user, with its environment and
/// capabilities; its exit code and combined output (or a timeout).
fn run_probe(
    roots: &Roots,
    record: &ContainerRecord,
    pid: i32,
    check: &Healthcheck,
) -> Result<(i32, String), String> {
    let args = check.probe_args().ok_or("the healthcheck has no command")?;
    let container_root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    let (uid, gid, additional_gids, home) =
        runtime_bridge::resolve_user(&container_root, &record.config.user)?;
    let mut env = record.config.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    let bundle_config = roots.containers().join(&record.id).join("config.json");
    let spec = oci_spec::runtime::Spec::load(&bundle_config)
        .map_err(|e| format!("read {}: {e}", bundle_config.display()))?;
    let process = spec.process().clone().unwrap_or_default();
    let (out_read, out_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let null: OwnedFd = File::open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?
        .into();
    let err_write = out_write
        .try_clone()
        .map_err(|e| format!("dup the probe's pipe: {e}"))?;
    let request = ExecRequest {
        args,
        env,
        cwd: record.config.working_dir.clone(),
        uid,
        gid,
        additional_gids,
        tty: false,
        stdio: Some([null, out_write, err_write]),
        detach: false,
        capabilities: process.capabilities().clone(),
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
    };
    let launched =
        runtime_bridge::exec(&roots.runtime(), &record.id, request).map_err(|e| e.to_string())?;
    collect(launched.pid, out_read, check.timeout())
}

/// Read the probe's output until it exits or `timeout` passes (then kill it).
fn collect(pid: i32, output: OwnedFd, timeout: Duration) -> Result<(i32, String), String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let child = nix::unistd::Pid::from_raw(pid);
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or("the probe has no pid")?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| format!("pidfd_open: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut pipe = Some(File::from(output));
    let mut text = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            return Ok((
                -1,
                format!("Health check exceeded timeout ({})", go_duration(timeout)),
            ));
        }
        let millis =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if let Some(pipe) = &pipe {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, millis) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(format!("poll: {err}")),
        }
        let exited = fds[0].revents().is_some_and(|r| !r.is_empty());
        let readable = fds
            .get(1)
            .is_some_and(|p| p.revents().is_some_and(|r| !r.is_empty()));
        drop(fds);
        if readable && !read_some(&mut pipe, &mut text) {
            pipe = None;
        }
        if exited {
            // What the probe wrote before it exited is in the pipe already.
            if let Some(pipe) = pipe.take() {
                drain_nonblocking(pipe, &mut text);
            }
            let code = match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
                Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                _ => -1,
            };
            return Ok((code, String::from_utf8_lossy(&text).into_owned()));
        }
    }
}

/// One read into `text` (kept up to [`MAX_OUTPUT`]); false at end of file.
fn read_some(pipe: &mut Option<File>, text: &mut Vec<u8>) -> bool {
    let Some(file) = pipe.as_mut() else {
        return false;
    };
    let mut buf = [0u8; 4096];
    match file.read(&mut buf) {
        Ok(0) => false,
        Ok(n) => {
            let room = MAX_OUTPUT.saturating_sub(text.len());
            text.extend_from_slice(&buf[..n.min(room)]);
            true
        }
        Err(err) if err.kind() == std::io::ErrorKind::Interrupted => true,
        Err(_) => false,
    }
}

fn drain_nonblocking(pipe: File, text: &mut Vec<u8>) {
    let flags = nix::fcntl::OFlag::O_NONBLOCK;
    let _ = nix::fcntl::fcntl(&pipe, nix::fcntl::FcntlArg::F_SETFL(flags));
    let mut pipe = Some(pipe);
    while read_some(&mut pipe, text) {}
}

/// Go's rendering of a duration, as docker's messages show it (`30s`, `1.5s`, `500ms`).
pub fn go_duration(d: Duration) -> String {
    if d.as_secs() >= 60 {
        let (m, s) = (d.as_secs() / 60, d.as_secs() % 60);
        format!("{m}m{s}s")
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(test: &[&str]) -> Healthcheck {
        Healthcheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn entry(code: i32) -> HealthLogEntry {
        HealthLogEntry {
            start: Utc::now(),
            end: Utc::now(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn tests_become_argv_and_none_disables() {
        assert_eq!(
            check(&["CMD", "wget", "-q", "x"]).probe_args().unwrap(),
            vec!["wget", "-q", "x"]
        );
        assert_eq!(
            check(&["CMD-SHELL", "test -f /ok"]).probe_args().unwrap(),
            vec!["/bin/sh", "-c", "test -f /ok"]
        );
        assert!(check(&["NONE"]).probe_args().is_none());
        assert!(merge(None, Some(&check(&["NONE"]))).is_none());
        assert!(merge(Some(&check(&["CMD", "true"])), Some(&check(&["NONE"]))).is_none());
    }

    #[test]
    fn a_request_overrides_the_image_field_by_field() {
        let image = Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval: 5_000_000_000,
            retries: 7,
            ..Default::default()
        };
        let request = Healthcheck {
            interval: 1_000_000_000,
            ..Default::default()
        };
        let merged = merge(Some(&image), Some(&request)).unwrap();
        assert_eq!(merged.test, image.test, "the image's test is inherited");
        assert_eq!(merged.interval(), Duration::from_secs(1));
        assert_eq!(merged.retries(), 7);
        assert_eq!(merged.timeout(), DEFAULT_TIMEOUT);
    }

    #[test]
    fn retries_failures_make_it_unhealthy_and_a_success_heals() {
        let c = Healthcheck {
            test: vec!["CMD".into(), "x".into()],
            retries: 2,
            ..Default::default()
        };
        let mut h = Health::starting();
        h.record(entry(1), &c, Duration::from_secs(1));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
        h.record(entry(1), &c, Duration::from_secs(2));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
        h.record(entry(0), &c, Duration::from_secs(3));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        for i in 0..10 {
            h.record(entry(0), &c, Duration::from_secs(4 + i));
        }
        assert_eq!(h.log.len(), LOG_ENTRIES);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_healthy_once() {
        let c = Healthcheck {
            test: vec!["CMD".into(), "x".into()],
            retries: 1,
            start_period: 10_000_000_000,
            ..Default::default()
        };
        let mut h = Health::starting();
        h.record(entry(1), &c, Duration::from_secs(1));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        h.record(entry(0), &c, Duration::from_secs(2));
        h.record(entry(1), &c, Duration::from_secs(3));
        assert_eq!(
            h.status,
            HealthStatus::Unhealthy,
            "once healthy, the start period no longer shields"
        );
    }

    #[test]
    fn image_config_healthchecks_parse_with_dockers_names() {
        let value = serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 2000000000, "Retries": 4});
        let parsed = Healthcheck::from_image_config(&value).unwrap();
        assert_eq!(parsed.interval(), Duration::from_secs(2));
        assert_eq!(parsed.retries(), 4);
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
    }
}

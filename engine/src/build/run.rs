//! RUN: one command in a container whose rootfs is the step's overlay.
//!
//! Mechanism: the same path a `berth run` takes, minus the monitor. The
//! build writes an OCI bundle (`config.json` from
//! [`crate::container::spec::runtime_spec`], docker's defaults: namespaces,
//! capabilities, masked paths, /proc, /dev, /sys mounts) whose `root.path`
//! is the step's merged overlay, then calls berth-runtime through
//! [`crate::container::runtime_bridge`] with a pipe as stdout and stderr.
//! The container's PID 1 is the build process's own child: its output is
//! copied to the build's output as it comes, `waitpid(2)` gives the exit
//! status, and the runtime deletes the container (cgroup, state) after.
//! The network is a private namespace with loopback only, unless the build
//! asked for the host's (`--network host`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::BuildError;
use crate::container::record::{ContainerRecord, HostConfig, RunConfig, State};
use crate::container::runtime_bridge::{self, ContainerStdio};
use crate::container::spec::{runtime_spec, StartContext, DEFAULT_PATH};
use crate::fsutil::atomic_write_json;
use crate::paths::Roots;

/// What to run and how.
pub struct RunRequest<'a> {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: &'a str,
    pub user: &'a str,
    pub host_network: bool,
}

/// Run `request` in `rootfs` (mounted) and stream its output to `out`.
/// Returns the exit status (128+N when killed by signal N).
pub fn run_in_container(
    roots: &Roots,
    rootfs: &Path,
    bundle: &Path,
    request: &RunRequest<'_>,
    out: &mut dyn Write,
) -> Result<i32, BuildError> {
    let id = crate::container::names::new_id();
    let setup = |what: &str| {
        let what = what.to_string();
        move |e: String| BuildError::Setup(format!("{what}: {e}"))
    };
    let user = berth_runtime::user::resolve_user(rootfs, request.user)
        .map_err(|e| BuildError::Setup(e.to_string()))?;
    let workdir = if request.working_dir.is_empty() {
        "/"
    } else {
        request.working_dir
    };
    create_workdir(rootfs, workdir).map_err(setup("creating the working directory"))?;
    let mut env = request.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let (path, args) = match request.args.split_first() {
        Some((path, args)) => (path.clone(), args.to_vec()),
        None => return Err(BuildError::Setup("RUN has no command".into())),
    };
    let record = ContainerRecord {
        id: id.clone(),
        name: format!("build-{}", &id[..12]),
        created: chrono::Utc::now(),
        image: String::new(),
        image_id: String::new(),
        config: RunConfig {
            path,
            args,
            env,
            working_dir: workdir.to_string(),
            user: request.user.to_string(),
            hostname: id[..12].to_string(),
            ..RunConfig::default()
        },
        host: HostConfig::default(),
        state: State::default(),
    };
    let ctx = StartContext {
        rootfs,
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids,
        home: user.home,
        cgroups_path: crate::container::bundle::cgroups_path(&id),
        init_binary: None,
        extra_mounts: Vec::new(),
        netns_path: request
            .host_network
            .then(|| format!("/proc/{}/ns/net", std::process::id())),
    };
    let spec = runtime_spec(&record, &ctx)
        .map_err(|e| BuildError::Setup(format!("building the OCI spec: {e}")))?;
    let config = bundle.join("config.json");
    atomic_write_json(&config, &spec)
        .map_err(|e| BuildError::Setup(format!("writing {}: {e}", config.display())))?;

    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| BuildError::Setup(format!("pipe: {e}")))?;
    let stderr = write_end
        .try_clone()
        .map_err(|e| BuildError::Setup(format!("dup: {e}")))?;
    let stdin = OwnedFd::from(
        File::open("/dev/null").map_err(|e| BuildError::Setup(format!("/dev/null: {e}")))?,
    );
    let stdio = ContainerStdio::Pipes {
        stdin,
        stdout: write_end,
        stderr,
    };
    let runtime_root = roots.runtime();
    tracing::debug!(id = %id, rootfs = %rootfs.display(), "RUN: starting the build container");
    let launched = match runtime_bridge::create_and_start(&runtime_root, &id, bundle, stdio) {
        Ok(launched) => launched,
        Err(err) => {
            let _ = runtime_bridge::delete(&runtime_root, &id);
            return Err(BuildError::Launch {
                code: err.exit_code(),
                message: err.to_string(),
            });
        }
    };
    let mut output = File::from(read_end);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match output.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the RUN output");
                break;
            }
        }
    }
    let status = loop {
        match waitpid(Pid::from_raw(launched.pid), None) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                let _ = runtime_bridge::delete(&runtime_root, &id);
                return Err(BuildError::Setup(format!(
                    "waiting for the RUN container: {e}"
                )));
            }
        }
    };
    if let Err(e) = runtime_bridge::delete(&runtime_root, &id) {
        tracing::warn!(id = %id, error = %e, "deleting the build container");
    }
    tracing::debug!(id = %id, status, "RUN: finished");
    Ok(status)
}

/// Create a missing working directory inside the rootfs, by fd.
fn create_workdir(rootfs: &Path, workdir: &str) -> Result<(), String> {
    use rustix::fs::{Mode, OFlags};
    use std::os::fd::AsFd;
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open rootfs {}: {e}", rootfs.display()))?;
    berth_runtime::beneath::mkdir_all_beneath(
        root.as_fd(),
        Path::new(workdir),
        Mode::from_raw_mode(0o755),
    )
    .map(drop)
    .map_err(|e| format!("{workdir}: {e}"))
}

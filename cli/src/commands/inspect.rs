//! `berth inspect`: a container (or an image) as docker's JSON, or through a
//! `-f` template (`{{.State.ExitCode}}`).

use anyhow::bail;
use berth_engine::container::overlay::OverlayDirs;
use berth_engine::container::{lifecycle, ContainerRecord, ContainerStore, RestartPolicy};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use serde_json::{json, Value};

use super::images_bridge;
use crate::commands::Context;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format the output using a template ('{{.State.Status}}', '{{json .Config}}').
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only look for this kind of object: container or image.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Show a running container from the kernel's side: namespaces, cgroups, mounts, capabilities, seccomp, network.
    #[arg(long)]
    pub kernel: bool,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

pub fn run(args: InspectArgs, ctx: &Context) -> anyhow::Result<u8> {
    if args.kernel {
        return kernel(&args, ctx);
    }
    let mut objects = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match find(ctx, name, args.kind.as_deref()) {
            Ok(object) => objects.push(object),
            Err(err) => {
                eprintln!("berth: {err:#}");
                failed = true;
            }
        }
    }
    match &args.format {
        Some(template) => {
            for object in &objects {
                println!("{}", crate::template::render(template, object)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(objects))?),
    }
    Ok(if failed { 1 } else { 0 })
}

/// `--kernel`: the report of super::kernel_inspect for each container.
fn kernel(args: &InspectArgs, ctx: &Context) -> anyhow::Result<u8> {
    if args.kind.as_deref().is_some_and(|k| k != "container") {
        bail!("--kernel shows containers only");
    }
    let mut failed = false;
    for (i, name) in args.names.iter().enumerate() {
        let report = lifecycle::find(&ctx.roots, name)
            .map_err(anyhow::Error::from)
            .and_then(|record| super::kernel_inspect::report(&record));
        match (report, &args.format) {
            (Ok(report), Some(template)) => {
                println!("{}", crate::template::render(template, &report)?)
            }
            (Ok(report), None) => {
                if i > 0 {
                    println!();
                }
                print!("{}", super::kernel_inspect::render(&report));
            }
            (Err(err), _) => {
                eprintln!("berth: {err:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn find(ctx: &Context, name: &str, kind: Option<&str>) -> anyhow::Result<Value> {
    match kind {
        None | Some("container") => match lifecycle::find(&ctx.roots, name) {
            Ok(record) => return Ok(container_json(&record, ctx)),
            Err(err) if kind.is_some() => return Err(err.into()),
            Err(_) => {}
        },
        Some("image") => {}
        Some(other) => bail!("invalid --type {other:?}: use container or image"),
    }
    images_bridge::inspect_json(ctx, name).map_err(|_| anyhow::anyhow!("No such object: {name}"))
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string())
}

/// docker's shape of `inspect CONTAINER`.
pub fn container_json(record: &ContainerRecord, ctx: &Context) -> Value {
    let store = ContainerStore::open(&ctx.roots).ok();
    let dir = store.map(|s| s.dir(&record.id)).unwrap_or_default();
    let overlay = OverlayDirs::new(&dir);
    let state = &record.state;
    let config = &record.config;
    let host = &record.host;
    let retries = match host.restart_policy {
        RestartPolicy::OnFailure { max_retries } => max_retries,
        _ => 0,
    };
    let exposed: serde_json::Map<String, Value> = config
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    json!({
        "Id": record.id,
        "Created": time(Some(record.created)),
        "Path": config.path,
        "Args": config.args,
        "State": {
            "Status": state.status.as_str(),
            "Running": state.status.is_active() && state.status != berth_engine::container::Status::Restarting,
            "Paused": state.status == berth_engine::container::Status::Paused,
            "Restarting": state.status == berth_engine::container::Status::Restarting,
            "OOMKilled": state.oom_killed,
            "Dead": state.status == berth_engine::container::Status::Dead,
            "Pid": state.pid.unwrap_or(0),
            // berth's addition: the container's monitor (0 when none runs).
            "MonitorPid": state.monitor_pid.filter(|_| berth_engine::container::monitor::is_alive(&ctx.roots, &record.id)).unwrap_or(0),
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": time(state.started_at),
            "FinishedAt": time(state.finished_at),
            // docker's {Status, FailingStreak, Log}; null without a healthcheck.
            "Health": state.health,
        },
        "Image": record.image_id,
        "LogPath": dir.join(format!("{}-json.log", record.id)),
        "Name": format!("/{}", record.name),
        "RestartCount": state.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Memory": host.memory,
            "MemorySwap": host.memory_swap,
            "NanoCpus": host.nano_cpus,
            "CpuShares": host.cpu_shares,
            "PidsLimit": host.pids_limit,
            "ReadonlyRootfs": host.read_only_rootfs,
            "Init": host.init,
            "AutoRemove": host.auto_remove,
            "NetworkMode": host.network_mode,
            "PortBindings": super::networks::port_bindings_json(record),
            "PublishAllPorts": host.publish_all,
            "RestartPolicy": {"Name": host.restart_policy.name(), "MaximumRetryCount": retries},
            "Privileged": host.security.privileged,
            "CapAdd": host.security.cap_add,
            "CapDrop": host.security.cap_drop,
            "SecurityOpt": host.security.security_opt_for_inspect(),
            "Devices": host.security.devices,
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                // The image's layer directories, top first, as overlayfs takes them.
                "LowerDir": berth_engine::container::image_layers(&ctx.roots, &record.image_id)
                    .map(|dirs| dirs.iter().rev().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"))
                    .unwrap_or_default(),
                "UpperDir": overlay.upper,
                "WorkDir": overlay.work,
                "MergedDir": overlay.merged,
            },
        },
        "Mounts": super::volumes::mounts_json(record, ctx),
        "Config": {
            "Hostname": config.hostname,
            "User": config.user,
            "AttachStdin": config.attach_stdin,
            "AttachStdout": config.attach_stdout,
            "AttachStderr": config.attach_stderr,
            "Tty": config.tty,
            "OpenStdin": config.open_stdin,
            "Env": config.env,
            "Cmd": config.cmd,
            "Entrypoint": if config.entrypoint.is_empty() { Value::Null } else { json!(config.entrypoint) },
            "Image": record.image,
            "WorkingDir": config.working_dir,
            "Labels": config.labels,
            "StopSignal": config.stop_signal,
            "StopTimeout": config.stop_timeout,
            "Healthcheck": config.healthcheck,
            "ExposedPorts": exposed,
        },
        "NetworkSettings": super::networks::network_settings_json(record),
    })
}

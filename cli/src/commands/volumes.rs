//! `berth volume create|ls|inspect|rm|prune`, with docker's output, and the
//! `Mounts` section of `berth inspect CONTAINER`.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use anyhow::bail;
use berth_engine::container::ContainerRecord;
use berth_engine::volume::{MountKind, VolumeRecord, VolumeStore};
use chrono::SecondsFormat;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::run_flags::parse_labels;
use super::Context;
use crate::format::{human_size, table};

/// `berth volume ...`
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    #[command(
        after_help = "Example:\n  berth volume create data\n  berth run -v data:/var/lib/db busybox"
    )]
    Create(CreateArgs),
    /// List volumes
    #[command(
        visible_alias = "list",
        after_help = "Example:\n  berth volume ls --filter dangling=true"
    )]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    #[command(after_help = "Example:\n  berth volume inspect -f '{{.Mountpoint}}' data")]
    Inspect(InspectArgs),
    /// Remove one or more volumes (a volume in use by a container is refused)
    #[command(
        visible_alias = "remove",
        after_help = "Example:\n  berth volume rm data"
    )]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (with --all: every unused volume)
    #[command(after_help = "Examples:\n  berth volume prune -f\n  berth volume prune --all -f")]
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Set metadata for a volume (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Specify the volume driver name (only "local").
    #[arg(short = 'd', long = "driver", default_value = "local")]
    pub driver: String,
    /// The volume's name (a random one when omitted).
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display volume names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output (dangling=true|false, name=TEXT, label=KEY[=VALUE]).
    #[arg(short, long = "filter")]
    pub filters: Vec<String>,
    /// Format output: json or a template ('{{.Name}}').
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format the output using a template.
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not fail when a volume does not exist.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every unused volume, not only anonymous ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(command: VolumeCommand, ctx: &Context) -> anyhow::Result<u8> {
    let store = VolumeStore::open(&ctx.roots)?;
    match command {
        VolumeCommand::Create(args) => {
            if args.driver != "local" {
                bail!(
                    "volume driver {:?} is not available: berth has only \"local\"",
                    args.driver
                );
            }
            let volume = store.create(args.name.as_deref(), parse_labels(&args.labels)?)?;
            println!("{}", volume.name);
            Ok(0)
        }
        VolumeCommand::Ls(args) => list(&store, args),
        VolumeCommand::Inspect(args) => inspect(&store, args),
        VolumeCommand::Rm(args) => {
            let mut failed = false;
            for name in &args.names {
                match store.remove(name, args.force) {
                    Ok(()) => println!("{name}"),
                    Err(err) => {
                        eprintln!("berth: {err}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        VolumeCommand::Prune(args) => prune(&store, args),
    }
}

fn volume_json(store: &VolumeStore, volume: &VolumeRecord) -> Value {
    json!({
        "CreatedAt": volume.created.to_rfc3339_opts(SecondsFormat::Secs, true),
        "Driver": volume.driver,
        "Labels": volume.labels,
        "Mountpoint": store.mountpoint(&volume.name),
        "Name": volume.name,
        "Options": {},
        "Scope": "local",
    })
}

fn list(store: &VolumeStore, args: LsArgs) -> anyhow::Result<u8> {
    let mut volumes = store.list()?;
    for filter in &args.filters {
        let (key, value) = filter.split_once('=').unwrap_or((filter.as_str(), ""));
        match key {
            "dangling" => {
                let want = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("invalid filter {filter:?}: dangling takes true or false"),
                };
                let mut kept = Vec::new();
                for v in volumes {
                    if store.users(&v.name)?.is_empty() == want {
                        kept.push(v);
                    }
                }
                volumes = kept;
            }
            "name" => volumes.retain(|v| v.name.contains(value)),
            "label" => {
                let (k, val) = value
                    .split_once('=')
                    .map_or((value, None), |(k, v)| (k, Some(v)));
                volumes.retain(|v| match (v.labels.get(k), val) {
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have == want,
                    (None, _) => false,
                });
            }
            other => bail!("invalid filter {other:?}: use dangling, name or label"),
        }
    }
    if args.quiet {
        for v in &volumes {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    match args.format.as_deref() {
        Some("json") => {
            for v in &volumes {
                println!(
                    "{}",
                    json!({"Driver": v.driver, "Name": v.name, "Mountpoint": store.mountpoint(&v.name), "Scope": "local"})
                );
            }
        }
        Some(template) => {
            for v in &volumes {
                let data = json!({"Driver": v.driver, "Name": v.name, "Mountpoint": store.mountpoint(&v.name), "Scope": "local", "Labels": v.labels});
                println!("{}", crate::template::render(template, &data)?);
            }
        }
        None => {
            let rows: Vec<Vec<String>> = volumes
                .iter()
                .map(|v| vec![v.driver.clone(), v.name.clone()])
                .collect();
            print!("{}", table(&["DRIVER", "VOLUME NAME"], &rows));
        }
    }
    Ok(0)
}

fn inspect(store: &VolumeStore, args: InspectArgs) -> anyhow::Result<u8> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match store.get(name) {
            Ok(volume) => found.push(volume_json(store, &volume)),
            Err(err) => {
                eprintln!("berth: {err}");
                failed = true;
            }
        }
    }
    match &args.format {
        Some(template) => {
            for volume in &found {
                println!("{}", crate::template::render(template, volume)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(found))?),
    }
    Ok(if failed { 1 } else { 0 })
}

fn prune(store: &VolumeStore, args: PruneArgs) -> anyhow::Result<u8> {
    if !args.force {
        let what = if args.all {
            "all local volumes not used by at least one container"
        } else {
            "anonymous local volumes not used by at least one container"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        io::stderr().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let sizes: BTreeMap<String, u64> = store
        .list()?
        .into_iter()
        .map(|v| (v.name.clone(), store.size(&v.name)))
        .collect();
    let removed = store.prune(args.all)?;
    let reclaimed: u64 = removed.iter().filter_map(|n| sizes.get(n)).sum();
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for name in &removed {
            println!("{name}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

/// The `Mounts` of `inspect CONTAINER`, in docker's shape.
pub fn mounts_json(record: &ContainerRecord, ctx: &Context) -> Value {
    let store = VolumeStore::open(&ctx.roots).ok();
    let mounts: Vec<Value> = record
        .host
        .mounts
        .iter()
        .map(|m| match m.kind {
            MountKind::Bind => json!({
                "Type": "bind",
                "Source": m.source,
                "Destination": m.target,
                "Mode": if m.read_only { "ro" } else { "" },
                "RW": !m.read_only,
                "Propagation": m.propagation.clone().unwrap_or_else(|| "rprivate".into()),
            }),
            MountKind::Volume => json!({
                "Type": "volume",
                "Name": m.source,
                "Source": store.as_ref().map(|s| s.mountpoint(&m.source)).unwrap_or_default(),
                "Destination": m.target,
                "Driver": "local",
                "Mode": if m.read_only { "ro" } else { "z" },
                "RW": !m.read_only,
                "Propagation": "",
            }),
            MountKind::Tmpfs => json!({
                "Type": "tmpfs",
                "Source": "",
                "Destination": m.target,
                "Mode": m.options.join(","),
                "RW": !m.read_only,
                "Propagation": "",
            }),
        })
        .collect();
    Value::Array(mounts)
}

//! `berth info`, `berth version`, `berth system df`, `berth system prune`.
//!
//! `info` reads the host the way the engine sees it: the cgroup layout
//! (`statfs` on /sys/fs/cgroup, as the runtime detects it), the kernel
//! (`uname`), memory and CPUs (`sysinfo`, `sched_getaffinity`), the backing
//! filesystem of `--root` (`statfs`). `system df` adds up the store. `system
//! prune` removes what docker's does — stopped containers, unused networks,
//! dangling (with `-a`: unused) images, the build cache, with `--volumes`
//! unused anonymous volumes — and also sweeps what a killed `berth` command
//! can leave behind: a runtime state and cgroup without a container, a
//! monitor's state directory without its container, a name link without its
//! container.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use berth_engine::container::{lifecycle, monitor, ContainerStore};
use berth_engine::image::{ImageStore, Removal};
use berth_engine::paths::Roots;
use berth_engine::volume::VolumeStore;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::commands::Context;
use crate::format::{human_size, table};

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Display system-wide information.
    #[command(after_help = "Example:\n  berth system info -f '{{.CgroupVersion}}'")]
    Info(FormatArgs),
    /// Show berth disk usage.
    #[command(after_help = "Example:\n  berth system df")]
    Df(DfArgs),
    /// Remove unused data.
    #[command(
        after_help = "Examples:\n  berth system prune -f\n  berth system prune -a --volumes -f"
    )]
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Format the output using a template ('{{.CgroupVersion}}') or `json`.
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Format the output using a template or `json`.
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Prune anonymous volumes.
    #[arg(long)]
    pub volumes: bool,
}

pub fn run(command: SystemCommand, ctx: &Context) -> anyhow::Result<u8> {
    match command {
        SystemCommand::Info(args) => info(args, ctx),
        SystemCommand::Df(args) => df(args, ctx),
        SystemCommand::Prune(args) => prune(args, ctx),
    }
}

/// Print `data` with `--format` (a template, or `json`), else with `text`.
fn output(
    format: Option<&str>,
    data: &Value,
    text: impl FnOnce(&Value) -> String,
) -> anyhow::Result<u8> {
    match format {
        Some("json") => println!("{}", serde_json::to_string(data)?),
        Some(template) => println!("{}", crate::template::render(template, data)?),
        None => print!("{}", text(data)),
    }
    Ok(0)
}

// ---- version ----------------------------------------------------------

/// `berth version`.
pub fn version(args: FormatArgs) -> anyhow::Result<u8> {
    let data = json!({
        "Client": {
            "Platform": {"Name": "berth"},
            "Version": env!("CARGO_PKG_VERSION"),
            "Os": std::env::consts::OS,
            "Arch": berth_engine::security::seccomp_profile::go_arch(std::env::consts::ARCH),
            "Runtime": {
                "Name": "berth-runtime",
                "Version": env!("CARGO_PKG_VERSION"),
                "OciRuntimeSpec": berth_runtime::state::OCI_VERSION,
            },
            "Daemon": false,
        },
    });
    output(args.format.as_deref(), &data, |d| {
        let c = &d["Client"];
        format!(
            "Client: berth\n Version:           {}\n OS/Arch:           {}/{}\n Runtime:           {} {} (in-process library, OCI runtime spec {})\n Daemon:            none (berth is daemonless: each command does its work, a monitor per container)\n",
            s(&c["Version"]),
            s(&c["Os"]),
            s(&c["Arch"]),
            s(&c["Runtime"]["Name"]),
            s(&c["Runtime"]["Version"]),
            s(&c["Runtime"]["OciRuntimeSpec"]),
        )
    })
}

fn s(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

// ---- info -------------------------------------------------------------

/// `berth info` / `berth system info`.
pub fn info(args: FormatArgs, ctx: &Context) -> anyhow::Result<u8> {
    let data = info_data(&ctx.roots)?;
    output(args.format.as_deref(), &data, info_text)
}

fn info_data(roots: &Roots) -> anyhow::Result<Value> {
    let containers = lifecycle::list(roots)?;
    let running = containers
        .iter()
        .filter(|c| c.state.status.as_str() == "running")
        .count();
    let paused = containers
        .iter()
        .filter(|c| c.state.status.as_str() == "paused")
        .count();
    let images = ImageStore::open(roots)?.list()?.len();
    let (cgroup_version, cgroup_note) = match berth_runtime::cgroups::detect() {
        Ok(berth_runtime::cgroups::CgroupLayout::V1) => ("1", String::new()),
        Ok(berth_runtime::cgroups::CgroupLayout::V2) => ("2", String::new()),
        Ok(berth_runtime::cgroups::CgroupLayout::Hybrid { unified }) => (
            "1",
            format!("hybrid: v1 controllers, cgroup2 at {}", unified.display()),
        ),
        Err(err) => ("unknown", err.to_string()),
    };
    let uname = nix::sys::utsname::uname().context("uname")?;
    let mut security_options = Vec::new();
    if seccomp_available() {
        security_options.push("name=seccomp,profile=builtin".to_string());
    }
    security_options.push("name=no-new-privileges,default=off".to_string());
    security_options.push("name=cgroupns".to_string());
    Ok(json!({
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", backing_filesystem(&roots.root)]],
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "CgroupLayout": cgroup_note,
        "Runtimes": {"berth-runtime": {"path": "(built in)"}},
        "DefaultRuntime": "berth-runtime",
        "SecurityOptions": security_options,
        "KernelVersion": uname.release().to_string_lossy(),
        "OperatingSystem": operating_system(),
        "OSType": uname.sysname().to_string_lossy().to_ascii_lowercase(),
        "Architecture": uname.machine().to_string_lossy(),
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": total_memory(),
        "Name": uname.nodename().to_string_lossy(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "RootDir": roots.root,
        "StateDir": roots.state,
    }))
}

fn info_text(d: &Value) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line("Client: berth".into());
    line(format!(" Version:    {}", s(&d["ServerVersion"])));
    line(String::new());
    line("Engine:".into());
    line(format!(" Containers: {}", d["Containers"]));
    line(format!("  Running: {}", d["ContainersRunning"]));
    line(format!("  Paused: {}", d["ContainersPaused"]));
    line(format!("  Stopped: {}", d["ContainersStopped"]));
    line(format!(" Images: {}", d["Images"]));
    line(format!(" Storage Driver: {}", s(&d["Driver"])));
    for pair in d["DriverStatus"].as_array().into_iter().flatten() {
        line(format!("  {}: {}", s(&pair[0]), s(&pair[1])));
    }
    line(format!(" Logging Driver: {}", s(&d["LoggingDriver"])));
    line(format!(" Cgroup Driver: {}", s(&d["CgroupDriver"])));
    line(format!(" Cgroup Version: {}", s(&d["CgroupVersion"])));
    if !s(&d["CgroupLayout"]).is_empty() {
        line(format!("  Layout: {}", s(&d["CgroupLayout"])));
    }
    line(" Runtimes: berth-runtime (built in)".into());
    line(format!(" Default Runtime: {}", s(&d["DefaultRuntime"])));
    line(" Security Options:".into());
    for option in d["SecurityOptions"].as_array().into_iter().flatten() {
        let text = s(option);
        let mut fields = text.split(',');
        let name = fields.next().unwrap_or_default();
        line(format!("  {}", name.trim_start_matches("name=")));
        for field in fields {
            if let Some((key, value)) = field.split_once('=') {
                let mut key = key.to_string();
                key[..1].make_ascii_uppercase();
                line(format!("   {key}: {value}"));
            }
        }
    }
    line(format!(" Kernel Version: {}", s(&d["KernelVersion"])));
    line(format!(" Operating System: {}", s(&d["OperatingSystem"])));
    line(format!(" OSType: {}", s(&d["OSType"])));
    line(format!(" Architecture: {}", s(&d["Architecture"])));
    line(format!(" CPUs: {}", d["NCPU"]));
    line(format!(
        " Total Memory: {}",
        crate::format::binary_size(d["MemTotal"].as_u64().unwrap_or(0))
    ));
    line(format!(" Name: {}", s(&d["Name"])));
    line(format!(" Root Dir: {}", s(&d["RootDir"])));
    line(format!(" State Dir: {}", s(&d["StateDir"])));
    out
}

/// Whether the kernel has seccomp filters (the `Seccomp:` line of /proc/self/status).
fn seccomp_available() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.contains("\nSeccomp:"))
}

/// PRETTY_NAME of /etc/os-release.
fn operating_system() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn total_memory() -> u64 {
    nix::sys::sysinfo::sysinfo()
        .map(|info| info.ram_total())
        .unwrap_or(0)
}

/// The filesystem under `--root`, named as docker names it.
fn backing_filesystem(root: &Path) -> String {
    let dir = if root.exists() { root } else { Path::new("/") };
    let Ok(stat) = nix::sys::statfs::statfs(dir) else {
        return "unknown".into();
    };
    match stat.filesystem_type().0 as u64 {
        0xEF53 => "extfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6573_5546 => "fuse".into(),
        other => format!("{other:#x}"),
    }
}

// ---- df ---------------------------------------------------------------

/// Sizes of one `system df` row.
#[derive(Debug, Default)]
struct Usage {
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
}

impl Usage {
    fn row(&self, kind: &str) -> Vec<String> {
        let percent = (self.reclaimable * 100).checked_div(self.size).unwrap_or(0);
        vec![
            kind.to_string(),
            self.total.to_string(),
            self.active.to_string(),
            human_size(self.size),
            format!("{} ({percent}%)", human_size(self.reclaimable)),
        ]
    }

    fn json(&self, kind: &str) -> Value {
        json!({"Type": kind, "TotalCount": self.total, "Active": self.active,
               "Size": human_size(self.size), "Reclaimable": human_size(self.reclaimable),
               "SizeBytes": self.size, "ReclaimableBytes": self.reclaimable})
    }
}

/// `berth system df`.
fn df(args: DfArgs, ctx: &Context) -> anyhow::Result<u8> {
    let roots = &ctx.roots;
    let containers = lifecycle::list(roots)?;
    let store = ContainerStore::open(roots)?;

    // Images: a layer shared by several images is counted once.
    let images = ImageStore::open(roots)?.list()?;
    let used_ids: HashSet<String> = containers.iter().map(|c| c.image_id.clone()).collect();
    let mut layer_size: HashMap<String, u64> = HashMap::new();
    let mut active_layers: HashSet<String> = HashSet::new();
    let mut image_usage = Usage {
        total: images.len(),
        ..Default::default()
    };
    for image in &images {
        let active = used_ids.contains(image.id.as_str());
        if active {
            image_usage.active += 1;
        }
        for layer in &image.layers {
            layer_size.insert(layer.chain_id.to_string(), layer.size);
            if active {
                active_layers.insert(layer.chain_id.to_string());
            }
        }
    }
    image_usage.size = layer_size.values().sum();
    image_usage.reclaimable = layer_size
        .iter()
        .filter(|(chain, _)| !active_layers.contains(*chain))
        .map(|(_, size)| size)
        .sum();

    // Containers: what each wrote (its overlay upper directory).
    let mut container_usage = Usage {
        total: containers.len(),
        ..Default::default()
    };
    for record in &containers {
        let size = tree_size(&store.dir(&record.id).join("upper"));
        container_usage.size += size;
        if record.state.status.is_active() {
            container_usage.active += 1;
        } else {
            container_usage.reclaimable += size;
        }
    }

    // Volumes.
    let volumes = VolumeStore::open(roots)?;
    let mut volume_usage = Usage::default();
    for volume in volumes.list()? {
        let size = volumes.size(&volume.name);
        volume_usage.total += 1;
        volume_usage.size += size;
        if volumes.users(&volume.name)?.is_empty() {
            volume_usage.reclaimable += size;
        } else {
            volume_usage.active += 1;
        }
    }

    // Build cache: the step index (its layers belong to the image store).
    let cache_dir = roots.root.join("build-cache");
    let cache_entries = read_dir_paths(&cache_dir);
    let cache_usage = Usage {
        total: cache_entries.len(),
        active: 0,
        size: tree_size(&cache_dir),
        reclaimable: tree_size(&cache_dir),
    };

    let rows = [
        ("Images", &image_usage),
        ("Containers", &container_usage),
        ("Local Volumes", &volume_usage),
        ("Build Cache", &cache_usage),
    ];
    match args.format.as_deref() {
        Some(format) => {
            for (kind, usage) in rows {
                let data = usage.json(kind);
                if format == "json" {
                    println!("{}", serde_json::to_string(&data)?);
                } else {
                    println!("{}", crate::template::render(format, &data)?);
                }
            }
        }
        None => {
            let rows: Vec<Vec<String>> = rows.iter().map(|(k, u)| u.row(k)).collect();
            print!(
                "{}",
                table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
            );
        }
    }
    Ok(0)
}

/// Bytes of file content below `dir`, each inode once (hard links).
fn tree_size(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            stack.extend(read_dir_paths(&path));
        } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    }
    total
}

fn read_dir_paths(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

// ---- prune ------------------------------------------------------------

/// `berth system prune`.
fn prune(args: PruneArgs, ctx: &Context) -> anyhow::Result<u8> {
    if !args.force && !confirm(&args)? {
        return Ok(0);
    }
    let roots = &ctx.roots;
    let mut reclaimed: u64 = 0;

    // Leftovers of killed commands first: they may hold containers "running".
    let swept = sweep_leftovers(roots)?;

    let store = ContainerStore::open(roots)?;
    let mut deleted_containers = Vec::new();
    for record in lifecycle::list(roots)? {
        if record.state.status.is_active() {
            continue;
        }
        let size = tree_size(&store.dir(&record.id).join("upper"));
        match lifecycle::remove(roots, &record.id, false) {
            Ok(_) => {
                reclaimed += size;
                deleted_containers.push(record.id);
            }
            Err(lifecycle::LifecycleError::RemoveRunning(_)) => {}
            Err(err) => eprintln!("berth: {err}"),
        }
    }
    print_section("Deleted Containers:", &deleted_containers);

    let options = berth_engine::network::NetworkOptions::from_env()?;
    let networks = berth_engine::network::manage::prune_networks(roots, &options)?;
    print_section("Deleted Networks:", &networks);

    if args.volumes {
        let volumes = VolumeStore::open(roots)?;
        let sizes: BTreeMap<String, u64> = volumes
            .list()?
            .into_iter()
            .map(|v| (v.name.clone(), volumes.size(&v.name)))
            .collect();
        let removed = volumes.prune(false)?;
        reclaimed += removed.iter().filter_map(|n| sizes.get(n)).sum::<u64>();
        print_section("Deleted Volumes:", &removed);
    }

    let (image_lines, image_bytes) = prune_images(roots, args.all)?;
    reclaimed += image_bytes;
    print_section("Deleted Images:", &image_lines);

    let cache_dir = roots.root.join("build-cache");
    let cache_entries = read_dir_paths(&cache_dir);
    if !cache_entries.is_empty() {
        reclaimed += tree_size(&cache_dir);
        for entry in &cache_entries {
            let _ = std::fs::remove_file(entry);
        }
        println!("Deleted build cache objects: {}\n", cache_entries.len());
    }
    print_section("Cleaned up after interrupted commands:", &swept);
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

fn print_section(title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    println!("{title}");
    for line in lines {
        println!("{line}");
    }
    println!();
}

/// docker's warning and question.
fn confirm(args: &PruneArgs) -> anyhow::Result<bool> {
    let mut text = String::from("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n");
    if args.volumes {
        text.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    text.push_str(if args.all {
        "  - all images without at least one container associated to them\n"
    } else {
        "  - all dangling images\n"
    });
    text.push_str("  - unused build cache\n\nAre you sure you want to continue? [y/N] ");
    print!("{text}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Remove dangling images (no tag), or with `all` every image no container
/// uses; docker's "untagged:"/"deleted:" lines and the bytes freed.
fn prune_images(roots: &Roots, all: bool) -> anyhow::Result<(Vec<String>, u64)> {
    let images = ImageStore::open(roots)?;
    let list = images.list()?;
    let sizes: HashMap<String, u64> = list
        .iter()
        .flat_map(|i| i.layers.iter())
        .map(|l| (l.chain_id.to_string(), l.size))
        .collect();
    let mut lines = Vec::new();
    let mut bytes = 0;
    for image in list {
        if !all && !image.repo_tags.is_empty() {
            continue;
        }
        if !berth_engine::container::users_of_image(roots, image.id.as_str())?.is_empty() {
            continue;
        }
        match images.remove(image.id.as_str(), true) {
            Ok(removals) => {
                for removal in removals {
                    match removal {
                        Removal::Untagged(name) => lines.push(format!("untagged: {name}")),
                        Removal::Deleted(digest) => {
                            bytes += sizes.get(&digest).copied().unwrap_or(0);
                            lines.push(format!("deleted: {digest}"));
                        }
                    }
                }
            }
            Err(err) => eprintln!("berth: {err}"),
        }
    }
    Ok((lines, bytes))
}

/// How long a container directory without a record is left alone: it may be
/// a `create` in progress (the record follows the directory within
/// microseconds; a minute is generous).
const CREATE_GRACE: Duration = Duration::from_secs(60);

/// Clean what killed commands leave behind; one line per thing cleaned.
///
/// - every record is reconciled (a "running" container whose monitor and
///   PID 1 are gone is marked exited, its runtime state and cgroup deleted);
/// - a runtime state (and its cgroup) with no container record — a build
///   step's container whose `berth build` was killed, or a `create` killed
///   half-way — is deleted once no live berth process owns it (its PID 1
///   is gone, or was orphaned to a process that is not berth);
/// - a monitor state directory whose container is gone and whose monitor is
///   dead is removed;
/// - the work directory of a build that died (its lock is free) is removed;
/// - a container directory without a record, older than [`CREATE_GRACE`],
///   and a name link whose container is gone, are removed.
pub fn sweep_leftovers(roots: &Roots) -> anyhow::Result<Vec<String>> {
    let mut cleaned = Vec::new();
    let records = lifecycle::list(roots)?;
    let known: HashMap<&str, bool> = records
        .iter()
        .map(|r| (r.id.as_str(), r.state.status.is_active()))
        .collect();

    let runtime_root = roots.runtime();
    for id in dir_names(&runtime_root) {
        let active_record = known.get(id.as_str()).copied();
        // A live monitor owns its container's runtime state, even while the
        // record still says "created" (a start in progress).
        if active_record == Some(true) || monitor::is_alive(roots, &id) {
            continue;
        }
        let orphaned = match berth_runtime::state(&runtime_root, &id) {
            Ok(state) if state.status == berth_runtime::Status::Stopped => true,
            Ok(state) => active_record.is_some() || !owned_by_live_berth(state.pid),
            Err(berth_runtime::Error::NotFound(_)) => true,
            Err(err) => {
                tracing::debug!(%id, %err, "unreadable runtime state");
                true
            }
        };
        if !orphaned {
            continue;
        }
        match berth_runtime::delete(&runtime_root, &id, true) {
            Ok(()) | Err(berth_runtime::Error::NotFound(_)) => {
                destroy_cgroup(&id);
                cleaned.push(format!("runtime state and cgroup of {}", short(&id)));
            }
            Err(err) => eprintln!("berth: cleaning up runtime state {}: {err}", short(&id)),
        }
    }

    for id in dir_names(&roots.run_containers()) {
        if known.contains_key(id.as_str()) || monitor::is_alive(roots, &id) {
            continue;
        }
        if std::fs::remove_dir_all(monitor::state_dir(roots, &id)).is_ok() {
            cleaned.push(format!("monitor state of removed container {}", short(&id)));
        }
    }

    let containers_dir = roots.containers();
    for id in dir_names(&containers_dir) {
        let dir = containers_dir.join(&id);
        if known.contains_key(id.as_str())
            || dir.join(berth_engine::container::RECORD_FILE).exists()
        {
            continue;
        }
        if older_than(&dir, CREATE_GRACE) && std::fs::remove_dir_all(&dir).is_ok() {
            cleaned.push(format!(
                "directory of a half-created container {}",
                short(&id)
            ));
        }
    }

    // Work directories of builds that died: a live build holds the flock of
    // its directory's `lock` file (see engine build::executor).
    for name in dir_names(&roots.tmp()) {
        if !name.starts_with("build-") {
            continue;
        }
        let dir = roots.tmp().join(&name);
        // Its lock is free, or its named owner is gone; a directory of an
        // older berth without an owner in its name goes after the grace time.
        let dead = berth_engine::build::executor::is_abandoned_work_dir(&dir)
            || (!dir.join("lock").exists() && older_than(&dir, CREATE_GRACE));
        if dead && std::fs::remove_dir_all(&dir).is_ok() {
            cleaned.push(format!("work directory of an interrupted build ({name})"));
        }
    }

    let names_dir = roots.root.join("names");
    for name in dir_names(&names_dir) {
        let link = names_dir.join(&name);
        let Ok(target) = std::fs::read_link(&link) else {
            continue;
        };
        if !containers_dir
            .join(&target)
            .join(berth_engine::container::RECORD_FILE)
            .exists()
            && std::fs::remove_file(&link).is_ok()
        {
            cleaned.push(format!("name {name} of a removed container"));
        }
    }
    Ok(cleaned)
}

fn older_than(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > age)
}

/// Is the process `pid` still the child of a living berth command? (A build
/// step's PID 1 is its `berth build`'s child; when that command is killed,
/// the kernel re-parents it to init or a subreaper.)
fn owned_by_live_berth(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let Some(ppid) = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return false;
    };
    if ppid <= 1 {
        return false;
    }
    let same_binary = |a: &str, b: &str| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    std::fs::read_to_string(format!("/proc/{ppid}/comm")).is_ok_and(|c| c.trim() == "berth")
        || same_binary("/proc/self/exe", &format!("/proc/{ppid}/exe"))
}

/// Remove the cgroup `/berth/<id>` of a container whose runtime state is
/// gone (a `create` killed between making the cgroup and writing its state).
fn destroy_cgroup(id: &str) {
    let path = berth_engine::container::bundle::cgroups_path(id);
    if let Ok(manager) = berth_runtime::cgroups::manager_for(Some(Path::new(&path)), id) {
        let _ = manager.kill_all(nix::sys::signal::Signal::SIGKILL);
        if let Err(err) = manager.destroy() {
            tracing::debug!(%id, %err, "cgroup not removed");
        }
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_rows_show_the_reclaimable_share() {
        let usage = Usage {
            total: 3,
            active: 1,
            size: 2000,
            reclaimable: 500,
        };
        assert_eq!(
            usage.row("Images"),
            vec!["Images", "3", "1", "2kB", "500B (25%)"]
        );
    }

    #[test]
    fn a_process_without_a_berth_parent_is_not_owned() {
        assert!(!owned_by_live_berth(1), "init's parent is 0");
        assert!(!owned_by_live_berth(i32::MAX), "no such process");
    }
}

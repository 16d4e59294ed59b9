//! `berth-runtime`: runc's command line over the berth-runtime crate, so that
//! podman (conmon), containerd's runc shim and the OCI validation tools can
//! drive berth's runtime as they drive runc.
//!
//! Every verb is a thin call into the library; errors go to stderr and, with
//! `--log FILE --log-format json`, to the log file as runc writes them.

mod foreground;
mod logging;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use berth_runtime::{self as rt, Console, CreateOptions, ExecOptions, Stdio};
use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Process};

use logging::{LogFormat, Logger};

#[derive(Parser, Debug)]
#[command(
    name = "berth-runtime",
    about = "berth's OCI runtime, with runc's command line",
    disable_version_flag = true
)]
struct Cli {
    /// Directory for the containers' state.
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Write log messages (and errors) to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log every step of container construction.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (not supported: berth drives cgroupfs).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Run the program of a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init, or with --all to every process.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a stopped (or, with --force, any) container.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run a new process inside a running container.
    Exec(ExecArgs),
    /// List containers.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the processes of a container (`--format json`: host pids).
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Options for ps(1) in table format (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Print what this runtime supports (OCI features JSON).
    Features,
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
    /// Change a container's resource limits.
    Update {
        /// A JSON file of linux.resources ("-" for stdin).
        #[arg(short, long)]
        resources: Option<PathBuf>,
        #[arg(long)]
        memory: Option<i64>,
        #[arg(long = "pids-limit")]
        pids_limit: Option<i64>,
        id: String,
    },
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// The bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket to send the pty master to (process.terminal).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for compatibility: no session keyring is created.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass fds 3 .. 3+N to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(clap::Args, Debug)]
struct ExecArgs {
    /// A JSON file with the process (config.json's "process" object).
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    #[arg(short, long)]
    env: Vec<String>,
    #[arg(short, long)]
    tty: bool,
    /// UID[:GID]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Add a capability to the process's sets.
    #[arg(short, long)]
    cap: Vec<String>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long = "process-label", hide = true)]
    process_label: Option<String>,
    #[arg(long, hide = true)]
    apparmor: Option<String>,
    #[arg(long = "ignore-paused", hide = true)]
    ignore_paused: bool,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logger = Logger::init(cli.log.as_deref(), cli.log_format, cli.debug);
    if cli.version {
        println!(
            "berth-runtime version {}\nspec: {}",
            env!("CARGO_PKG_VERSION"),
            rt::state::OCI_VERSION
        );
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            logger.error(&format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    let Some(command) = cli.command else {
        bail!("no command given: try `berth-runtime --help`");
    };
    if cli.systemd_cgroup {
        bail!(
            "--systemd-cgroup is not supported: berth-runtime manages cgroupfs itself; run without it (containerd: SystemdCgroup = false, podman: cgroup_manager = \"cgroupfs\")"
        );
    }
    // Verbs that put processes into a container run from a read-only view
    // of this binary, so no container can overwrite it (CVE-2019-5736; see
    // the runtime's sealed_exe module). The re-executed process starts over
    // from main with the same arguments.
    if matches!(
        command,
        Command::Create(_) | Command::Run { .. } | Command::Exec(_)
    ) {
        rt::sealed_exe::reexec_protected()?;
    }
    let root = cli.root.as_path();
    match command {
        Command::Create(args) => {
            rt::create(create_options(&args, root))?;
            Ok(0)
        }
        Command::Start { id } => {
            rt::start(root, &id)?;
            Ok(0)
        }
        Command::State { id } => {
            let state = rt::state(root, &id)?;
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let signal = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            rt::kill(root, &id, signal, all)?;
            Ok(0)
        }
        Command::Delete { force, id } => match rt::delete(root, &id, force) {
            // runc: deleting what is not there with --force succeeds.
            Err(rt::Error::NotFound(_)) if force => Ok(0),
            other => other.map(|()| 0).map_err(Into::into),
        },
        Command::Run {
            create,
            detach,
            keep,
        } => run_container(root, &create, detach, keep),
        Command::Exec(args) => exec(root, args),
        Command::List { format, quiet } => list(root, &format, quiet),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(root, &id, &format, ps_args),
        Command::Pause { id } => {
            rt::pause(root, &id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            rt::resume(root, &id)?;
            Ok(0)
        }
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
        Command::Spec { bundle, rootless } => {
            if rootless {
                bail!("--rootless specs are not supported by berth-runtime; write the user namespace into config.json yourself");
            }
            let file = bundle.join("config.json");
            if file.exists() {
                bail!("{} exists; remove it first", file.display());
            }
            let text = serde_json::to_string_pretty(&rt::bundle::default_spec_json())?;
            std::fs::write(&file, text + "\n")
                .with_context(|| format!("write {}", file.display()))?;
            Ok(0)
        }
        Command::Update {
            resources,
            memory,
            pids_limit,
            id,
        } => update(root, &id, resources.as_deref(), memory, pids_limit),
    }
}

fn create_options(args: &CreateArgs, root: &Path) -> CreateOptions {
    let mut opts = CreateOptions::new(&args.id, &args.bundle, root);
    opts.console = match &args.console_socket {
        Some(path) => Console::Socket(path.clone()),
        None => Console::None,
    };
    opts.pid_file = args.pid_file.clone();
    opts.preserve_fds = args.preserve_fds;
    opts.no_pivot = args.no_pivot;
    opts
}

/// `run`: create, start, and (unless detached) wait and delete.
fn run_container(root: &Path, args: &CreateArgs, detach: bool, keep: bool) -> Result<u8> {
    let mut opts = create_options(args, root);
    if !detach && opts.console == Console::None && process_wants_terminal(&args.bundle) {
        // Foreground with a terminal and no socket: relay it ourselves.
        opts.console = Console::Return;
    }
    let mut signals = if detach {
        None
    } else {
        Some(foreground::block_signals().context("block signals")?)
    };
    let created = rt::create(opts)?;
    if let Err(err) = rt::start(root, &args.id) {
        let _ = nix::sys::wait::waitpid(created.pid, None);
        let _ = rt::delete(root, &args.id, true);
        return Err(err.into());
    }
    let Some(signals) = signals.as_mut() else {
        return Ok(0);
    };
    let code = foreground::wait(created.pid, signals, created.console);
    if !keep {
        rt::delete(root, &args.id, true)?;
    }
    Ok(code.clamp(0, 255) as u8)
}

fn process_wants_terminal(bundle: &Path) -> bool {
    rt::bundle::load_config(bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

fn exec(root: &Path, args: ExecArgs) -> Result<u8> {
    let process = exec_process(root, &args)?;
    let mut opts = ExecOptions {
        stdio: Stdio::Inherit,
        console: match &args.console_socket {
            Some(path) => Console::Socket(path.clone()),
            None => Console::None,
        },
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
        detach: args.detach,
    };
    if process.terminal().unwrap_or(false) && opts.console == Console::None {
        if args.detach {
            bail!("a detached exec with a terminal needs --console-socket to send the pty to");
        }
        opts.console = Console::Return;
    }
    let mut signals = if args.detach {
        None
    } else {
        Some(foreground::block_signals().context("block signals")?)
    };
    let executed = rt::exec(root, &args.id, process, opts)?;
    match signals.as_mut() {
        None => Ok(0),
        Some(signals) => {
            let code = foreground::wait(executed.pid, signals, executed.console);
            Ok(code.clamp(0, 255) as u8)
        }
    }
}

/// The process for `exec`: `--process FILE`, or the container's own process
/// with the command line's args, env, cwd, user and tty applied (as runc).
fn exec_process(root: &Path, args: &ExecArgs) -> Result<Process> {
    if let Some(file) = &args.process {
        return Ok(rt::bundle::load_process(file)?);
    }
    if args.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let state = rt::state(root, &args.id)?;
    let record_spec = rt::bundle::load_config(&state.bundle).ok();
    let mut process = record_spec
        .and_then(|s| s.process().clone())
        .unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    process.set_console_size(None);
    let mut env = process.env().clone().unwrap_or_default();
    for pair in &args.env {
        let key = pair.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(pair.clone());
    }
    process.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some(user) = &args.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let mut u = process.user().clone();
        u.set_uid(
            uid.parse()
                .map_err(|_| anyhow!("--user {user}: expected UID[:GID] numbers"))?,
        );
        if let Some(g) = gid {
            u.set_gid(
                g.parse()
                    .map_err(|_| anyhow!("--user {user}: expected UID[:GID] numbers"))?,
            );
        }
        process.set_user(u);
    }
    if !args.additional_gids.is_empty() {
        let mut u = process.user().clone();
        u.set_additional_gids(Some(args.additional_gids.clone()));
        process.set_user(u);
    }
    if args.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !args.cap.is_empty() {
        let mut value = serde_json::to_value(&process)?;
        let caps = value
            .get_mut("capabilities")
            .and_then(|c| c.as_object_mut())
            .map(std::mem::take)
            .unwrap_or_default();
        let mut caps = serde_json::Value::Object(caps);
        for set in ["bounding", "effective", "permitted"] {
            let list = caps[set].as_array().cloned().unwrap_or_default();
            let mut list: Vec<serde_json::Value> = list;
            for cap in &args.cap {
                list.push(serde_json::Value::String(cap.clone()));
            }
            caps[set] = serde_json::Value::Array(list);
        }
        value["capabilities"] = caps;
        rt::capabilities::validate_names(&value, Path::new("--cap"))?;
        process = serde_json::from_value(value)?;
    }
    Ok(process)
}

fn list(root: &Path, format: &str, quiet: bool) -> Result<u8> {
    let states = rt::list(root)?;
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match format {
        "json" => println!("{}", serde_json::to_string(&states)?),
        "table" => {
            println!(
                "{:<20} {:<10} {:<10} {:<40} {:<30} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                println!(
                    "{:<20} {:<10} {:<10} {:<40} {:<30} root",
                    s.id,
                    s.pid,
                    s.status.to_string(),
                    s.bundle.display(),
                    s.created.to_rfc3339()
                );
            }
        }
        other => bail!("unknown --format {other:?}: use table or json"),
    }
    Ok(0)
}

fn ps(root: &Path, id: &str, format: &str, ps_args: Vec<String>) -> Result<u8> {
    let pids = rt::ps(root, id)?;
    match format {
        "json" => {
            let raw: Vec<i32> = pids.iter().map(|p| p.as_raw()).collect();
            println!("{}", serde_json::to_string(&raw)?);
        }
        "table" => {
            let args = if ps_args.is_empty() {
                vec!["-ef".to_string()]
            } else {
                ps_args
            };
            let output = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps")?;
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_column = header
                .split_whitespace()
                .position(|c| c == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            println!("{header}");
            for line in lines {
                let pid: Option<i32> = line
                    .split_whitespace()
                    .nth(pid_column)
                    .and_then(|p| p.parse().ok());
                if pid.is_some_and(|p| pids.iter().any(|q| q.as_raw() == p)) {
                    println!("{line}");
                }
            }
        }
        other => bail!("unknown --format {other:?}: use table or json"),
    }
    Ok(0)
}

fn update(
    root: &Path,
    id: &str,
    file: Option<&Path>,
    memory: Option<i64>,
    pids_limit: Option<i64>,
) -> Result<u8> {
    let mut resources: LinuxResources = match file {
        Some(path) => {
            let mut text = String::new();
            if path == Path::new("-") {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?;
            }
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not linux.resources JSON", path.display()))?
        }
        None => LinuxResources::default(),
    };
    // LinuxResources::default() carries an empty device list: no device change.
    if file.is_none() {
        resources.set_devices(None);
    }
    if let Some(limit) = memory {
        let mut m = resources.memory().unwrap_or_default();
        m.set_limit(Some(limit));
        resources.set_memory(Some(m));
    }
    if let Some(limit) = pids_limit {
        let mut p = resources.pids().unwrap_or_default();
        p.set_limit(limit);
        resources.set_pids(Some(p));
    }
    rt::update(root, id, &resources)?;
    Ok(0)
}

fn parse_signal(text: &str) -> Result<Signal> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| anyhow!("unknown signal number {number}"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| anyhow!("unknown signal {text:?}: use a name like TERM or KILL, or a number"))
}

/// The OCI "features" document.
fn features() -> serde_json::Value {
    let caps: Vec<String> = {
        let mut all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
        all.sort();
        all
    };
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": rt::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec",
            "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid",
            "nosymfollow", "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared",
            "rslave", "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid",
            "symfollow", "sync", "tmpcopyup", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": [native_arch()],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.berth.runtime.seccomp": "seccompiler"
        }
    })
}

fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

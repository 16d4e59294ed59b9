//! Container commands: run, create, start, stop, restart, kill, rm, ps, logs,
//! wait, attach, rename, inspect, container prune.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context as _};
use berth_engine::container::attach::Hello;
use berth_engine::container::lifecycle::{self, CreateRequest, LifecycleError, Started};
use berth_engine::container::monitor::{self, Ready};
use berth_engine::container::{ContainerRecord, ContainerStore};
use clap::{Args, Subcommand};

use super::attach_client::{self, AttachOptions, Ended};
use super::run_flags::RunFlags;
use super::{images_bridge, ExitStatus};
use crate::commands::Context;

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and run a new container from an image.
    #[command(
        disable_help_flag = true,
        after_help = "Examples:\n  berth run --rm busybox echo hello\n  berth run -d --name web busybox httpd -f -p 8080\n  berth run -it busybox sh\n  berth run --explain --rm busybox true     (narrates each kernel step: mounts, cgroups, clone3, ...)"
    )]
    Run(RunArgs),
    /// Create a new container without starting it.
    #[command(
        disable_help_flag = true,
        after_help = "Examples:\n  berth create --name job busybox sleep 60 && berth start job\n  berth create --explain --name job busybox true && berth start --explain -a job"
    )]
    Create(CreateArgs),
    /// Start one or more stopped containers.
    #[command(
        after_help = "Examples:\n  berth start -a job\n  berth start --explain job     (narrates each step berth asks of the kernel)"
    )]
    Start(StartArgs),
    /// Stop one or more running containers (stop signal, then SIGKILL after the timeout).
    #[command(after_help = "Example:\n  berth stop -t 5 web")]
    Stop(StopArgs),
    /// Restart one or more containers.
    #[command(after_help = "Example:\n  berth restart web")]
    Restart(StopArgs),
    /// Kill one or more running containers.
    #[command(after_help = "Example:\n  berth kill -s HUP web")]
    Kill(KillArgs),
    /// Remove one or more containers.
    #[command(after_help = "Example:\n  berth rm -f web")]
    Rm(RmArgs),
    /// List containers.
    #[command(
        after_help = "Examples:\n  berth ps -a\n  berth ps --filter status=exited -q\n  berth ps --format '{{.ID}} {{.Names}}'"
    )]
    Ps(super::ps::PsArgs),
    /// Fetch the logs of a container.
    #[command(after_help = "Example:\n  berth logs -f --tail 10 web")]
    Logs(super::logs::LogsArgs),
    /// Block until one or more containers stop, then print their exit codes.
    #[command(after_help = "Example:\n  berth wait job")]
    Wait(NamesArgs),
    /// Attach to a running container's input and output.
    #[command(after_help = "Example:\n  berth attach web   (detach with Ctrl-P Ctrl-Q)")]
    Attach(AttachArgs),
    /// Rename a container.
    #[command(after_help = "Example:\n  berth rename old new")]
    Rename(RenameArgs),
    /// Pause all processes within one or more containers (the cgroup freezer).
    #[command(after_help = "Example:\n  berth pause web")]
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers.
    #[command(after_help = "Example:\n  berth unpause web")]
    Unpause(NamesArgs),
    /// Inspect changes to files or directories on a container's filesystem (A added, C changed, D deleted).
    #[command(after_help = "Example:\n  berth diff web")]
    Diff(DiffArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(ContainerGroup),
}

#[derive(Debug, Subcommand)]
pub enum ContainerGroup {
    /// Remove all stopped containers.
    #[command(after_help = "Example:\n  berth container prune -f")]
    Prune(PruneArgs),
    /// List containers.
    #[command(
        alias = "list",
        name = "ls",
        after_help = "Example:\n  berth container ls -a"
    )]
    Ls(super::ps::PsArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    #[command(after_help = "Example:\n  berth container diff web")]
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run container in background and print container ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Automatically remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Narrate each step berth asks of the kernel (mounts, namespaces, cgroup files, ...) with its real values.
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub flags: RunFlags,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Automatically remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Narrate each step berth asks of the kernel (mounts, namespaces, cgroup files, ...) with its real values.
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub flags: RunFlags,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN.
    #[arg(short, long)]
    pub interactive: bool,
    /// Narrate each step berth asks of the kernel (mounts, namespaces, cgroup files, ...) with its real values.
    #[arg(long)]
    pub explain: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u32>,
    /// Signal to send to the container.
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container.
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process.
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

impl ContainerCommand {
    /// `run`, `create` and `start` with `--explain`.
    pub fn explains(&self) -> bool {
        match self {
            ContainerCommand::Run(args) => args.explain,
            ContainerCommand::Create(args) => args.explain,
            ContainerCommand::Start(args) => args.explain,
            _ => false,
        }
    }
}

pub fn run(command: ContainerCommand, ctx: &Context) -> anyhow::Result<u8> {
    match command {
        ContainerCommand::Run(args) => run_container(args, ctx),
        ContainerCommand::Create(args) => {
            let record = create_container(&args.flags, args.rm, ctx)?;
            if args.explain {
                eprintln!(
                    "berth --explain: nothing has been asked of the kernel yet; `berth start --explain {}` narrates the construction",
                    record.name
                );
            }
            println!("{}", record.id);
            Ok(0)
        }
        ContainerCommand::Start(args) => start(args, ctx),
        ContainerCommand::Stop(args) => for_each(&args.containers, |name| {
            lifecycle::stop(&ctx.roots, name, args.time, args.signal.as_deref())?;
            Ok(())
        }),
        ContainerCommand::Restart(args) => for_each(&args.containers, |name| {
            lifecycle::stop(&ctx.roots, name, args.time, args.signal.as_deref())?;
            match lifecycle::start(&ctx.roots, name, None)? {
                Started::Now {
                    ready: Ready::Failed { error, .. },
                    ..
                } => bail!(error),
                _ => Ok(()),
            }
        }),
        ContainerCommand::Kill(args) => for_each(&args.containers, |name| {
            lifecycle::kill(&ctx.roots, name, &args.signal)?;
            Ok(())
        }),
        ContainerCommand::Rm(args) => for_each(&args.containers, |name| {
            lifecycle::remove_with_volumes(&ctx.roots, name, args.force, args.volumes)?;
            Ok(())
        }),
        ContainerCommand::Ps(args) => super::ps::run(args, ctx),
        ContainerCommand::Container(ContainerGroup::Ls(args)) => super::ps::run(args, ctx),
        ContainerCommand::Logs(args) => super::logs::run(args, ctx),
        ContainerCommand::Wait(args) => {
            let mut failed = false;
            for name in &args.containers {
                match lifecycle::wait(&ctx.roots, name) {
                    Ok(status) => println!("{status}"),
                    Err(err) => {
                        eprintln!("berth: {err}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        ContainerCommand::Attach(args) => attach(args, ctx),
        ContainerCommand::Rename(args) => {
            let record = lifecycle::find(&ctx.roots, &args.container)?;
            ContainerStore::open(&ctx.roots)?.rename(&record.id, &args.new_name)?;
            Ok(0)
        }
        ContainerCommand::Container(ContainerGroup::Prune(_)) => prune(ctx),
        ContainerCommand::Pause(args) => for_each(&args.containers, |name| {
            lifecycle::pause(&ctx.roots, name)?;
            Ok(())
        }),
        ContainerCommand::Unpause(args) => for_each(&args.containers, |name| {
            lifecycle::unpause(&ctx.roots, name)?;
            Ok(())
        }),
        ContainerCommand::Diff(args) | ContainerCommand::Container(ContainerGroup::Diff(args)) => {
            diff(args, ctx)
        }
    }
}

/// `docker diff`: one `A|C|D /path` line per change, sorted by path.
fn diff(args: DiffArgs, ctx: &Context) -> anyhow::Result<u8> {
    let record = lifecycle::find(&ctx.roots, &args.container)?;
    let changes = berth_engine::container::changes::of_container(&ctx.roots, &record)
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut out = std::io::stdout().lock();
    for change in changes {
        writeln!(out, "{} {}", change.kind.letter(), change.path)?;
    }
    Ok(0)
}

/// Apply `action` to each named container, printing each name as docker does;
/// errors are reported per container and make the exit status 1.
fn for_each(
    names: &[String],
    mut action: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<u8> {
    let mut failed = false;
    for name in names {
        match action(name) {
            Ok(()) => println!("{name}"),
            Err(err) => {
                eprintln!("berth: {err:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Resolve the image and store a new container record.
fn create_container(
    flags: &RunFlags,
    auto_remove: bool,
    ctx: &Context,
) -> anyhow::Result<ContainerRecord> {
    let run = flags.run_request()?;
    let host = flags.host_config(auto_remove)?;
    if let Some(cidfile) = &flags.cidfile {
        if cidfile.exists() {
            bail!(
                "Container ID file found, make sure the other container isn't running or delete {}",
                cidfile.display()
            );
        }
    }
    let image = images_bridge::resolve(ctx, flags.image())?;
    let record = lifecycle::create(
        &ctx.roots,
        CreateRequest {
            image: flags.image().to_string(),
            image_id: image.id.clone(),
            image_defaults: image.defaults.clone(),
            run,
            host,
            name: flags.name.clone(),
            volumes_from: flags.volumes_from.clone(),
        },
    )?;
    // The record now protects the image from rmi; the store may collect again.
    drop(image.hold);
    if let Some(cidfile) = &flags.cidfile {
        write_cidfile(cidfile, &record.id)?;
    }
    Ok(record)
}

fn write_cidfile(path: &Path, id: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("write the container ID file {}", path.display()))?;
    file.write_all(id.as_bytes())?;
    Ok(())
}

/// `run`: create, start, and (unless `-d`) stay attached until the exit.
fn run_container(args: RunArgs, ctx: &Context) -> anyhow::Result<u8> {
    let flags = &args.flags;
    if args.detach && !flags.attach.is_empty() {
        bail!("Conflicting options: -a and -d");
    }
    let record = create_container(flags, args.rm, ctx)?;
    let (stdin, stdout, stderr) = flags.attach_streams()?;
    let hello = (!args.detach).then_some(Hello {
        stdin,
        stdout,
        stderr,
    });
    let started = lifecycle::start(&ctx.roots, &record.id, hello)?;
    let (ready, stream) = match started {
        Started::Now { ready, attach } => (ready, attach),
        Started::AlreadyRunning => bail!("container {} is already running", record.id),
    };
    if let Ready::Failed { exit_code, error } = ready {
        if args.rm {
            let _ = lifecycle::remove_with_volumes(&ctx.roots, &record.id, true, true);
        }
        eprintln!("berth: {}", with_hint(&error));
        return Err(ExitStatus(exit_code.clamp(0, 255) as u8).into());
    }
    if args.detach {
        println!("{}", record.id);
        return Ok(0);
    }
    let stream = stream.context("the monitor did not hand over the attach stream")?;
    let options = AttachOptions {
        stdin,
        tty: flags.tty,
        sig_proxy: flags.sig_proxy,
    };
    match attach_client::relay(stream, options)? {
        Ended::Exited(status) => Ok(status.clamp(0, 255) as u8),
        Ended::Detached => Ok(0),
    }
}

fn start(args: StartArgs, ctx: &Context) -> anyhow::Result<u8> {
    if !args.attach && !args.interactive {
        return for_each(&args.containers, |name| {
            match lifecycle::start(&ctx.roots, name, None)? {
                Started::Now {
                    ready: Ready::Failed { error, .. },
                    ..
                } => bail!(error),
                _ => Ok(()),
            }
        });
    }
    if args.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let name = &args.containers[0];
    let record = lifecycle::find(&ctx.roots, name)?;
    let hello = Hello {
        stdin: args.interactive && record.config.open_stdin,
        stdout: true,
        stderr: true,
    };
    match lifecycle::start(&ctx.roots, name, Some(hello))? {
        Started::AlreadyRunning => attach_running(&record, hello, true, ctx),
        Started::Now {
            ready: Ready::Failed { exit_code, error },
            ..
        } => {
            eprintln!("berth: {}", with_hint(&error));
            Err(ExitStatus(exit_code.clamp(0, 255) as u8).into())
        }
        Started::Now { attach, .. } => {
            let stream = attach.context("the monitor did not hand over the attach stream")?;
            relay_until_end(stream, &record, hello, true)
        }
    }
}

fn attach(args: AttachArgs, ctx: &Context) -> anyhow::Result<u8> {
    let record = lifecycle::find(&ctx.roots, &args.container)?;
    if !record.state.status.is_active() {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let hello = Hello {
        stdin: !args.no_stdin && record.config.open_stdin,
        stdout: true,
        stderr: true,
    };
    attach_running(&record, hello, args.sig_proxy, ctx)
}

fn attach_running(
    record: &ContainerRecord,
    hello: Hello,
    sig_proxy: bool,
    ctx: &Context,
) -> anyhow::Result<u8> {
    let stream = monitor::connect(&ctx.roots, &record.id, hello)
        .with_context(|| format!("attach to container {}", record.name))?;
    relay_until_end(stream, record, hello, sig_proxy)
}

fn relay_until_end(
    stream: std::os::unix::net::UnixStream,
    record: &ContainerRecord,
    hello: Hello,
    sig_proxy: bool,
) -> anyhow::Result<u8> {
    let options = AttachOptions {
        stdin: hello.stdin,
        tty: record.config.tty,
        sig_proxy,
    };
    match attach_client::relay(stream, options)? {
        Ended::Exited(status) => Ok(status.clamp(0, 255) as u8),
        Ended::Detached => Ok(0),
    }
}

/// A failed start's message (the engine's, docker's words) with what a
/// newcomer can do about it, for the failures that need a hint.
fn with_hint(error: &str) -> String {
    if let Some(rest) = error.split("Bind for ").nth(1) {
        if error.ends_with("port is already allocated") {
            let port = rest
                .split(' ')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .unwrap_or("");
            return format!(
                "{error} (see what holds it with `ss -ltunp | grep ':{port}'`, or publish another host port: -p OTHER:CONTAINER_PORT)"
            );
        }
    }
    error.to_string()
}

/// `container prune`: remove every container that is not running.
fn prune(ctx: &Context) -> anyhow::Result<u8> {
    let mut deleted = Vec::new();
    for record in lifecycle::list(&ctx.roots)? {
        if record.state.status.is_active() {
            continue;
        }
        match lifecycle::remove(&ctx.roots, &record.id, false) {
            Ok(_) => deleted.push(record.id),
            Err(LifecycleError::RemoveRunning(_)) => {}
            Err(err) => eprintln!("berth: {err}"),
        }
    }
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in &deleted {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: 0B");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::with_hint;

    #[test]
    fn a_port_in_use_gets_a_hint_and_other_errors_are_left_alone() {
        assert_eq!(
            with_hint("Bind for 0.0.0.0:8080 failed: port is already allocated"),
            "Bind for 0.0.0.0:8080 failed: port is already allocated (see what holds it with `ss -ltunp | grep ':8080'`, or publish another host port: -p OTHER:CONTAINER_PORT)"
        );
        assert_eq!(
            with_hint("exec: \"nope\": not found"),
            "exec: \"nope\": not found"
        );
    }
}

//! `berth compose`: docker compose's commands over `berth_engine::compose`
//! (the file, the names, the order of things) — this module adds the
//! flags, the progress lines, and the log view of `up` and `logs`.
//!
//! The log view follows every container's json-file log at once: one
//! `inotify(7)` watch per log file (IN_MODIFY) and one connection to each
//! container's monitor, which says when the container exits (and is
//! reconnected when a restart policy brings it back), all in one `poll(2)`
//! loop, with SIGINT/SIGTERM read from a `signalfd(2)` in the same loop so
//! that Ctrl-C in `up` stops the project gracefully.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, IsTerminal, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use berth_engine::compose::actions;
use berth_engine::compose::{self, DownOptions, LoadOptions, Project, UpOptions};
use berth_engine::container::attach::{Frame, Hello};
use berth_engine::container::logs::{read_records, LogFilter, Stream};
use berth_engine::container::{lifecycle, monitor, ContainerRecord, Status};
use clap::{Args, Subcommand};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::Context;
use crate::format::{ago, ellipsis, table};

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// Compose file, repeatable: merged in order (default: compose.yaml, compose.yml,
    /// docker-compose.yaml or docker-compose.yml, then compose.override.yaml or the like beside it).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name (default: COMPOSE_PROJECT_NAME, the file's name:, or the directory's name).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Directory relative paths start from (default: the compose file's).
    #[arg(long = "project-directory", value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Variables for interpolation (default: .env in the project directory).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Create and start containers (networks, volumes and images first).
    #[command(
        after_help = "Examples:\n  berth compose up -d\n  berth compose up --build web\n  berth compose up --exit-code-from tests     (CI: stop everything when tests exits, with its status)"
    )]
    Up(UpArgs),
    /// Stop and remove containers and networks (and with -v, volumes).
    #[command(
        after_help = "Examples:\n  berth compose down\n  berth compose down -v --remove-orphans"
    )]
    Down(DownArgs),
    /// List the project's containers.
    #[command(after_help = "Examples:\n  berth compose ps\n  berth compose ps -a --format json")]
    Ps(PsArgs),
    /// View output from containers.
    #[command(
        after_help = "Examples:\n  berth compose logs\n  berth compose logs -f --tail 10 web"
    )]
    Logs(LogsArgs),
    /// Execute a command in a running service container.
    #[command(
        after_help = "Examples:\n  berth compose exec web sh\n  berth compose exec -T db pg_dump app > dump.sql"
    )]
    Exec(ExecArgs),
    /// Build the images of services with a build: section.
    #[command(
        after_help = "Examples:\n  berth compose build\n  berth compose build --no-cache web"
    )]
    Build(BuildArgs),
    /// Pull the images of services that are not built.
    #[command(after_help = "Example:\n  berth compose pull")]
    Pull(ServicesArgs),
    /// Restart service containers.
    #[command(after_help = "Examples:\n  berth compose restart\n  berth compose restart -t 2 web")]
    Restart(StopArgs),
    /// Stop services (dependents first).
    #[command(after_help = "Examples:\n  berth compose stop\n  berth compose stop web")]
    Stop(StopArgs),
    /// Start existing service containers.
    #[command(after_help = "Example:\n  berth compose start web")]
    Start(ServicesArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Detached mode: run containers in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Build images before starting containers.
    #[arg(long)]
    pub build: bool,
    /// Recreate containers even if their configuration has not changed.
    #[arg(long = "force-recreate")]
    pub force_recreate: bool,
    /// Don't start linked services.
    #[arg(long = "no-deps")]
    pub no_deps: bool,
    /// Stops all containers if any container was stopped.
    #[arg(long = "abort-on-container-exit", conflicts_with = "detach")]
    pub abort_on_container_exit: bool,
    /// Return the exit code of the selected service container (implies --abort-on-container-exit).
    #[arg(
        long = "exit-code-from",
        value_name = "SERVICE",
        conflicts_with = "detach"
    )]
    pub exit_code_from: Option<String>,
    /// Produce monochrome output without prefixes.
    #[arg(long = "no-log-prefix")]
    pub no_log_prefix: bool,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Remove named volumes declared in the volumes section and anonymous volumes of the containers.
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove containers for services not defined in the compose file.
    #[arg(long = "remove-orphans")]
    pub remove_orphans: bool,
    /// Seconds to wait before killing each container (default: its stop_grace_period, else 10).
    #[arg(short = 't', long = "timeout")]
    pub timeout: Option<u32>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all stopped containers too.
    #[arg(short, long)]
    pub all: bool,
    /// Only display IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Display services.
    #[arg(long)]
    pub services: bool,
    /// Format the output: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    #[arg(value_name = "SERVICE")]
    pub service_names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Number of lines to show from the end of the logs for each container ("all" for every line).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Don't print a prefix in logs.
    #[arg(long = "no-log-prefix")]
    pub no_log_prefix: bool,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run the command in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Disable pseudo-TTY allocation (by default one is allocated when stdin is a terminal).
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Run the command as this user.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Path to workdir directory for this command.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Set environment variables.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Index of the container if the service has several (berth runs one: 1).
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    #[arg(value_name = "SERVICE")]
    pub service: String,
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Do not use cache when building the image.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing each container (default: its stop_grace_period, else 10).
    #[arg(short = 't', long = "timeout")]
    pub timeout: Option<u32>,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

impl ComposeArgs {
    /// Whether the command puts processes into containers (see
    /// `security::starts_container_processes`).
    pub fn starts_container_processes(&self) -> bool {
        matches!(
            self.command,
            ComposeCommand::Up(_)
                | ComposeCommand::Start(_)
                | ComposeCommand::Restart(_)
                | ComposeCommand::Exec(_)
                | ComposeCommand::Build(_)
        )
    }
}

pub fn run(args: ComposeArgs, ctx: &Context) -> anyhow::Result<u8> {
    let project = load(&args)?;
    let roots = &ctx.roots;
    let mut report = progress_line;
    match args.command {
        ComposeCommand::Up(up) => up_command(up, &project, ctx),
        ComposeCommand::Down(down) => {
            let options = DownOptions {
                volumes: down.volumes,
                remove_orphans: down.remove_orphans,
                timeout: down.timeout,
            };
            actions::down(roots, &project, &options, &mut report)?;
            Ok(0)
        }
        ComposeCommand::Ps(ps) => ps_command(ps, &project, ctx),
        ComposeCommand::Logs(logs) => logs_command(logs, &project, ctx),
        ComposeCommand::Exec(exec) => exec_command(exec, &project, ctx),
        ComposeCommand::Build(build) => {
            let stdout = std::io::stdout();
            actions::build(
                roots,
                &project,
                &build.services,
                build.no_cache,
                &mut stdout.lock(),
                &mut report,
            )?;
            Ok(0)
        }
        ComposeCommand::Pull(pull) => {
            let stdout = std::io::stdout();
            actions::pull(
                roots,
                &project,
                &pull.services,
                &mut stdout.lock(),
                &mut report,
            )?;
            Ok(0)
        }
        ComposeCommand::Restart(stop) => {
            actions::restart(roots, &project, &stop.services, stop.timeout, &mut report)?;
            Ok(0)
        }
        ComposeCommand::Stop(stop) => {
            actions::stop(roots, &project, &stop.services, stop.timeout, &mut report)?;
            Ok(0)
        }
        ComposeCommand::Start(start) => {
            actions::start(roots, &project, &start.services, &mut report)?;
            Ok(0)
        }
    }
}

fn load(args: &ComposeArgs) -> anyhow::Result<Project> {
    let options = LoadOptions {
        files: args.files.clone(),
        project_name: args.project_name.clone(),
        project_directory: args.project_directory.clone(),
        env_file: args.env_file.clone(),
        working_dir: std::env::current_dir().context("the current directory")?,
    };
    let project = compose::load(&options)?;
    for warning in &project.warnings {
        eprintln!("WARN[0000] {warning}");
    }
    Ok(project)
}

/// docker compose's progress lines (" Container proj-web-1  Started"), on stderr.
fn progress_line(kind: &str, name: &str, state: &str) {
    if kind == "Warning" {
        eprintln!("WARN[0000] {state}");
    } else {
        eprintln!(" {kind} {name}  {state}");
    }
}

fn up_command(args: UpArgs, project: &Project, ctx: &Context) -> anyhow::Result<u8> {
    let options = UpOptions {
        services: args.services.clone(),
        build: args.build,
        force_recreate: args.force_recreate,
        no_deps: args.no_deps,
    };
    if let Some(service) = &args.exit_code_from {
        project.service(service)?;
    }
    // Where each log stands before the start: `up` shows only what follows.
    let before = log_sizes(ctx, project)?;
    let mut report = progress_line;
    let containers = {
        let stdout = std::io::stdout();
        actions::up(
            &ctx.roots,
            project,
            &options,
            &mut stdout.lock(),
            &mut report,
        )?
    };
    if args.detach {
        return Ok(0);
    }
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    println!("Attaching to {}", names.join(", "));
    let abort = args.abort_on_container_exit || args.exit_code_from.is_some();
    let view = LogView {
        prefix: !args.no_log_prefix,
        timestamps: false,
        follow: true,
        announce_exits: true,
        abort_on_exit: abort,
    };
    let mut sources = containers
        .iter()
        .map(|c| {
            Source::open(
                ctx,
                project,
                c,
                SeekFrom::Start(before.get(&c.id).copied().unwrap_or(0)),
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    pad_prefixes(&mut sources);
    let signals = block_stop_signals()?;
    let ended = view.run(ctx, &mut sources, Some(&signals))?;
    if ended.interrupted || ended.first_exit.is_some() {
        if ended.interrupted {
            eprintln!("Gracefully stopping...");
        } else {
            eprintln!("Aborting on container exit...");
        }
        let mut report = progress_line;
        actions::stop(&ctx.roots, project, &args.services, None, &mut report)?;
        // What the containers said while they stopped.
        view.drain(&mut sources)?;
    }
    if ended.interrupted {
        return Ok(130);
    }
    let code = match &args.exit_code_from {
        Some(service) => {
            actions::containers_of(&ctx.roots, project, std::slice::from_ref(service))?
                .first()
                .map(|c| c.state.exit_code)
                .unwrap_or(0)
        }
        None if abort => ended.first_exit.map(|(_, code)| code).unwrap_or(0),
        None => 0,
    };
    Ok(code.clamp(0, 255) as u8)
}

/// The current size of each existing container's log (by container id).
fn log_sizes(ctx: &Context, project: &Project) -> anyhow::Result<HashMap<String, u64>> {
    Ok(actions::project_containers(&ctx.roots, &project.name)?
        .into_iter()
        .filter_map(|c| {
            let size = std::fs::metadata(log_path(ctx, &c.id)).ok()?.len();
            Some((c.id, size))
        })
        .collect())
}

fn log_path(ctx: &Context, id: &str) -> PathBuf {
    ctx.roots
        .containers()
        .join(id)
        .join(format!("{id}-json.log"))
}

/// SIGINT and SIGTERM as events of a signalfd. Called only once every
/// container is started: monitors forked before would inherit the mask.
fn block_stop_signals() -> anyhow::Result<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()?;
    Ok(SignalFd::with_flags(
        &mask,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )?)
}

fn ps_command(args: PsArgs, project: &Project, ctx: &Context) -> anyhow::Result<u8> {
    if args.services {
        for service in &project.model.services {
            if args.service_names.is_empty() || args.service_names.contains(&service.name) {
                println!("{}", service.name);
            }
        }
        return Ok(0);
    }
    let mut containers = actions::containers_of(&ctx.roots, project, &args.service_names)?;
    containers.retain(|c| args.all || c.state.status.is_active());
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    if args.quiet {
        for c in &containers {
            println!("{}", c.id);
        }
        return Ok(0);
    }
    match args.format.as_str() {
        "json" => {
            for c in &containers {
                let row = serde_json::json!({
                    "ID": c.short_id(), "Name": c.name, "Image": c.image, "Command": c.command_line(),
                    "Project": project.name, "Service": actions::service_of(c),
                    "State": c.state.status.as_str(), "Status": super::ps::status_text(c),
                    "Health": c.state.health.as_ref().map(|h| h.status.as_str()).unwrap_or(""),
                    "ExitCode": c.state.exit_code, "Ports": ports(c), "CreatedAt": c.created.to_rfc3339(),
                });
                println!("{row}");
            }
        }
        "table" => {
            let rows: Vec<Vec<String>> = containers
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.image.clone(),
                        ellipsis(&format!("\"{}\"", c.command_line()), 22),
                        actions::service_of(c).to_string(),
                        ago(c.created),
                        super::ps::status_text(c),
                        ports(c),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"],
                    &rows
                )
            );
        }
        other => bail!("invalid --format {other:?}: use table or json"),
    }
    Ok(0)
}

fn ports(c: &ContainerRecord) -> String {
    if c.state.status.is_active() {
        c.state.network.ports_column(&c.config.exposed_ports)
    } else {
        String::new()
    }
}

fn logs_command(args: LogsArgs, project: &Project, ctx: &Context) -> anyhow::Result<u8> {
    let tail = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .with_context(|| format!("invalid --tail {n:?}: use a number or \"all\""))?,
        ),
    };
    let mut containers = actions::containers_of(&ctx.roots, project, &args.services)?;
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let view = LogView {
        prefix: !args.no_log_prefix,
        timestamps: args.timestamps,
        follow: args.follow,
        announce_exits: false,
        abort_on_exit: false,
    };
    let mut sources = containers
        .iter()
        .map(|c| Source::open(ctx, project, c, SeekFrom::Start(0)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    pad_prefixes(&mut sources);
    let filter = LogFilter {
        tail,
        ..Default::default()
    };
    for source in &mut sources {
        if let Some(reader) = source.reader.as_mut() {
            let records = read_records(reader, &filter)?;
            view.print(&source.prefix, &records)?;
        }
    }
    if !args.follow {
        return Ok(0);
    }
    let signals = block_stop_signals()?;
    view.run(ctx, &mut sources, Some(&signals))?;
    Ok(0)
}

fn exec_command(args: ExecArgs, project: &Project, ctx: &Context) -> anyhow::Result<u8> {
    let service = project.service(&args.service)?;
    let name = project.container_name(service, args.index);
    let record = lifecycle::find(&ctx.roots, &name).with_context(|| {
        format!(
            "service {:?} has no container {name}: start it with `berth compose up -d`",
            args.service
        )
    })?;
    if !record.state.status.is_active() {
        bail!(
            "service {:?} is not running: start it with `berth compose up -d {}`",
            args.service,
            args.service
        );
    }
    let tty = !args.no_tty && !args.detach && std::io::stdin().is_terminal();
    super::exec::run(
        super::exec::ExecArgs {
            detach: args.detach,
            interactive: !args.detach,
            tty,
            user: args.user,
            workdir: args.workdir,
            env: args.env,
            container: record.id,
            command: args.command,
        },
        ctx,
    )
}

/// How the log view shows and ends.
struct LogView {
    prefix: bool,
    timestamps: bool,
    follow: bool,
    /// Print "NAME exited with code N" (up).
    announce_exits: bool,
    /// End at the first exit (up --abort-on-container-exit).
    abort_on_exit: bool,
}

/// One container's log being read.
struct Source {
    id: String,
    name: String,
    prefix: String,
    reader: Option<BufReader<File>>,
    /// The monitor's connection, which says when the container exits.
    watch: Option<UnixStream>,
    done: bool,
}

impl Source {
    fn open(
        ctx: &Context,
        project: &Project,
        c: &ContainerRecord,
        from: SeekFrom,
    ) -> anyhow::Result<Source> {
        let reader = match File::open(log_path(ctx, &c.id)) {
            Ok(mut file) => {
                file.seek(from)?;
                Some(BufReader::new(file))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(err.into()),
        };
        // docker compose's prefix: the container name without the project.
        let short = c
            .name
            .strip_prefix(&format!("{}-", project.name))
            .unwrap_or(&c.name)
            .to_string();
        Ok(Source {
            id: c.id.clone(),
            name: c.name.clone(),
            prefix: short,
            reader,
            watch: None,
            done: false,
        })
    }
}

/// How the view ended.
struct Ended {
    interrupted: bool,
    /// The first container to exit (with --abort-on-container-exit).
    first_exit: Option<(String, i32)>,
}

impl LogView {
    /// Follow every source until all containers have exited (or the first,
    /// with `abort_on_exit`), or until SIGINT/SIGTERM.
    fn run(
        &self,
        ctx: &Context,
        sources: &mut [Source],
        signals: Option<&SignalFd>,
    ) -> anyhow::Result<Ended> {
        for source in sources.iter_mut() {
            source.watch = watch(ctx, &source.id);
            source.done = source.watch.is_none();
        }
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        let mut watches: HashMap<WatchDescriptor, usize> = HashMap::new();
        for (i, source) in sources.iter().enumerate() {
            if let Ok(wd) = inotify.add_watch(&log_path(ctx, &source.id), AddWatchFlags::IN_MODIFY)
            {
                watches.insert(wd, i);
            }
        }
        self.drain(sources)?;
        let mut ended = Ended {
            interrupted: false,
            first_exit: None,
        };
        while self.follow && sources.iter().any(|s| !s.done) {
            let mut fds = vec![PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
            if let Some(signals) = signals {
                fds.push(PollFd::new(signals.as_fd(), PollFlags::POLLIN));
            }
            let fixed = fds.len();
            let open: Vec<usize> = (0..sources.len()).filter(|&i| !sources[i].done).collect();
            for &i in &open {
                if let Some(watch) = &sources[i].watch {
                    fds.push(PollFd::new(watch.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
            let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
            let interrupted = signals.is_some() && ready(&fds[1]);
            let spoke: Vec<usize> = open
                .iter()
                .zip(&fds[fixed..])
                .filter(|(_, p)| ready(p))
                .map(|(i, _)| *i)
                .collect();
            drop(fds);
            let _ = inotify.read_events();
            self.drain(sources)?;
            if interrupted {
                ended.interrupted = true;
                return Ok(ended);
            }
            for i in spoke {
                if let Some(code) = self.exited(ctx, &mut sources[i])? {
                    self.drain(sources)?;
                    if self.announce_exits {
                        println!("{} exited with code {code}", sources[i].name);
                    }
                    if self.abort_on_exit && ended.first_exit.is_none() {
                        ended.first_exit = Some((sources[i].name.clone(), code));
                        return Ok(ended);
                    }
                }
            }
        }
        Ok(ended)
    }

    /// A frame from the monitor of `source`: Some(exit code) when the
    /// container is done; a container being restarted is watched again.
    fn exited(&self, ctx: &Context, source: &mut Source) -> anyhow::Result<Option<i32>> {
        let Some(stream) = source.watch.as_mut() else {
            return Ok(None);
        };
        match Frame::read_from(stream) {
            Ok(Some(Frame::Exit(_))) | Ok(None) | Err(_) => {}
            Ok(Some(_)) => return Ok(None),
        }
        let record = lifecycle::find(&ctx.roots, &source.id).ok();
        let restarting = record
            .as_ref()
            .is_some_and(|r| matches!(r.state.status, Status::Restarting | Status::Running));
        source.watch = if restarting {
            watch(ctx, &source.id)
        } else {
            None
        };
        if source.watch.is_some() {
            return Ok(None);
        }
        source.done = true;
        Ok(Some(record.map(|r| r.state.exit_code).unwrap_or(0)))
    }

    /// Print what every source's log has gained.
    fn drain(&self, sources: &mut [Source]) -> anyhow::Result<()> {
        for source in sources.iter_mut() {
            if let Some(reader) = source.reader.as_mut() {
                let records = read_records(reader, &LogFilter::default())?;
                self.print(&source.prefix, &records)?;
            }
        }
        Ok(())
    }

    fn print(
        &self,
        prefix: &str,
        records: &[berth_engine::container::logs::LogRecord],
    ) -> anyhow::Result<()> {
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        let (mut out, mut err) = (stdout.lock(), stderr.lock());
        for record in records {
            let target: &mut dyn Write = match record.stream {
                Stream::Stdout => &mut out,
                Stream::Stderr => &mut err,
            };
            if self.prefix {
                target.write_all(prefix.as_bytes())?;
            }
            if self.timestamps {
                write!(target, "{} ", record.timestamp())?;
            }
            target.write_all(record.log.as_bytes())?;
            if !record.log.ends_with('\n') {
                target.write_all(b"\n")?;
            }
        }
        out.flush()?;
        err.flush()?;
        Ok(())
    }
}

/// docker compose's prefixes, padded to the longest: `web-1  | `.
fn pad_prefixes(sources: &mut [Source]) {
    let width = sources.iter().map(|s| s.prefix.len()).max().unwrap_or(0);
    for source in sources {
        source.prefix = format!("{:<width$} | ", source.prefix);
    }
}

/// A connection to the container's monitor that only waits for its exit.
fn watch(ctx: &Context, id: &str) -> Option<UnixStream> {
    monitor::connect(&ctx.roots, id, Hello::default()).ok()
}

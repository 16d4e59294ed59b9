//! The command groups of `berth`. Each module owns a clap `Subcommand` enum that
//! is flattened into [`Command`], and a `run` function returning the process
//! exit status.

pub mod attach_client;
pub mod build;
pub mod compose;
pub mod containers;
pub mod exec;
pub mod images;
pub mod images_bridge;
pub mod inspect;
pub mod kernel_inspect;
pub mod logs;
pub mod networks;
pub mod ps;
pub mod pty_relay;
pub mod registry;
pub mod run_flags;
pub mod security;
pub mod stats;
pub mod system;
pub mod top;
pub mod volumes;

use berth_engine::paths::Roots;
use clap::Subcommand;

/// What every command needs: where the state lives.
#[derive(Debug)]
pub struct Context {
    pub roots: Roots,
}

/// Every `berth` command. (Parsed once per process; the size difference
/// between variants does not matter.)
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    #[command(flatten)]
    Image(images::ImageCommand),
    #[command(flatten)]
    Container(containers::ContainerCommand),
    /// Return low-level information on containers and images.
    #[command(
        after_help = "Examples:\n  berth inspect web\n  berth inspect -f '{{.State.ExitCode}}' job\n  berth inspect --kernel web      (namespaces, cgroups, mounts, capabilities, seccomp, network)"
    )]
    Inspect(inspect::InspectArgs),
    /// Execute a command in a running container.
    #[command(after_help = "Examples:\n  berth exec web ls /\n  berth exec -it web sh")]
    Exec(exec::ExecArgs),
    /// Display the running processes of a container.
    #[command(after_help = "Example:\n  berth top web")]
    Top(top::TopArgs),
    /// Display a live stream of container(s) resource usage statistics.
    #[command(
        after_help = "Example:\n  berth stats --no-stream\n  berth stats --no-stream --format '{{.Name}}: {{.CPUPerc}} {{.MemUsage}}' web"
    )]
    Stats(stats::StatsArgs),
    /// Build an image from a Dockerfile.
    #[command(
        after_help = "Examples:\n  berth build -t app:1 .\n  berth build --build-arg V=2 --target builder -f ci/Dockerfile ."
    )]
    Build(build::BuildArgs),
    #[command(flatten)]
    Registry(registry::RegistryCommand),
    /// Define and run multi-container applications (compose.yaml).
    Compose(compose::ComposeArgs),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(networks::NetworkCommand),
    /// List port mappings or a specific mapping for the container.
    #[command(after_help = "Examples:\n  berth port web\n  berth port web 80/tcp")]
    Port(networks::PortArgs),
    /// Display system-wide information.
    #[command(after_help = "Examples:\n  berth info\n  berth info -f '{{.CgroupVersion}}'")]
    Info(system::FormatArgs),
    /// Show the berth version information.
    #[command(after_help = "Example:\n  berth version -f json")]
    Version(system::FormatArgs),
    /// Manage berth: disk usage, pruning, information.
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Security helpers (the default seccomp profile).
    #[command(subcommand)]
    Security(security::SecurityCommand),
}

impl Command {
    /// Whether the command asked for `--explain` (the narration layer must
    /// be installed before anything runs; see crate::explain).
    pub fn explains(&self) -> bool {
        match self {
            Command::Container(c) => c.explains(),
            _ => false,
        }
    }

    /// Whether the command touches the store or the kernel (everything but
    /// printing what berth is): those need root, and say so up front rather
    /// than failing later with EPERM somewhere deep.
    pub fn needs_root(&self) -> bool {
        !matches!(self, Command::Version(_) | Command::Security(_))
    }
}

/// The error of a command run without root.
pub const NOT_ROOT: &str = "berth must run as root: a container needs mounts, namespaces, cgroups and network interfaces, which only root may create (berth has no rootless mode): run it with sudo, e.g. `sudo berth run --rm busybox echo hi`";

/// Run one command; `Ok(n)` is the exit status to return.
pub fn run(command: Command, ctx: &Context) -> anyhow::Result<u8> {
    match command {
        Command::Image(command) => images::run(command, ctx),
        Command::Container(command) => containers::run(command, ctx),
        Command::Inspect(args) => inspect::run(args, ctx),
        Command::Exec(args) => exec::run(args, ctx),
        Command::Top(args) => top::run(args, ctx),
        Command::Stats(args) => stats::run(args, ctx),
        Command::Build(args) => build::run(args, ctx),
        Command::Registry(command) => registry::run(command, ctx),
        Command::Compose(args) => compose::run(args, ctx),
        Command::Volume(command) => volumes::run(command, ctx),
        Command::Network(command) => networks::run(command, ctx),
        Command::Port(args) => networks::port(args, ctx),
        Command::Info(args) => system::info(args, ctx),
        Command::Version(args) => system::version(args),
        Command::System(command) => system::run(command, ctx),
        Command::Security(command) => security::run(command),
    }
}

/// The exit status for an error that reached the top: a command may attach an
/// [`ExitStatus`] to say which (126, 127, ...); everything else is 125.
pub fn exit_status_of(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<ExitStatus>()
        .map(|s| s.0)
        .unwrap_or(crate::EXIT_ENGINE_ERROR)
}

/// An error that carries its own exit status (e.g. 126/127 from `run`).
#[derive(Debug)]
pub struct ExitStatus(pub u8);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

//! `berth`: the docker-style command line over berth-engine.
//!
//! This file holds only what every command shares: the global flags, logging,
//! and the mapping from errors to docker's exit codes (125 when berth itself
//! fails). Each group of commands lives in its own module under `commands/`.

mod commands;
mod format;
mod template;

use std::path::PathBuf;
use std::process::ExitCode;

use berth_engine::paths::{Roots, DEFAULT_ROOT, DEFAULT_STATE};
use clap::Parser;

/// The exit status docker uses when the engine itself fails (bad flag, no such
/// image, ...), as opposed to the container's own status.
pub const EXIT_ENGINE_ERROR: u8 = 125;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "A daemonless container engine with docker's command line",
    after_help = "Example:\n  berth load -i busybox.tar && berth images"
)]
struct Cli {
    /// Directory for images, containers and volumes.
    #[arg(long, global = true, env = "BERTH_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR")]
    root: PathBuf,

    /// Directory for per-boot state (pids, sockets).
    #[arg(long, global = true, env = "BERTH_STATE", default_value = DEFAULT_STATE, value_name = "DIR")]
    state: PathBuf,

    /// Logging level: error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    log_level: String,

    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_ENGINE_ERROR),
            };
        }
    };
    if let Err(err) = init_logging(&cli.log_level) {
        eprintln!("berth: {err:#}");
        return ExitCode::from(EXIT_ENGINE_ERROR);
    }
    let ctx = commands::Context {
        roots: Roots::new(cli.root, cli.state),
    };
    match commands::run(cli.command, &ctx) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("berth: {err:#}");
            ExitCode::from(commands::exit_status_of(&err))
        }
    }
}

/// Send `tracing` events to stderr at the requested level; `RUST_LOG`, when
/// set, takes precedence so a learner can narrow it to one module.
fn init_logging(level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(spec)?,
        _ => {
            let level: tracing::Level = level.parse().map_err(|_| {
                anyhow::anyhow!(
                    "invalid --log-level {level:?}: use error, warn, info, debug or trace"
                )
            })?;
            EnvFilter::new(level.as_str().to_ascii_lowercase())
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    Ok(())
}

//! `berth`: the docker-style command line over berth-engine.
//!
//! This file holds only what every command shares: the global flags, logging,
//! and the mapping from errors to docker's exit codes (125 when berth itself
//! fails). Each group of commands lives in its own module under `commands/`.

mod commands;
mod explain;
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
    after_help = "Examples:\n  berth load -i busybox.tar && berth images\n  berth run --rm busybox echo hello\n  berth run --explain --rm busybox true     (narrates each step berth asks of the kernel)\n  berth inspect --kernel web                (a running container seen from the kernel's side)\n\nA guided tour of the internals: docs/tour/README.md"
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
    // Commands that put processes into containers run from a read-only view
    // of this binary (CVE-2019-5736; runtime sealed_exe).
    if commands::security::starts_container_processes(&cli.command) {
        // The monitors these commands fork live as long as their containers:
        // they run with a leaner heap (engine container::memory).
        berth_engine::container::memory::tune_allocator_for_monitors();
        if let Err(err) = berth_engine::security::sealed_exe::reexec_protected() {
            eprintln!("berth: {err}");
            return ExitCode::from(EXIT_ENGINE_ERROR);
        }
    }
    if cli.command.needs_root() && !nix::unistd::Uid::effective().is_root() {
        eprintln!("berth: {}", commands::NOT_ROOT);
        return ExitCode::from(EXIT_ENGINE_ERROR);
    }
    if let Err(err) = init_logging(&cli.log_level, cli.command.explains()) {
        eprintln!("berth: {err:#}");
        return ExitCode::from(EXIT_ENGINE_ERROR);
    }
    let ctx = commands::Context {
        // Absolute: a container's monitor works from `/`.
        roots: Roots::new(absolute(cli.root), absolute(cli.state)),
    };
    match commands::run(cli.command, &ctx) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            // A bare exit status was explained by the command already.
            if err.downcast_ref::<commands::ExitStatus>().is_none() {
                eprintln!("berth: {err:#}");
            }
            ExitCode::from(commands::exit_status_of(&err))
        }
    }
}

/// `path` made absolute against the working directory (unchanged if that fails).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// Send `tracing` events to stderr at the requested level; `RUST_LOG`, when
/// set, takes precedence so a learner can narrow it to one module. With
/// `explain`, the steps are narrated too (see [`explain`]). Both write
/// through berth_runtime::diagnostics, so the container's init narrates to
/// this terminal rather than into the container's own stderr.
fn init_logging(level: &str, explain: bool) -> anyhow::Result<()> {
    use tracing_subscriber::prelude::*;
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
    // The monitor starts the container before it reports, so the container's
    // init may narrate to our stderr until its execve.
    berth_runtime::diagnostics::keep_for_container_processes();
    let log = tracing_subscriber::fmt::layer()
        .with_writer(berth_runtime::diagnostics::writer)
        .with_target(false)
        .with_filter(filter);
    let narration =
        explain.then(|| explain::ExplainLayer::default().with_filter(explain::StepsOnly));
    if explain {
        eprint!("{}", explain::header());
    }
    tracing_subscriber::registry()
        .with(log)
        .with(narration)
        .init();
    Ok(())
}

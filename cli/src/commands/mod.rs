//! The command groups of `berth`. Each module owns a clap `Subcommand` enum that
//! is flattened into [`Command`], and a `run` function returning the process
//! exit status.

use berth_engine::paths::Roots;
use clap::Subcommand;

/// What every command needs: where the state lives.
#[derive(Debug)]
pub struct Context {
    pub roots: Roots,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

/// Run one command; `Ok(n)` is the exit status to return.
pub fn run(command: Command, _ctx: &Context) -> anyhow::Result<u8> {
    match command {}
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

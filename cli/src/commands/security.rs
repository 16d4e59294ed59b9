//! The security flags of `run`/`create` (`--privileged`, `--cap-add`,
//! `--cap-drop`, `--security-opt`, `--device`), `berth security
//! seccomp-profile`, and which commands must run from a read-only view of
//! the berth binary (CVE-2019-5736, see engine `security::sealed_exe`).

use berth_engine::security::{default_seccomp, SecurityConfig, SecurityFlags};
use clap::{Args, Subcommand};

use super::containers::ContainerCommand;
use super::Command;

/// Flattened into `run`/`create`'s flags.
#[derive(Debug, Args, Default)]
pub struct SecurityArgs {
    /// Give extended privileges to this container (every capability and
    /// device, no seccomp, nothing masked).
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities (NET_ADMIN, CAP_SYS_TIME, ... or ALL).
    #[arg(long = "cap-add", value_name = "LIST")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (CHOWN, ... or ALL).
    #[arg(long = "cap-drop", value_name = "LIST")]
    pub cap_drop: Vec<String>,
    /// Security options: no-new-privileges, seccomp=unconfined|PROFILE.json,
    /// systempaths=unconfined.
    #[arg(long = "security-opt", value_name = "LIST")]
    pub security_opt: Vec<String>,
    /// Add a host device to the container (HOST[:CONTAINER[:PERMISSIONS]]).
    #[arg(long = "device", value_name = "LIST")]
    pub devices: Vec<String>,
}

impl SecurityArgs {
    /// Checked and recorded settings (a seccomp profile file is read now).
    pub fn config(&self) -> anyhow::Result<SecurityConfig> {
        Ok(SecurityConfig::from_flags(&SecurityFlags {
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            security_opt: self.security_opt.clone(),
            devices: self.devices.clone(),
        })?)
    }
}

#[derive(Debug, Subcommand)]
pub enum SecurityCommand {
    /// Print berth's default seccomp profile in docker's format (a starting
    /// point for --security-opt seccomp=FILE).
    #[command(
        name = "seccomp-profile",
        after_help = "Example:\n  berth security seccomp-profile > mine.json   # edit, then\n  berth run --security-opt seccomp=mine.json busybox"
    )]
    SeccompProfile,
}

pub fn run(command: SecurityCommand) -> anyhow::Result<u8> {
    match command {
        SecurityCommand::SeccompProfile => {
            let profile = default_seccomp::default_profile();
            println!("{}", serde_json::to_string_pretty(&profile)?);
            Ok(0)
        }
    }
}

/// Does `command` put processes into containers? Those run from a
/// read-only view of the berth binary, so that a container cannot overwrite
/// it through /proc/PID/exe.
pub fn starts_container_processes(command: &Command) -> bool {
    match command {
        Command::Container(c) => matches!(
            c,
            ContainerCommand::Run(_) | ContainerCommand::Start(_) | ContainerCommand::Restart(_)
        ),
        Command::Exec(_) | Command::Build(_) => true,
        Command::Compose(c) => c.starts_container_processes(),
        _ => false,
    }
}

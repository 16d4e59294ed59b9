//! `berth top`: the processes of a container, as docker shows them: the host's
//! `ps` output (default `-ef`, or the options given), keeping the rows whose
//! PID lives in the container's pid namespace (same `/proc/PID/ns/pid` inode
//! as the container's PID 1).

use std::process::Command;

use anyhow::{bail, Context as _};
use berth_engine::container::lifecycle;
use clap::Args;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
    /// Options for ps (default: -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

pub fn run(args: TopArgs, ctx: &Context) -> anyhow::Result<u8> {
    let record = lifecycle::find(&ctx.roots, &args.container)?;
    let Some(pid) = record.state.pid.filter(|_| record.state.status.is_active()) else {
        bail!("Container {} is not running", record.id);
    };
    let namespace = std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .with_context(|| format!("read the pid namespace of PID {pid}"))?;
    let members = pids_in_namespace(&namespace);
    let options = if args.ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        args.ps_options
    };
    let output = Command::new("ps")
        .args(&options)
        .output()
        .context("run ps (install procps)")?;
    if !output.status.success() {
        bail!(
            "ps {}: {}",
            options.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("Couldn't find PID field in ps output")?;
    println!("{header}");
    for line in lines {
        let listed = line
            .split_whitespace()
            .nth(pid_column)
            .and_then(|p| p.parse::<i32>().ok());
        if listed.is_some_and(|p| members.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}

fn pids_in_namespace(namespace: &std::path::Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns == namespace)
        })
        .collect()
}

//! `berth build`: docker's classic builder flags and output; the work is
//! done by `berth_engine::build`. Exit status 1 when the build fails, as
//! `docker build` does.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::bail;
use berth_engine::build::{self, BuildOptions};
use clap::Args;

use super::Context;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the 'name:tag' format (repeatable)
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: 'PATH/Dockerfile')
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set build-time variables (NAME=VALUE, or NAME to take it from the environment)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_args: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Set the target build stage to build
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Networking mode for the RUN instructions: 'default' (a private
    /// namespace with loopback only) or 'host'
    #[arg(long, default_value = "default", value_name = "MODE")]
    network: String,
    /// Always remove intermediate containers (berth always does; accepted for docker compatibility)
    #[arg(long, hide = true)]
    rm: bool,
    /// The build context: a directory
    #[arg(value_name = "PATH")]
    context: PathBuf,
}

pub fn run(args: BuildArgs, ctx: &Context) -> anyhow::Result<u8> {
    match build(args, ctx) {
        Ok(status) => Ok(status),
        Err(err) => {
            eprintln!("berth: {err:#}");
            Ok(1)
        }
    }
}

fn build(args: BuildArgs, ctx: &Context) -> anyhow::Result<u8> {
    let host_network = match args.network.as_str() {
        "default" | "bridge" | "none" => false,
        "host" => true,
        other => bail!("invalid --network {other:?}: use default or host"),
    };
    for tag in &args.tags {
        if let Err(e) = berth_engine::image::Reference::parse(tag) {
            bail!("invalid argument {tag:?} for \"-t, --tag\" flag: {e}");
        }
    }
    let mut build_args = Vec::new();
    for arg in &args.build_args {
        match arg.split_once('=') {
            Some((name, value)) => build_args.push((name.to_string(), value.to_string())),
            None => {
                if let Ok(value) = std::env::var(arg) {
                    build_args.push((arg.clone(), value));
                }
            }
        }
    }
    let options = BuildOptions {
        context: args.context,
        dockerfile: args.file,
        tags: args.tags,
        build_args,
        no_cache: args.no_cache,
        target: args.target,
        host_network,
    };
    let result = if args.quiet {
        build::build(&ctx.roots, &options, &mut io::sink())?
    } else {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        build::build(&ctx.roots, &options, &mut out)?
    };
    if args.quiet {
        writeln!(io::stdout(), "{}", result.id)?;
    }
    Ok(0)
}

//! Registry commands: `pull`, `push`, `login`, `logout`, `search`, with
//! docker's flags and output; the protocol is in `berth_engine::registry`.
//! Credentials: docker's config.json (`$REGISTRY_AUTH_FILE`, else
//! `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).

use std::io::{self, BufRead, IsTerminal, Read, Write};

use anyhow::{bail, Context as _};
use berth_engine::progress::Progress;
use berth_engine::registry::{
    self, CredentialStore, Credentials, PullOptions, PushOptions, SearchOptions,
};
use clap::{Args, Subcommand};

use super::Context;

/// The registry commands, flattened into berth's top-level command list.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Download an image from a registry
    #[command(
        after_help = "Examples:\n  berth pull localhost:5000/app:1.0\n  berth pull localhost:5000/app@sha256:<digest>"
    )]
    Pull(PullArgs),
    /// Upload an image to a registry
    #[command(
        after_help = "Example:\n  berth tag app localhost:5000/app:1.0 && berth push localhost:5000/app:1.0"
    )]
    Push(PushArgs),
    /// Log in to a registry (credentials kept in docker's config.json, mode 0600)
    #[command(
        after_help = "Example:\n  echo \"$PASSWORD\" | berth login -u alice --password-stdin localhost:5000"
    )]
    Login(LoginArgs),
    /// Log out from a registry
    #[command(after_help = "Example:\n  berth logout localhost:5000")]
    Logout(LogoutArgs),
    /// Search a registry's catalog for repositories
    #[command(
        after_help = "Example:\n  berth search localhost:5000/app\n\nOnly registries offering /v2/_catalog can be searched (not Docker Hub)."
    )]
    Search(SearchArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Set platform if the image is multi-platform (os/arch[/variant])
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Allow plain HTTP and unverified TLS for this registry
    #[arg(long)]
    insecure: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    image: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Allow plain HTTP and unverified TLS for this registry
    #[arg(long)]
    insecure: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    #[arg(value_name = "NAME[:TAG]")]
    image: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin: a flag shows in the process list)
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Allow plain HTTP and unverified TLS for this registry
    #[arg(long)]
    insecure: bool,
    /// The registry (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Max number of search results
    #[arg(long, default_value_t = 25)]
    limit: usize,
    /// Allow plain HTTP and unverified TLS for this registry
    #[arg(long)]
    insecure: bool,
    /// REGISTRY/TERM (the registry must offer the catalog API)
    #[arg(value_name = "TERM")]
    term: String,
}

/// Run a registry command; failures print one line and exit 1, as docker's do.
pub fn run(command: RegistryCommand, ctx: &Context) -> anyhow::Result<u8> {
    let result = match command {
        RegistryCommand::Pull(args) => pull(args, ctx),
        RegistryCommand::Push(args) => push(args, ctx),
        RegistryCommand::Login(args) => login(args),
        RegistryCommand::Logout(args) => logout(args),
        RegistryCommand::Search(args) => search(args),
    };
    match result {
        Ok(status) => Ok(status),
        Err(err) => {
            eprintln!("berth: {err:#}");
            Ok(1)
        }
    }
}

fn pull(args: PullArgs, ctx: &Context) -> anyhow::Result<u8> {
    let options = PullOptions {
        insecure: args.insecure,
        platform: args.platform,
    };
    let progress = Progress::new(!args.quiet && io::stderr().is_terminal());
    let credentials = CredentialStore::default_location();
    let result = if args.quiet {
        registry::pull(
            &ctx.roots,
            &args.image,
            &options,
            &credentials,
            &mut io::sink(),
            &progress,
        )?
    } else {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        registry::pull(
            &ctx.roots,
            &args.image,
            &options,
            &credentials,
            &mut out,
            &progress,
        )?
    };
    writeln!(io::stdout(), "{}", result.name)?;
    Ok(0)
}

fn push(args: PushArgs, ctx: &Context) -> anyhow::Result<u8> {
    let options = PushOptions {
        insecure: args.insecure,
    };
    let credentials = CredentialStore::default_location();
    if args.quiet {
        let result = registry::push(
            &ctx.roots,
            &args.image,
            &options,
            &credentials,
            &mut io::sink(),
        )?;
        writeln!(io::stdout(), "{}", result.digest)?;
    } else {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        registry::push(&ctx.roots, &args.image, &options, &credentials, &mut out)?;
    }
    Ok(0)
}

fn login(args: LoginArgs) -> anyhow::Result<u8> {
    let domain = registry::registry_of_server(args.server.as_deref());
    let username = match args.username {
        Some(u) => u,
        None => {
            if !io::stdin().is_terminal() {
                bail!("cannot perform an interactive login from a non TTY device: give -u USERNAME and --password-stdin");
            }
            prompt("Username: ", true)?
        }
    };
    let password = if args.password_stdin {
        if args.password.is_some() {
            bail!("--password and --password-stdin are mutually exclusive");
        }
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        if !io::stdin().is_terminal() {
            bail!(
                "cannot perform an interactive login from a non TTY device: use --password-stdin"
            );
        }
        prompt("Password: ", false)?
    };
    if username.is_empty() || password.is_empty() {
        bail!("Error: Non-null Username and Password Required");
    }
    let store = CredentialStore::default_location();
    let credentials = Credentials { username, password };
    registry::login(&domain, &credentials, args.insecure, &store)?;
    eprintln!(
        "Credentials saved in {} (mode 0600)",
        store.path().display()
    );
    println!("Login Succeeded");
    Ok(0)
}

/// Read one line from the terminal; without echo for passwords.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    eprint!("{label}");
    io::stderr().flush()?;
    let stdin = io::stdin();
    let saved = if echo { None } else { tcgetattr(&stdin).ok() };
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let result = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, saved);
        eprintln!();
    }
    result.context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn logout(args: LogoutArgs) -> anyhow::Result<u8> {
    let domain = registry::registry_of_server(args.server.as_deref());
    let store = CredentialStore::default_location();
    let shown = args
        .server
        .clone()
        .unwrap_or_else(|| registry::auth::DOCKER_HUB_AUTH_KEY.to_string());
    if registry::logout(&domain, &store)? {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(0)
}

fn search(args: SearchArgs) -> anyhow::Result<u8> {
    let (registry_name, term) = registry::search::split_term(&args.term);
    let options = SearchOptions {
        limit: args.limit,
        insecure: args.insecure,
    };
    let found = registry::search(
        &registry_name,
        &term,
        &options,
        &CredentialStore::default_location(),
    )?;
    let mut out = io::stdout().lock();
    writeln!(out, "NAME")?;
    for name in found {
        writeln!(out, "{name}")?;
    }
    Ok(0)
}

//! The flags of `berth run` and `berth create`, with docker's names and
//! parsing rules (sizes like `64m`, `--env-file`, `--cpus 1.5`, ...).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use berth_engine::container::spec::RunRequest;
use berth_engine::container::{HostConfig, RestartPolicy};
use berth_engine::network::ports::parse_publish;
use berth_engine::network::{NetworkMode, PortSpec};
use berth_engine::volume::{spec, MountSpec};
use clap::Args;

/// Options shared by `run` and `create`.
#[derive(Debug, Args)]
pub struct RunFlags {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables (KEY=VALUE, or KEY to copy it from berth's environment).
    #[arg(short = 'e', long = "env", value_name = "LIST")]
    pub env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Set metadata on a container (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// Tune container pids limit (set -1 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Signal to stop the container.
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container.
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u32>,
    /// Mount the container's root filesystem as read only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Restart policy to apply when a container exits (no, on-failure[:N], always, unless-stopped).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Write the container ID to the file.
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// Attach to STDIN, STDOUT or STDERR.
    #[arg(short = 'a', long = "attach", value_name = "STREAM")]
    pub attach: Vec<String>,
    /// Proxy received signals to the process.
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Connect a container to a network (bridge, none, host, container:NAME, or a network's name).
    #[arg(long = "network", alias = "net", default_value = "bridge")]
    pub network: String,
    /// Add a network-scoped alias for the container (user networks).
    #[arg(long = "network-alias", alias = "net-alias", value_name = "NAME")]
    pub network_aliases: Vec<String>,
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto]).
    #[arg(short = 'p', long = "publish", value_name = "LIST")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Bind mount a volume ([SOURCE:]TARGET[:OPTIONS]).
    #[arg(short = 'v', long = "volume", value_name = "LIST")]
    pub volumes: Vec<String>,
    /// Attach a filesystem mount (type=bind|volume|tmpfs,source=...,target=...[,readonly]).
    #[arg(long = "mount", value_name = "MOUNT")]
    pub mounts: Vec<String>,
    /// Mount a tmpfs directory (PATH[:OPTIONS]).
    #[arg(long = "tmpfs", value_name = "PATH")]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s) (CONTAINER[:ro|:rw]).
    #[arg(long = "volumes-from", value_name = "CONTAINER")]
    pub volumes_from: Vec<String>,
    /// --privileged, --cap-add, --cap-drop, --security-opt, --device.
    #[command(flatten)]
    pub security: super::security::SecurityArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The image, then the command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub image_and_command: Vec<String>,
}

impl RunFlags {
    pub fn image(&self) -> &str {
        &self.image_and_command[0]
    }

    pub fn command(&self) -> Vec<String> {
        self.image_and_command[1..].to_vec()
    }

    /// The merge inputs for the engine (env files read, labels split).
    pub fn run_request(&self) -> anyhow::Result<RunRequest> {
        let mut env = Vec::new();
        for file in &self.env_file {
            env.extend(read_env_file(file)?);
        }
        for entry in &self.env {
            env.extend(expand_env_entry(entry));
        }
        Ok(RunRequest {
            entrypoint: self.entrypoint.clone(),
            command: self.command(),
            env,
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self
                .hostname
                .clone()
                .or_else(|| self.host_network_hostname()),
            labels: parse_labels(&self.labels)?,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            tty: self.tty,
            open_stdin: self.interactive,
            // The image's HEALTHCHECK applies as it is (no --health-* flags yet).
            healthcheck: None,
        })
    }

    /// With `--network host` (and no `--hostname`) the container takes the
    /// host's name, as docker does.
    fn host_network_hostname(&self) -> Option<String> {
        (self.network == "host")
            .then(|| nix::unistd::gethostname().ok())
            .flatten()
            .map(|h| h.to_string_lossy().into_owned())
    }

    /// Limits and policies, checked the way docker checks them.
    pub fn host_config(&self, auto_remove: bool) -> anyhow::Result<HostConfig> {
        let memory = self
            .memory
            .as_deref()
            .map(parse_bytes)
            .transpose()?
            .unwrap_or(0);
        if memory > 0 && memory < 6 * 1024 * 1024 {
            bail!("Minimum memory limit allowed is 6MB");
        }
        let memory_swap = match self.memory_swap.as_deref() {
            None => 0,
            Some("-1") => -1,
            Some(text) => parse_bytes(text)?,
        };
        if memory_swap > 0 && memory == 0 {
            bail!("You should always set the Memory limit when using Memoryswap limit, see usage");
        }
        if memory_swap > 0 && memory_swap < memory {
            bail!("Minimum memoryswap limit should be larger than memory limit, see usage");
        }
        let nano_cpus = match self.cpus {
            None => 0,
            Some(cpus) if cpus > 0.0 && cpus.is_finite() => (cpus * 1e9) as i64,
            Some(cpus) => bail!("invalid --cpus {cpus}: give a positive number of CPUs, like 1.5"),
        };
        let restart_policy = RestartPolicy::parse(&self.restart).map_err(anyhow::Error::msg)?;
        if auto_remove && restart_policy != RestartPolicy::No {
            bail!("Conflicting options: --restart and --rm");
        }
        let network_mode = NetworkMode::parse(&self.network)?.as_string();
        Ok(HostConfig {
            memory,
            memory_swap,
            nano_cpus,
            cpu_shares: self.cpu_shares.unwrap_or(0),
            pids_limit: self.pids_limit,
            read_only_rootfs: self.read_only,
            init: self.init,
            restart_policy,
            auto_remove,
            network_mode,
            mounts: self.mounts()?,
            port_bindings: self.port_bindings()?,
            publish_all: self.publish_all,
            network_aliases: self.network_aliases.clone(),
            security: self.security.config()?,
        })
    }

    /// `-v`, `--mount` and `--tmpfs`, parsed and checked (`--volumes-from`
    /// is resolved by the engine, which can look the other container up).
    pub fn mounts(&self) -> anyhow::Result<Vec<MountSpec>> {
        let mut mounts = Vec::new();
        for text in &self.volumes {
            mounts.push(spec::parse_volume_flag(text).map_err(anyhow::Error::msg)?);
        }
        for text in &self.mounts {
            mounts.push(spec::parse_mount_flag(text).map_err(anyhow::Error::msg)?);
        }
        for text in &self.tmpfs {
            mounts.push(spec::parse_tmpfs_flag(text).map_err(anyhow::Error::msg)?);
        }
        for text in &self.volumes_from {
            spec::parse_volumes_from(text).map_err(anyhow::Error::msg)?;
        }
        spec::check_duplicates(&mounts).map_err(anyhow::Error::msg)?;
        Ok(mounts)
    }

    /// `-p`, each value expanded (ranges give one binding per port).
    pub fn port_bindings(&self) -> anyhow::Result<Vec<PortSpec>> {
        let mut bindings = Vec::new();
        for text in &self.publish {
            bindings.extend(parse_publish(text).map_err(anyhow::Error::msg)?);
        }
        Ok(bindings)
    }

    /// Which streams to attach (`-a`), docker's default being stdout and stderr
    /// plus stdin with `-i`.
    pub fn attach_streams(&self) -> anyhow::Result<(bool, bool, bool)> {
        if self.attach.is_empty() {
            return Ok((self.interactive, true, true));
        }
        let mut streams = (false, false, false);
        for stream in &self.attach {
            match stream.to_ascii_lowercase().as_str() {
                "stdin" => streams.0 = true,
                "stdout" => streams.1 = true,
                "stderr" => streams.2 = true,
                other => bail!(
                    "invalid argument {other:?} for \"-a, --attach\": use stdin, stdout or stderr"
                ),
            }
        }
        Ok(streams)
    }
}

/// docker's RAMInBytes: a number with an optional unit b, k, m, g, t, p
/// (binary multiples), optionally followed by `b` (`64m`, `64mb`, `1G`).
pub fn parse_bytes(text: &str) -> anyhow::Result<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let value: f64 = number.parse().with_context(|| {
        format!("invalid size {text:?}: use a number with an optional unit, like 64m or 1g")
    })?;
    let multiplier: f64 = match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => bail!("invalid size {text:?}: the unit must be b, k, m, g, t or p"),
    };
    if unit.len() > 2 || (unit.len() == 2 && !unit.ends_with('b')) {
        bail!("invalid size {text:?}: the unit must be b, k, m, g, t or p");
    }
    Ok((value * multiplier) as i64)
}

/// `-e KEY=VALUE` as given; `-e KEY` takes KEY's value from our environment
/// (and is dropped if it has none), as docker does.
fn expand_env_entry(entry: &str) -> Option<String> {
    if entry.contains('=') {
        return Some(entry.to_string());
    }
    std::env::var(entry)
        .ok()
        .map(|value| format!("{entry}={value}"))
}

/// An env file: one `KEY=VALUE` or `KEY` per line; `#` comments and blank
/// lines are skipped.
pub fn read_env_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("open env file {}", path.display()))?;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split('=').next().unwrap_or_default();
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!(
                "{}:{}: variable {key:?} contains whitespaces or is empty",
                path.display(),
                number + 1
            );
        }
        entries.extend(expand_env_entry(line));
    }
    Ok(entries)
}

/// `-l KEY=VALUE` (or `KEY`, an empty value).
pub fn parse_labels(labels: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for label in labels {
        let (key, value) = label.split_once('=').unwrap_or((label.as_str(), ""));
        if key.is_empty() {
            bail!("invalid label {label:?}: the key is empty");
        }
        map.insert(key.to_string(), value.to_string());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_dockers_ram_in_bytes() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("m").is_err());
        assert!(parse_bytes("5kbb").is_err());
    }

    #[test]
    fn env_files_skip_comments_and_reject_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(&path, "# comment\n\nA=1\nB=two words\n").unwrap();
        assert_eq!(read_env_file(&path).unwrap(), vec!["A=1", "B=two words"]);
        std::fs::write(&path, "BAD KEY=1\n").unwrap();
        let err = read_env_file(&path).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
    }

    #[test]
    fn labels_split_at_the_first_equals() {
        let labels = parse_labels(&["a=b=c".into(), "flag".into()]).unwrap();
        assert_eq!(labels["a"], "b=c");
        assert_eq!(labels["flag"], "");
        assert!(parse_labels(&["=x".into()]).is_err());
    }
}

//! The compose model: the part of the Compose specification berth runs,
//! decoded from the YAML tree key by key.
//!
//! Every mapping is checked against the keys berth knows. A key of the
//! Compose specification that berth does not implement is refused with
//! "not supported", any other key as unknown (with the closest known key as
//! a hint); both name the file, the line and the key's path, so a typo
//! never silently does nothing. Keys starting with `x-` are extensions and
//! are ignored, as the specification says.

use std::collections::BTreeMap;

use serde::Serialize;

use super::yaml::{Key, Kind, Node, Sources};
use crate::container::health::Healthcheck;

/// A decoded compose file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComposeFile {
    /// Top-level `name:` (the project name unless `-p` says otherwise).
    pub name: Option<String>,
    /// In file order.
    pub services: Vec<Service>,
    pub volumes: Vec<VolumeDef>,
    pub networks: Vec<NetworkDef>,
    /// Things worth telling the user (`version` is obsolete, ...).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl ComposeFile {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One service.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Service {
    pub name: String,
    #[serde(skip)]
    pub line: usize,
    pub image: Option<String>,
    pub build: Option<Build>,
    /// `command:` (a string is split as a shell would).
    pub command: Option<Vec<String>>,
    /// `entrypoint:`; `Some([])` clears the image's.
    pub entrypoint: Option<Vec<String>>,
    /// `environment:`; a None value is taken from the environment.
    pub environment: Vec<(String, Option<String>)>,
    pub env_file: Vec<EnvFile>,
    /// docker's `-p` syntax, one entry per port spec.
    pub ports: Vec<String>,
    pub volumes: Vec<ServiceVolume>,
    /// `tmpfs:` paths (`/run` or `/run:size=64m`).
    pub tmpfs: Vec<String>,
    /// The project networks the service joins (empty: the default network).
    pub networks: Vec<ServiceNetwork>,
    /// `network_mode:` (`none`, `host`, `bridge`).
    pub network_mode: Option<String>,
    pub depends_on: Vec<Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Option<String>,
    pub stop_signal: Option<String>,
    /// Seconds.
    pub stop_grace_period: Option<u32>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub container_name: Option<String>,
    pub hostname: Option<String>,
    pub init: bool,
    pub read_only: bool,
    pub tty: bool,
    pub stdin_open: bool,
    pub pids_limit: Option<i64>,
    /// `cpus:` as nano CPUs.
    pub nano_cpus: Option<i64>,
}

/// `build:`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Build {
    pub context: String,
    pub dockerfile: Option<String>,
    pub args: Vec<(String, Option<String>)>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvFile {
    pub path: String,
    pub required: bool,
}

/// A service's mount, as written (sources are resolved by the project).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceVolume {
    pub kind: VolumeKind,
    /// Host path (bind), volume key (volume), None (anonymous volume, tmpfs).
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    /// Bind: create a missing host directory (short syntax always does).
    pub create_host_path: bool,
    /// Volume: do not copy the image's content into a new volume.
    pub nocopy: bool,
    /// tmpfs options (`size=...`).
    pub tmpfs_options: Vec<String>,
    #[serde(skip)]
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeKind {
    Bind,
    Volume,
    Tmpfs,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceNetwork {
    /// The key under top-level `networks:` (or `default`).
    pub key: String,
    pub aliases: Vec<String>,
    #[serde(skip)]
    pub line: usize,
}

/// `depends_on:` entry.
#[derive(Debug, Clone, Serialize)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
    #[serde(skip)]
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

/// Top-level `volumes:` entry.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeDef {
    pub key: String,
    /// `name:` (otherwise PROJECT_KEY).
    pub name: Option<String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

/// Top-level `networks:` entry.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkDef {
    pub key: String,
    pub name: Option<String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    pub subnet: Option<String>,
}

/// Keys of the Compose specification that berth does not implement: named
/// as "not supported" rather than "unknown".
const UNSUPPORTED_SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "configs",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpuset",
    "credential_spec",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "driver_opts",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "platform",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "storage_opt",
    "sysctls",
    "ulimits",
    "use_api_socket",
    "userns_mode",
    "uts",
    "volumes_from",
];

const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "restart",
    "stop_signal",
    "stop_grace_period",
    "user",
    "working_dir",
    "labels",
    "container_name",
    "hostname",
    "init",
    "read_only",
    "tty",
    "stdin_open",
    "pids_limit",
    "cpus",
];

/// Reads the tree, producing errors that name the file, line and key path.
pub struct Decoder<'a> {
    pub sources: &'a Sources,
    pub warnings: Vec<String>,
}

type Result<T> = std::result::Result<T, String>;

impl Decoder<'_> {
    fn err(&self, line: usize, path: &str, message: impl std::fmt::Display) -> String {
        format!("{}: {path}: {message}", self.sources.at(line))
    }

    /// Decode the whole file.
    pub fn file(mut self, root: &Node) -> Result<ComposeFile> {
        let entries = match &root.kind {
            Kind::Map(entries) => entries,
            Kind::Null => {
                return Err(format!(
                    "{}: the file is empty: it needs a services: section",
                    self.sources.names()
                ))
            }
            _ => {
                return Err(self.err(
                    root.line,
                    "(top level)",
                    "the file must be a mapping with a services: section",
                ))
            }
        };
        let mut file = ComposeFile::default();
        let mut has_services = false;
        for (key, value) in entries {
            match key.name.as_str() {
                "version" => self.warnings.push(format!(
                    "{}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
                    self.sources.at(key.line)
                )),
                "name" => file.name = Some(self.string(value, "name")?),
                "services" => {
                    has_services = true;
                    for (name, service) in self.map_entries(value, "services")? {
                        file.services.push(self.service(name, service)?);
                    }
                }
                "volumes" => {
                    for (name, def) in self.map_entries(value, "volumes")? {
                        file.volumes.push(self.volume_def(name, def)?);
                    }
                }
                "networks" => {
                    for (name, def) in self.map_entries(value, "networks")? {
                        file.networks.push(self.network_def(name, def)?);
                    }
                }
                other if other.starts_with("x-") => {}
                "configs" | "secrets" | "include" | "models" => {
                    return Err(self.not_supported(key, "(top level)"))
                }
                _ => return Err(self.unknown(key, "(top level)", &["version", "name", "services", "volumes", "networks"])),
            }
        }
        if !has_services {
            return Err(format!(
                "{}: no services: section: a compose file needs at least one service",
                self.sources.names()
            ));
        }
        file.warnings = self.warnings;
        Ok(file)
    }

    fn not_supported(&self, key: &Key, path: &str) -> String {
        self.err(
            key.line,
            path,
            format!(
                "key {:?} is not supported by berth compose (see docs/compose.md for what is)",
                key.name
            ),
        )
    }

    fn unknown(&self, key: &Key, path: &str, known: &[&str]) -> String {
        let hint = closest(&key.name, known)
            .map(|k| format!(" (did you mean {k:?}?)"))
            .unwrap_or_default();
        self.err(key.line, path, format!("unknown key {:?}{hint}", key.name))
    }

    /// The entries of a mapping (null: none).
    fn map_entries<'n>(&self, node: &'n Node, path: &str) -> Result<Vec<(&'n Key, &'n Node)>> {
        match &node.kind {
            Kind::Map(entries) => Ok(entries.iter().map(|(k, v)| (k, v)).collect()),
            Kind::Null => Ok(Vec::new()),
            _ => Err(self.err(
                node.line,
                path,
                format!("must be a mapping, not {}", node.type_name()),
            )),
        }
    }

    fn service(&mut self, key: &Key, node: &Node) -> Result<Service> {
        let path = format!("services.{}", key.name);
        check_service_name(&key.name).map_err(|e| self.err(key.line, &path, e))?;
        let mut s = Service {
            name: key.name.clone(),
            line: key.line,
            ..Default::default()
        };
        for (k, v) in self.map_entries(node, &path)? {
            let p = format!("{path}.{}", k.name);
            match k.name.as_str() {
                "image" => s.image = Some(self.string(v, &p)?),
                "build" => s.build = Some(self.build(v, &p)?),
                "command" => s.command = self.command(v, &p)?,
                "entrypoint" => s.entrypoint = Some(self.command(v, &p)?.unwrap_or_default()),
                "environment" => s.environment = self.key_values(v, &p)?,
                "env_file" => s.env_file = self.env_files(v, &p)?,
                "ports" => s.ports = self.ports(v, &p)?,
                "volumes" => s.volumes = self.service_volumes(v, &p)?,
                "tmpfs" => s.tmpfs = self.string_or_list(v, &p)?,
                "networks" => s.networks = self.service_networks(v, &p)?,
                "network_mode" => s.network_mode = Some(self.string(v, &p)?),
                "depends_on" => s.depends_on = self.depends_on(v, &p)?,
                "healthcheck" => s.healthcheck = self.healthcheck(v, &p)?,
                "restart" => s.restart = Some(self.string(v, &p)?),
                "stop_signal" => s.stop_signal = Some(self.string(v, &p)?),
                "stop_grace_period" => s.stop_grace_period = Some(self.seconds(v, &p)?),
                "user" => s.user = Some(self.string(v, &p)?),
                "working_dir" => s.working_dir = Some(self.string(v, &p)?),
                "labels" => s.labels = self.labels(v, &p)?,
                "container_name" => s.container_name = Some(self.string(v, &p)?),
                "hostname" => s.hostname = Some(self.string(v, &p)?),
                "init" => s.init = self.bool(v, &p)?,
                "read_only" => s.read_only = self.bool(v, &p)?,
                "tty" => s.tty = self.bool(v, &p)?,
                "stdin_open" => s.stdin_open = self.bool(v, &p)?,
                "pids_limit" => s.pids_limit = Some(self.number::<i64>(v, &p)?),
                "cpus" => {
                    let cpus: f64 = self.number(v, &p)?;
                    if !(cpus > 0.0 && cpus.is_finite()) {
                        return Err(self.err(
                            v.line,
                            &p,
                            "must be a positive number of CPUs, like 0.5",
                        ));
                    }
                    s.nano_cpus = Some((cpus * 1e9) as i64);
                }
                other if other.starts_with("x-") => {}
                other if UNSUPPORTED_SERVICE_KEYS.contains(&other) => {
                    return Err(self.not_supported(k, &path))
                }
                _ => return Err(self.unknown(k, &path, SERVICE_KEYS)),
            }
        }
        if s.image.is_none() && s.build.is_none() {
            return Err(self.err(
                key.line,
                &path,
                "has neither an image nor a build context specified: give image: or build:",
            ));
        }
        if s.network_mode.is_some() && !s.networks.is_empty() {
            return Err(self.err(
                key.line,
                &path,
                "network_mode and networks cannot be combined",
            ));
        }
        Ok(s)
    }

    fn build(&self, node: &Node, path: &str) -> Result<Build> {
        if let Kind::Scalar { .. } = node.kind {
            return Ok(Build {
                context: self.string(node, path)?,
                ..Default::default()
            });
        }
        let mut build = Build {
            context: ".".into(),
            ..Default::default()
        };
        for (k, v) in self.map_entries(node, path)? {
            let p = format!("{path}.{}", k.name);
            match k.name.as_str() {
                "context" => build.context = self.string(v, &p)?,
                "dockerfile" => build.dockerfile = Some(self.string(v, &p)?),
                "args" => build.args = self.key_values(v, &p)?,
                "target" => build.target = Some(self.string(v, &p)?),
                other if other.starts_with("x-") => {}
                "additional_contexts"
                | "cache_from"
                | "cache_to"
                | "dockerfile_inline"
                | "entitlements"
                | "extra_hosts"
                | "isolation"
                | "labels"
                | "network"
                | "no_cache"
                | "platforms"
                | "privileged"
                | "pull"
                | "secrets"
                | "shm_size"
                | "ssh"
                | "tags"
                | "ulimits" => return Err(self.not_supported(k, path)),
                _ => {
                    return Err(self.unknown(k, path, &["context", "dockerfile", "args", "target"]))
                }
            }
        }
        Ok(build)
    }

    /// A scalar as text (numbers and booleans as written).
    pub fn string(&self, node: &Node, path: &str) -> Result<String> {
        match &node.kind {
            Kind::Scalar { text, .. } => Ok(text.clone()),
            _ => Err(self.err(
                node.line,
                path,
                format!("must be a string, not {}", node.type_name()),
            )),
        }
    }

    fn bool(&self, node: &Node, path: &str) -> Result<bool> {
        match &node.kind {
            Kind::Scalar {
                text,
                quoted: false,
            } if text == "true" => Ok(true),
            Kind::Scalar {
                text,
                quoted: false,
            } if text == "false" => Ok(false),
            _ => Err(self.err(node.line, path, "must be true or false")),
        }
    }

    fn number<T: std::str::FromStr>(&self, node: &Node, path: &str) -> Result<T> {
        self.string(node, path)?
            .parse()
            .map_err(|_| self.err(node.line, path, "must be a number"))
    }

    /// A Go duration (`10s`, `1m30s`), as whole seconds.
    fn seconds(&self, node: &Node, path: &str) -> Result<u32> {
        Ok((self.nanos(node, path)? / 1_000_000_000) as u32)
    }

    fn nanos(&self, node: &Node, path: &str) -> Result<i64> {
        let text = self.string(node, path)?;
        crate::build::dockerfile::parse_duration(&text)
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                self.err(
                    node.line,
                    path,
                    format!("invalid duration {text:?}: use a duration like 10s, 1m30s or 500ms"),
                )
            })
    }

    fn list<'n>(&self, node: &'n Node, path: &str) -> Result<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Ok(items),
            Kind::Null => Ok(&[]),
            _ => Err(self.err(
                node.line,
                path,
                format!("must be a list, not {}", node.type_name()),
            )),
        }
    }

    fn string_or_list(&self, node: &Node, path: &str) -> Result<Vec<String>> {
        match &node.kind {
            Kind::Scalar { .. } => Ok(vec![self.string(node, path)?]),
            _ => self
                .list(node, path)?
                .iter()
                .map(|n| self.string(n, path))
                .collect(),
        }
    }

    /// `command:`/`entrypoint:`: a list, or a string split as a shell would.
    fn command(&self, node: &Node, path: &str) -> Result<Option<Vec<String>>> {
        match &node.kind {
            Kind::Null => Ok(None),
            Kind::Scalar { text, .. } => split_shell_words(text)
                .map(Some)
                .map_err(|e| self.err(node.line, path, e)),
            _ => Ok(Some(self.string_or_list(node, path)?)),
        }
    }

    /// `KEY: value` mapping or `KEY=value` list; a key without a value is None.
    fn key_values(&self, node: &Node, path: &str) -> Result<Vec<(String, Option<String>)>> {
        match &node.kind {
            Kind::Map(entries) => entries
                .iter()
                .map(|(k, v)| match &v.kind {
                    Kind::Null => Ok((k.name.clone(), None)),
                    _ => Ok((
                        k.name.clone(),
                        Some(self.string(v, &format!("{path}.{}", k.name))?),
                    )),
                })
                .collect(),
            _ => self
                .list(node, path)?
                .iter()
                .map(|n| {
                    let text = self.string(n, path)?;
                    Ok(match text.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (text, None),
                    })
                })
                .collect(),
        }
    }

    fn labels(&self, node: &Node, path: &str) -> Result<BTreeMap<String, String>> {
        Ok(self
            .key_values(node, path)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect())
    }

    fn env_files(&self, node: &Node, path: &str) -> Result<Vec<EnvFile>> {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut files = Vec::new();
        for item in items {
            if let Kind::Map(_) = item.kind {
                let mut file = EnvFile {
                    path: String::new(),
                    required: true,
                };
                for (k, v) in self.map_entries(item, path)? {
                    match k.name.as_str() {
                        "path" => file.path = self.string(v, path)?,
                        "required" => file.required = self.bool(v, path)?,
                        "format" => return Err(self.not_supported(k, path)),
                        _ => return Err(self.unknown(k, path, &["path", "required"])),
                    }
                }
                files.push(file);
            } else {
                files.push(EnvFile {
                    path: self.string(item, path)?,
                    required: true,
                });
            }
        }
        Ok(files)
    }

    /// `ports:` short (`"8080:80"`, `80`) and long (`target:`, `published:`) syntax.
    fn ports(&self, node: &Node, path: &str) -> Result<Vec<String>> {
        let mut specs = Vec::new();
        for item in self.list(node, path)? {
            let spec = match &item.kind {
                Kind::Map(_) => {
                    let (mut target, mut published, mut host_ip, mut protocol) =
                        (None, None, None, None);
                    for (k, v) in self.map_entries(item, path)? {
                        match k.name.as_str() {
                            "target" => target = Some(self.string(v, path)?),
                            "published" => published = Some(self.string(v, path)?),
                            "host_ip" => host_ip = Some(self.string(v, path)?),
                            "protocol" => protocol = Some(self.string(v, path)?),
                            "mode" | "name" | "app_protocol" => {}
                            _ => {
                                return Err(self.unknown(
                                    k,
                                    path,
                                    &["target", "published", "host_ip", "protocol", "mode"],
                                ))
                            }
                        }
                    }
                    let target =
                        target.ok_or_else(|| self.err(item.line, path, "a port needs a target"))?;
                    let mut spec = String::new();
                    if let Some(ip) = host_ip {
                        spec.push_str(&if ip.contains(':') {
                            format!("[{ip}]:")
                        } else {
                            format!("{ip}:")
                        });
                        if published.is_none() {
                            spec.push(':');
                        }
                    }
                    if let Some(published) = published {
                        spec.push_str(&format!("{published}:"));
                    }
                    spec.push_str(&target);
                    if let Some(protocol) = protocol {
                        spec.push_str(&format!("/{protocol}"));
                    }
                    spec
                }
                _ => self.string(item, path)?,
            };
            crate::network::ports::parse_publish(&spec)
                .map_err(|e| self.err(item.line, path, e))?;
            specs.push(spec);
        }
        Ok(specs)
    }

    fn service_volumes(&self, node: &Node, path: &str) -> Result<Vec<ServiceVolume>> {
        self.list(node, path)?
            .iter()
            .map(|item| match &item.kind {
                Kind::Map(_) => self.long_volume(item, path),
                _ => {
                    let text = self.string(item, path)?;
                    short_volume(&text, item.line).map_err(|e| self.err(item.line, path, e))
                }
            })
            .collect()
    }

    fn long_volume(&self, node: &Node, path: &str) -> Result<ServiceVolume> {
        let mut volume = ServiceVolume {
            kind: VolumeKind::Volume,
            source: None,
            target: String::new(),
            read_only: false,
            create_host_path: false,
            nocopy: false,
            tmpfs_options: Vec::new(),
            line: node.line,
        };
        let mut kind = None;
        for (k, v) in self.map_entries(node, path)? {
            let p = format!("{path}.{}", k.name);
            match k.name.as_str() {
                "type" => {
                    kind = Some(match self.string(v, &p)?.as_str() {
                        "bind" => VolumeKind::Bind,
                        "volume" => VolumeKind::Volume,
                        "tmpfs" => VolumeKind::Tmpfs,
                        other => {
                            return Err(self.err(
                                v.line,
                                &p,
                                format!(
                                "volume type {other:?} is not supported: use bind, volume or tmpfs"
                            ),
                            ))
                        }
                    })
                }
                "source" => volume.source = Some(self.string(v, &p)?),
                "target" => volume.target = self.string(v, &p)?,
                "read_only" => volume.read_only = self.bool(v, &p)?,
                "bind" => {
                    for (bk, bv) in self.map_entries(v, &p)? {
                        match bk.name.as_str() {
                            "create_host_path" => volume.create_host_path = self.bool(bv, &p)?,
                            _ => return Err(self.not_supported(bk, &p)),
                        }
                    }
                }
                "volume" => {
                    for (vk, vv) in self.map_entries(v, &p)? {
                        match vk.name.as_str() {
                            "nocopy" => volume.nocopy = self.bool(vv, &p)?,
                            _ => return Err(self.not_supported(vk, &p)),
                        }
                    }
                }
                "tmpfs" => {
                    for (tk, tv) in self.map_entries(v, &p)? {
                        match tk.name.as_str() {
                            "size" | "mode" => volume.tmpfs_options.push(format!(
                                "{}={}",
                                tk.name,
                                self.string(tv, &p)?
                            )),
                            _ => return Err(self.not_supported(tk, &p)),
                        }
                    }
                }
                "consistency" => {}
                _ => {
                    return Err(self.unknown(
                        k,
                        path,
                        &[
                            "type",
                            "source",
                            "target",
                            "read_only",
                            "bind",
                            "volume",
                            "tmpfs",
                        ],
                    ))
                }
            }
        }
        volume.kind = kind.ok_or_else(|| {
            self.err(
                node.line,
                path,
                "a volume in the long syntax needs a type: bind, volume or tmpfs",
            )
        })?;
        if volume.target.is_empty() {
            return Err(self.err(
                node.line,
                path,
                "a volume needs a target (the path in the container)",
            ));
        }
        if volume.kind == VolumeKind::Bind && volume.source.is_none() {
            return Err(self.err(
                node.line,
                path,
                "a bind mount needs a source (the host path)",
            ));
        }
        Ok(volume)
    }

    fn service_networks(&self, node: &Node, path: &str) -> Result<Vec<ServiceNetwork>> {
        if let Kind::Map(entries) = &node.kind {
            let mut networks = Vec::new();
            for (k, v) in entries {
                let p = format!("{path}.{}", k.name);
                let mut network = ServiceNetwork {
                    key: k.name.clone(),
                    aliases: Vec::new(),
                    line: k.line,
                };
                for (nk, nv) in self.map_entries(v, &p)? {
                    match nk.name.as_str() {
                        "aliases" => network.aliases = self.string_or_list(nv, &p)?,
                        "ipv4_address" | "ipv6_address" | "link_local_ips" | "mac_address"
                        | "driver_opts" | "priority" | "gw_priority" | "interface_name" => {
                            return Err(self.not_supported(nk, &p))
                        }
                        _ => return Err(self.unknown(nk, &p, &["aliases"])),
                    }
                }
                networks.push(network);
            }
            return Ok(networks);
        }
        self.list(node, path)?
            .iter()
            .map(|n| {
                Ok(ServiceNetwork {
                    key: self.string(n, path)?,
                    aliases: Vec::new(),
                    line: n.line,
                })
            })
            .collect()
    }

    fn depends_on(&self, node: &Node, path: &str) -> Result<Vec<Dependency>> {
        if let Kind::Map(entries) = &node.kind {
            let mut deps = Vec::new();
            for (k, v) in entries {
                let p = format!("{path}.{}", k.name);
                let mut condition = Condition::ServiceStarted;
                for (dk, dv) in self.map_entries(v, &p)? {
                    match dk.name.as_str() {
                        "condition" => {
                            condition = match self.string(dv, &p)?.as_str() {
                                "service_started" => Condition::ServiceStarted,
                                "service_healthy" => Condition::ServiceHealthy,
                                "service_completed_successfully" => Condition::ServiceCompletedSuccessfully,
                                other => return Err(self.err(dv.line, &p, format!("unknown condition {other:?}: use service_started, service_healthy or service_completed_successfully"))),
                            }
                        }
                        "restart" | "required" => return Err(self.not_supported(dk, &p)),
                        _ => return Err(self.unknown(dk, &p, &["condition"])),
                    }
                }
                deps.push(Dependency {
                    service: k.name.clone(),
                    condition,
                    line: k.line,
                });
            }
            return Ok(deps);
        }
        self.list(node, path)?
            .iter()
            .map(|n| {
                Ok(Dependency {
                    service: self.string(n, path)?,
                    condition: Condition::ServiceStarted,
                    line: n.line,
                })
            })
            .collect()
    }

    fn healthcheck(&self, node: &Node, path: &str) -> Result<Option<Healthcheck>> {
        let mut check = Healthcheck::default();
        for (k, v) in self.map_entries(node, path)? {
            let p = format!("{path}.{}", k.name);
            match k.name.as_str() {
                "test" => {
                    check.test = match &v.kind {
                        Kind::Scalar { text, .. } => vec!["CMD-SHELL".into(), text.clone()],
                        _ => {
                            let test = self.string_or_list(v, &p)?;
                            match test.first().map(String::as_str) {
                                Some("CMD" | "CMD-SHELL" | "NONE") => test,
                                _ => return Err(self.err(
                                    v.line,
                                    &p,
                                    "a test list starts with \"CMD\", \"CMD-SHELL\" or \"NONE\"",
                                )),
                            }
                        }
                    }
                }
                "interval" => check.interval = self.nanos(v, &p)?,
                "timeout" => check.timeout = self.nanos(v, &p)?,
                "start_period" => check.start_period = self.nanos(v, &p)?,
                "start_interval" => check.start_interval = self.nanos(v, &p)?,
                "retries" => check.retries = self.number(v, &p)?,
                "disable" => {
                    if self.bool(v, &p)? {
                        check.test = vec!["NONE".into()];
                    }
                }
                _ => {
                    return Err(self.unknown(
                        k,
                        path,
                        &[
                            "test",
                            "interval",
                            "timeout",
                            "retries",
                            "start_period",
                            "start_interval",
                            "disable",
                        ],
                    ))
                }
            }
        }
        Ok(Some(check))
    }

    fn volume_def(&self, key: &Key, node: &Node) -> Result<VolumeDef> {
        let path = format!("volumes.{}", key.name);
        let mut def = VolumeDef {
            key: key.name.clone(),
            name: None,
            external: false,
            labels: BTreeMap::new(),
        };
        for (k, v) in self.map_entries(node, &path)? {
            let p = format!("{path}.{}", k.name);
            match k.name.as_str() {
                "name" => def.name = Some(self.string(v, &p)?),
                "external" => def.external = self.bool(v, &p)?,
                "labels" => def.labels = self.labels(v, &p)?,
                "driver" => {
                    let driver = self.string(v, &p)?;
                    if driver != "local" {
                        return Err(self.err(v.line, &p, format!("volume driver {driver:?} is not supported: berth has the local driver only")));
                    }
                }
                other if other.starts_with("x-") => {}
                "driver_opts" => return Err(self.not_supported(k, &path)),
                _ => return Err(self.unknown(k, &path, &["name", "external", "labels", "driver"])),
            }
        }
        Ok(def)
    }

    fn network_def(&self, key: &Key, node: &Node) -> Result<NetworkDef> {
        let path = format!("networks.{}", key.name);
        let mut def = NetworkDef {
            key: key.name.clone(),
            name: None,
            external: false,
            labels: BTreeMap::new(),
            subnet: None,
        };
        for (k, v) in self.map_entries(node, &path)? {
            let p = format!("{path}.{}", k.name);
            match k.name.as_str() {
                "name" => def.name = Some(self.string(v, &p)?),
                "external" => def.external = self.bool(v, &p)?,
                "labels" => def.labels = self.labels(v, &p)?,
                "driver" => {
                    let driver = self.string(v, &p)?;
                    if driver != "bridge" {
                        return Err(self.err(v.line, &p, format!("network driver {driver:?} is not supported: berth has the bridge driver only")));
                    }
                }
                "ipam" => def.subnet = self.ipam_subnet(v, &p)?,
                other if other.starts_with("x-") => {}
                "attachable" | "driver_opts" | "enable_ipv4" | "enable_ipv6" | "internal" => {
                    return Err(self.not_supported(k, &path))
                }
                _ => {
                    return Err(self.unknown(
                        k,
                        &path,
                        &["name", "external", "labels", "driver", "ipam"],
                    ))
                }
            }
        }
        Ok(def)
    }

    /// `ipam: {config: [{subnet: ...}]}` (one subnet).
    fn ipam_subnet(&self, node: &Node, path: &str) -> Result<Option<String>> {
        let mut subnet = None;
        for (k, v) in self.map_entries(node, path)? {
            match k.name.as_str() {
                "config" => {
                    let configs = self.list(v, path)?;
                    if configs.len() > 1 {
                        return Err(self.err(
                            v.line,
                            path,
                            "berth networks have one subnet: give one ipam config",
                        ));
                    }
                    for config in configs {
                        for (ck, cv) in self.map_entries(config, path)? {
                            match ck.name.as_str() {
                                "subnet" => subnet = Some(self.string(cv, path)?),
                                _ => return Err(self.not_supported(ck, path)),
                            }
                        }
                    }
                }
                "driver" => {}
                _ => return Err(self.not_supported(k, path)),
            }
        }
        Ok(subnet)
    }
}

/// `SOURCE:TARGET[:MODE]`, `TARGET` alone (an anonymous volume). A source
/// starting with `.`, `/` or `~` is a host path, anything else a volume.
pub fn short_volume(text: &str, line: usize) -> std::result::Result<ServiceVolume, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [source, target] => (Some(*source), *target, ""),
        [source, target, mode] => (Some(*source), *target, *mode),
        _ => {
            return Err(format!(
                "invalid volume {text:?}: use [SOURCE:]TARGET[:MODE]"
            ))
        }
    };
    let mut volume = ServiceVolume {
        kind: VolumeKind::Volume,
        source: source.map(String::from),
        target: target.to_string(),
        read_only: false,
        create_host_path: false,
        nocopy: false,
        tmpfs_options: Vec::new(),
        line,
    };
    if let Some(source) = source {
        if source.is_empty() {
            return Err(format!("invalid volume {text:?}: the source is empty"));
        }
        if source.starts_with(['.', '/', '~']) {
            volume.kind = VolumeKind::Bind;
            volume.create_host_path = true;
        }
    }
    for option in mode.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => volume.read_only = true,
            "rw" => volume.read_only = false,
            "nocopy" => volume.nocopy = true,
            "z" | "Z" => {}
            other => {
                return Err(format!(
                    "invalid volume {text:?}: unknown mode {other:?} (use ro, rw or nocopy)"
                ))
            }
        }
    }
    Ok(volume)
}

/// docker compose's service names: letters, digits, `_`, `.`, `-`.
fn check_service_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid service name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"))
    }
}

/// Split a command string into words as a POSIX shell would (quotes and
/// backslashes; no variables, globs or operators).
pub fn split_shell_words(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed single quote in {text:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unclosed double quote in {text:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed double quote in {text:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The known key closest to `name` (at most 2 edits away), for a hint.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::yaml;

    fn decode(text: &str) -> Result<ComposeFile> {
        let root = yaml::parse(text).unwrap();
        Decoder {
            sources: &Sources::single("compose.yaml"),
            warnings: Vec::new(),
        }
        .file(&root)
    }

    #[test]
    fn a_full_service_decodes() {
        let file = decode(
            r#"
services:
  web:
    image: busybox
    command: httpd -f -p 80 -h "/www root"
    environment:
      A: "1"
      B:
    env_file: web.env
    ports: ["8080:80", {target: 81, published: "8081", protocol: udp}]
    volumes:
      - data:/data:ro
      - ./site:/www
      - /cache
      - {type: tmpfs, target: /tmp, tmpfs: {size: 1m}}
    depends_on:
      db: {condition: service_healthy}
    healthcheck:
      test: wget -q http://localhost/
      interval: 1s
      retries: 5
    restart: "no"
    stop_grace_period: 1m30s
    labels: [team=web]
    networks:
      front: {aliases: [www]}
  db:
    build: {context: ./db, args: [VERSION=2]}
volumes:
  data:
networks:
  front:
"#,
        )
        .unwrap();
        let web = file.service("web").unwrap();
        assert_eq!(
            web.command.as_deref().unwrap(),
            ["httpd", "-f", "-p", "80", "-h", "/www root"]
        );
        assert_eq!(
            web.environment,
            vec![("A".into(), Some("1".into())), ("B".into(), None)]
        );
        assert_eq!(web.ports, vec!["8080:80", "8081:81/udp"]);
        assert_eq!(web.volumes[0].kind, VolumeKind::Volume);
        assert!(web.volumes[0].read_only);
        assert_eq!(web.volumes[1].kind, VolumeKind::Bind);
        assert_eq!(web.volumes[2].source, None);
        assert_eq!(web.volumes[3].tmpfs_options, vec!["size=1m"]);
        assert_eq!(web.depends_on[0].condition, Condition::ServiceHealthy);
        let check = web.healthcheck.as_ref().unwrap();
        assert_eq!(check.test, vec!["CMD-SHELL", "wget -q http://localhost/"]);
        assert_eq!((check.interval, check.retries), (1_000_000_000, 5));
        assert_eq!(web.restart.as_deref(), Some("no"));
        assert_eq!(web.stop_grace_period, Some(90));
        assert_eq!(web.labels["team"], "web");
        assert_eq!(web.networks[0].aliases, vec!["www"]);
        let db = file.service("db").unwrap();
        assert_eq!(
            db.build.as_ref().unwrap().args,
            vec![("VERSION".into(), Some("2".into()))]
        );
    }

    #[test]
    fn unknown_and_unsupported_keys_name_the_key_and_line() {
        let err = decode("services:\n  web:\n    image: busybox\n    imagee: x\n").unwrap_err();
        assert_eq!(
            err,
            "compose.yaml:4: services.web: unknown key \"imagee\" (did you mean \"image\"?)"
        );
        let err =
            decode("services:\n  web:\n    image: busybox\n    privileged: true\n").unwrap_err();
        assert!(
            err.starts_with("compose.yaml:4: services.web: key \"privileged\" is not supported"),
            "{err}"
        );
        let err = decode("services:\n  web:\n    image: busybox\nsecrets:\n  s: {}\n").unwrap_err();
        assert!(err.contains(":4:") && err.contains("\"secrets\""), "{err}");
        let err =
            decode("services:\n  web:\n    image: busybox\n    ports: [\"x:80\"]\n").unwrap_err();
        assert!(
            err.starts_with("compose.yaml:4: services.web.ports:"),
            "{err}"
        );
        let err = decode("services:\n  web:\n    init: yes\n    image: busybox\n").unwrap_err();
        assert!(
            err.contains(":3:") && err.contains("true or false"),
            "{err}"
        );
        let err = decode("services:\n  web:\n    command: echo\n").unwrap_err();
        assert!(err.contains("neither an image nor a build"), "{err}");
        assert!(decode("version: '3'\nservices:\n  a: {image: x, x-note: 1}\nx-any: 2\n").is_ok());
    }

    #[test]
    fn shell_words_split_like_a_shell() {
        assert_eq!(
            split_shell_words("sh -c 'echo hi; exit 3'").unwrap(),
            vec!["sh", "-c", "echo hi; exit 3"]
        );
        assert_eq!(
            split_shell_words(r#"a "b c" d\ e ''"#).unwrap(),
            vec!["a", "b c", "d e", ""]
        );
        assert!(split_shell_words("'open").is_err());
    }

    #[test]
    fn short_volumes_tell_binds_from_volumes() {
        assert_eq!(short_volume("~/x:/x", 1).unwrap().kind, VolumeKind::Bind);
        assert_eq!(
            short_volume("name:/x:ro,nocopy", 1).unwrap().kind,
            VolumeKind::Volume
        );
        assert!(short_volume("a:/b:c:d", 1).is_err());
        assert!(short_volume("a:/b:sometimes", 1).is_err());
    }
}

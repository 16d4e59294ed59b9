//! A compose project: the file found and read, variables interpolated, the
//! model checked as a whole (dependencies, networks, volumes), and the
//! names docker compose gives everything:
//!
//! | thing | name |
//! |---|---|
//! | project | `-p`, `COMPOSE_PROJECT_NAME`, top-level `name:`, or the directory's name |
//! | container | `PROJECT-SERVICE-1` (or `container_name:`) |
//! | network | `PROJECT_default`, `PROJECT_KEY` (or `name:`) |
//! | volume | `PROJECT_KEY` (or `name:`) |
//! | built image | `PROJECT-SERVICE` (or the service's `image:`) |
//!
//! Everything berth creates for a project carries docker compose's labels
//! (`com.docker.compose.project`, `.service`, ...), which is how `ps`,
//! `down` and the others find it again without any state of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::model::{ComposeFile, Decoder, Service, VolumeKind};
use super::yaml::{Kind, Node, Sources};
use super::{dotenv, interpolate, merge, yaml, ComposeError};

/// docker compose's labels.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";

/// The file names looked for, in docker compose's order.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The override files read after the default file when no `-f` is given
/// (the first one present), in docker compose's order.
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// The key of the network every service joins unless it names others.
pub const DEFAULT_NETWORK_KEY: &str = "default";

/// How to find and name the project (`-f`, `-p`, `--project-directory`, `--env-file`).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub files: Vec<PathBuf>,
    pub project_name: Option<String>,
    pub project_directory: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
    /// Where to look for the file when `files` is empty.
    pub working_dir: PathBuf,
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    /// Relative paths (build contexts, binds, env files) start here: the
    /// first file's directory, for every file (as docker compose does).
    pub dir: PathBuf,
    /// The files read, in merge order (one, usually).
    pub files: Vec<PathBuf>,
    /// Their names, for messages that give a value's file and line.
    pub sources: Sources,
    pub model: ComposeFile,
    /// The `.env` file's variables (the process environment wins over them).
    pub dotenv: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// Find, read, interpolate, merge, decode and check the project's compose
/// file(s).
pub fn load(options: &LoadOptions) -> Result<Project, ComposeError> {
    let files = find_files(options)?;
    let dir = match &options.project_directory {
        Some(dir) => absolute(dir, &options.working_dir),
        None => files[0].parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let mut warnings = Vec::new();
    let dotenv = read_dotenv(options, &dir)?;
    let lookup = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| dotenv.get(name).cloned())
    };
    let mut sources = Sources::default();
    let mut root: Option<Node> = None;
    for file in &files {
        let tree = read_tree(file, &mut sources, &lookup, &mut warnings)?;
        root = Some(match root {
            None => tree,
            Some(earlier) => merge::merge(earlier, tree),
        });
    }
    let mut root = root.expect("find_files gives at least one file");
    merge::strip_tags(&mut root);
    let model = Decoder {
        sources: &sources,
        warnings: Vec::new(),
    }
    .file(&root)
    .map_err(ComposeError::Invalid)?;
    warnings.extend(model.warnings.iter().cloned());
    let name = project_name(options, &model, &dir, &lookup)?;
    let project = Project {
        name,
        dir,
        files,
        sources,
        model,
        dotenv,
        warnings,
    };
    project.check()?;
    Ok(project)
}

/// One file as a tree, registered in `sources`, its variables interpolated.
fn read_tree(
    file: &Path,
    sources: &mut Sources,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Node, ComposeError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ComposeError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    let label = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tree =
        yaml::parse(&text).map_err(|e| ComposeError::Invalid(format!("{label}: {e}")))?;
    sources.add(&label, &mut tree);
    interpolate_tree(&mut tree, lookup, warnings)
        .map_err(|(line, e)| ComposeError::Invalid(format!("{}: {e}", sources.at(line))))?;
    Ok(tree)
}

/// `-f` files in order (each must exist), else the first default file found
/// and the first override file beside it.
fn find_files(options: &LoadOptions) -> Result<Vec<PathBuf>, ComposeError> {
    if !options.files.is_empty() {
        return options
            .files
            .iter()
            .map(|f| {
                let path = absolute(f, &options.working_dir);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(ComposeError::Invalid(format!(
                        "open {}: no such file: check the -f path",
                        path.display()
                    )))
                }
            })
            .collect();
    }
    let found = |names: &[&str]| {
        names
            .iter()
            .map(|name| options.working_dir.join(name))
            .find(|path| path.is_file())
    };
    let main = found(&DEFAULT_FILES).ok_or_else(|| {
        ComposeError::Invalid(format!(
            "no configuration file provided: none of {} is in {}: run berth compose in the project's directory or give -f FILE",
            DEFAULT_FILES.join(", "),
            options.working_dir.display()
        ))
    })?;
    Ok(std::iter::once(main)
        .chain(found(&OVERRIDE_FILES))
        .collect())
}

fn absolute(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// `.env` in the project directory, or `--env-file`.
fn read_dotenv(
    options: &LoadOptions,
    dir: &Path,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let path = match &options.env_file {
        Some(path) => absolute(path, &options.working_dir),
        None => {
            let path = dir.join(".env");
            if !path.is_file() {
                return Ok(BTreeMap::new());
            }
            path
        }
    };
    let host = |name: &str| std::env::var(name).ok();
    Ok(dotenv::read(&path, &host)
        .map_err(ComposeError::Invalid)?
        .into_iter()
        .collect())
}

/// Interpolate every scalar value of the tree (keys are left alone).
fn interpolate_tree(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), (usize, String)> {
    let line = node.line;
    match &mut node.kind {
        Kind::Scalar { text, .. } => {
            *text = interpolate::interpolate(text, lookup, warnings).map_err(|e| (line, e))?;
        }
        Kind::Seq(items) => {
            for item in items {
                interpolate_tree(item, lookup, warnings)?;
            }
        }
        Kind::Map(entries) => {
            for (_, value) in entries {
                interpolate_tree(value, lookup, warnings)?;
            }
        }
        Kind::Null => {}
    }
    Ok(())
}

/// `-p`, COMPOSE_PROJECT_NAME, `name:`, or the directory's name (normalized).
fn project_name(
    options: &LoadOptions,
    model: &ComposeFile,
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ComposeError> {
    let explicit = options
        .project_name
        .clone()
        .or_else(|| lookup("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()))
        .or_else(|| model.name.clone());
    if let Some(name) = explicit {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid {
            return Err(ComposeError::Invalid(format!(
                "invalid project name {name:?}: it must contain only lowercase letters, digits, dashes and underscores, and begin with a lowercase letter or digit"
            )));
        }
        return Ok(name);
    }
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let normalized: String = base
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .collect();
    if normalized.is_empty() {
        return Err(ComposeError::Invalid(format!(
            "the directory {} gives no usable project name: give one with -p NAME or name: in the file",
            dir.display()
        )));
    }
    Ok(normalized)
}

impl Project {
    /// A variable from the environment, else from `.env`.
    pub fn lookup(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
    }

    pub fn service(&self, name: &str) -> Result<&Service, ComposeError> {
        self.model.service(name).ok_or_else(|| {
            ComposeError::Invalid(format!(
                "no such service: {name} (the services are: {})",
                self.model
                    .services
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// `PROJECT-SERVICE-N`, or the service's `container_name:`.
    pub fn container_name(&self, service: &Service, number: u32) -> String {
        service
            .container_name
            .clone()
            .unwrap_or_else(|| format!("{}-{}-{number}", self.name, service.name))
    }

    /// The real name of network `key` (`PROJECT_KEY` unless `name:` or external).
    pub fn network_name(&self, key: &str) -> String {
        let def = self.model.networks.iter().find(|n| n.key == key);
        self.real_name(key, def.map(|d| (d.name.as_deref(), d.external)))
    }

    /// The real name of volume `key` (the same rules).
    pub fn volume_name(&self, key: &str) -> String {
        let def = self.model.volumes.iter().find(|v| v.key == key);
        self.real_name(key, def.map(|d| (d.name.as_deref(), d.external)))
    }

    /// A top-level network's or volume's name: its `name:`, else the key
    /// itself when `external:`, else `PROJECT_KEY`.
    fn real_name(&self, key: &str, def: Option<(Option<&str>, bool)>) -> String {
        match def {
            Some((Some(name), _)) => name.to_string(),
            Some((None, true)) => key.to_string(),
            _ => format!("{}_{key}", self.name),
        }
    }

    /// The image a service runs: its `image:`, or `PROJECT-SERVICE` when built.
    pub fn image_name(&self, service: &Service) -> String {
        service
            .image
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.name, service.name))
    }

    /// The network key a service joins, with its extra aliases; None for
    /// `network_mode:`.
    pub fn service_network(&self, service: &Service) -> Option<(String, Vec<String>)> {
        if service.network_mode.is_some() {
            return None;
        }
        Some(match service.networks.first() {
            Some(network) => (network.key.clone(), network.aliases.clone()),
            None => (DEFAULT_NETWORK_KEY.to_string(), Vec::new()),
        })
    }

    /// The network keys the given services use (in first-use order).
    pub fn networks_used(&self, services: &[&Service]) -> Vec<String> {
        let mut keys = Vec::new();
        for service in services {
            if let Some((key, _)) = self.service_network(service) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// The named volume keys the given services mount.
    pub fn volumes_used(&self, services: &[&Service]) -> Vec<String> {
        let mut keys = Vec::new();
        for service in services {
            for volume in &service.volumes {
                if let (VolumeKind::Volume, Some(source)) = (volume.kind, &volume.source) {
                    if !keys.contains(source) {
                        keys.push(source.clone());
                    }
                }
            }
        }
        keys
    }

    /// `names` and, with `with_dependencies`, every service they depend on;
    /// in start order (dependencies first). Empty `names`: every service.
    pub fn start_order(
        &self,
        names: &[String],
        with_dependencies: bool,
    ) -> Result<Vec<&Service>, ComposeError> {
        let mut wanted: BTreeSet<&str> = BTreeSet::new();
        let mut queue: Vec<&str> = if names.is_empty() {
            self.model
                .services
                .iter()
                .map(|s| s.name.as_str())
                .collect()
        } else {
            names.iter().map(String::as_str).collect()
        };
        while let Some(name) = queue.pop() {
            let service = self.service(name)?;
            if wanted.insert(&service.name) && with_dependencies {
                queue.extend(service.depends_on.iter().map(|d| d.service.as_str()));
            }
        }
        let order = super::graph::start_order(&self.model)?;
        Ok(order
            .into_iter()
            .filter(|s| wanted.contains(s.name.as_str()))
            .collect())
    }

    /// Whole-file checks: dependencies exist and form no cycle, networks
    /// and named volumes are declared, a service joins at most one network.
    fn check(&self) -> Result<(), ComposeError> {
        let invalid = |line: usize, message: String| {
            ComposeError::Invalid(format!("{}: {message}", self.sources.at(line)))
        };
        for service in &self.model.services {
            for dep in &service.depends_on {
                if self.model.service(&dep.service).is_none() {
                    return Err(invalid(
                        dep.line,
                        format!(
                            "service {:?} depends on undefined service {:?}",
                            service.name, dep.service
                        ),
                    ));
                }
            }
            if service.networks.len() > 1 {
                return Err(invalid(service.networks[1].line, format!(
                    "service {:?} joins {} networks: a berth container joins one network, so give one",
                    service.name, service.networks.len()
                )));
            }
            for network in &service.networks {
                let declared = self.model.networks.iter().any(|n| n.key == network.key);
                if !declared && network.key != DEFAULT_NETWORK_KEY {
                    return Err(invalid(network.line, format!("service {:?} refers to undefined network {}: declare it under the top-level networks:", service.name, network.key)));
                }
            }
            if let Some(mode) = &service.network_mode {
                if !matches!(mode.as_str(), "none" | "host" | "bridge") {
                    return Err(invalid(service.line, format!(
                        "service {:?}: network_mode {mode:?} is not supported: use none, host or bridge",
                        service.name
                    )));
                }
            }
            for volume in &service.volumes {
                if let (VolumeKind::Volume, Some(source)) = (volume.kind, &volume.source) {
                    if !self.model.volumes.iter().any(|v| &v.key == source) {
                        return Err(invalid(volume.line, format!("service {:?} refers to undefined volume {source}: declare it under the top-level volumes:", service.name)));
                    }
                }
            }
            if let Some(restart) = &service.restart {
                crate::container::RestartPolicy::parse(restart).map_err(|e| {
                    invalid(service.line, format!("service {:?}: {e}", service.name))
                })?;
            }
        }
        super::graph::start_order(&self.model)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_in(dir: &Path, text: &str) -> Result<Project, ComposeError> {
        std::fs::write(dir.join("compose.yaml"), text).unwrap();
        load_in(dir)
    }

    /// The project of the files already in `dir`, found as without -f.
    fn load_in(dir: &Path) -> Result<Project, ComposeError> {
        load(&LoadOptions {
            working_dir: dir.to_path_buf(),
            ..Default::default()
        })
    }

    #[test]
    fn names_follow_docker_compose() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("My_App.v2");
        std::fs::create_dir(&dir).unwrap();
        let p = project_in(&dir, "services:\n  web: {image: busybox}\n  db: {image: busybox, container_name: the-db}\nvolumes:\n  data:\n  shared: {name: common}\n").unwrap();
        assert_eq!(p.name, "my_appv2");
        let web = p.service("web").unwrap();
        assert_eq!(p.container_name(web, 1), "my_appv2-web-1");
        assert_eq!(p.container_name(p.service("db").unwrap(), 1), "the-db");
        assert_eq!(p.network_name("default"), "my_appv2_default");
        assert_eq!(p.volume_name("data"), "my_appv2_data");
        assert_eq!(p.volume_name("shared"), "common");
        assert_eq!(p.image_name(web), "busybox");
    }

    #[test]
    fn dotenv_and_environment_feed_interpolation_and_the_name() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join(".env"),
            "COMPOSE_PROJECT_NAME=fromenv\nTAG=1.5\n",
        )
        .unwrap();
        let p = project_in(
            tmp.path(),
            "services:\n  web: {image: \"busybox:${TAG}\", command: \"echo $${HOME}\"}\n",
        )
        .unwrap();
        assert_eq!(p.name, "fromenv");
        let web = p.service("web").unwrap();
        assert_eq!(web.image.as_deref(), Some("busybox:1.5"));
        assert_eq!(web.command.as_deref().unwrap(), ["echo", "${HOME}"]);
    }

    #[test]
    fn whole_file_mistakes_are_reported_with_their_line() {
        let tmp = tempfile::tempdir().unwrap();
        let err = project_in(
            tmp.path(),
            "services:\n  web:\n    image: x\n    depends_on: [db]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("compose.yaml:4:") && err.contains("undefined service \"db\""),
            "{err}"
        );
        let err = project_in(
            tmp.path(),
            "services:\n  web:\n    image: x\n    volumes: [data:/d]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("compose.yaml:4:") && err.contains("undefined volume data"),
            "{err}"
        );
        let err = project_in(
            tmp.path(),
            "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cycle"), "{err}");
        let err = project_in(
            tmp.path(),
            "services:\n  web:\n    image: \"${NOPE:?set NOPE}\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("compose.yaml:3:") && err.contains("set NOPE"),
            "{err}"
        );
        let missing = tempfile::tempdir().unwrap();
        let err = load_in(missing.path()).unwrap_err().to_string();
        assert!(err.contains("no configuration file provided"), "{err}");
    }

    #[test]
    fn an_override_file_beside_the_default_one_is_merged() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("compose.override.yaml"),
            "services:\n  web:\n    image: busybox:2\n    ports: [\"8443:443\"]\n    environment: {MODE: dev}\n",
        )
        .unwrap();
        let p = project_in(
            tmp.path(),
            "services:\n  web:\n    image: busybox:1\n    ports: [\"8080:80\"]\n    environment: [MODE=prod, KEEP=1]\n",
        )
        .unwrap();
        let web = p.service("web").unwrap();
        assert_eq!(web.image.as_deref(), Some("busybox:2"));
        assert_eq!(web.ports, ["8080:80", "8443:443"]);
        let env: Vec<String> = web
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(env, ["MODE=dev", "KEEP=1"]);
        let names: Vec<_> = p.files.iter().map(|f| f.file_name().unwrap()).collect();
        assert_eq!(names, ["compose.yaml", "compose.override.yaml"]);
        assert!(
            p.warnings.iter().all(|w| !w.contains("override")),
            "{:?}",
            p.warnings
        );

        // compose's tags: !reset removes what the base set, !override replaces it.
        std::fs::write(
            tmp.path().join("compose.override.yaml"),
            "services:\n  web:\n    ports: !reset []\n    environment: !override {ONLY: 1}\n",
        )
        .unwrap();
        let p = load_in(tmp.path()).unwrap();
        let web = p.service("web").unwrap();
        assert!(web.ports.is_empty(), "{:?}", web.ports);
        assert_eq!(
            web.environment,
            [("ONLY".to_string(), Some("1".to_string()))]
        );
    }

    #[test]
    fn files_given_with_f_merge_in_order_and_errors_name_their_file() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            std::fs::write(tmp.path().join(name), text).unwrap();
            PathBuf::from(name)
        };
        let base = write(
            "base.yaml",
            "services:\n  web:\n    image: a\n    command: [sleep, \"1\"]\n",
        );
        let prod = write(
            "prod.yaml",
            "services:\n  web:\n    command: [sleep, \"2\"]\n",
        );
        let last = write("last.yaml", "services:\n  web:\n    image: c\n");
        let with = |files: Vec<PathBuf>| {
            load(&LoadOptions {
                files,
                working_dir: tmp.path().to_path_buf(),
                ..Default::default()
            })
        };
        let p = with(vec![base.clone(), prod.clone(), last]).unwrap();
        let web = p.service("web").unwrap();
        assert_eq!(web.image.as_deref(), Some("c"));
        assert_eq!(web.command.as_deref().unwrap(), ["sleep", "2"]);
        assert_eq!(p.dir, tmp.path(), "paths are relative to the first file");

        // A mistake in a later file is reported at its own line...
        let typo = write("typo.yaml", "services:\n  web:\n    imagee: b\n");
        let err = with(vec![base.clone(), typo]).unwrap_err().to_string();
        assert!(
            err.starts_with("typo.yaml:3: services.web: unknown key \"imagee\""),
            "{err}"
        );
        // ...and so is one only the merged whole shows.
        let dep = write("dep.yaml", "services:\n  web:\n    depends_on: [db]\n");
        let err = with(vec![base.clone(), dep]).unwrap_err().to_string();
        assert!(
            err.contains("dep.yaml:3:") && err.contains("undefined service \"db\""),
            "{err}"
        );
        let interp = write(
            "interp.yaml",
            "services:\n  web:\n\n    image: \"${NOPE2:?set NOPE2}\"\n",
        );
        let err = with(vec![base.clone(), interp]).unwrap_err().to_string();
        assert!(
            err.contains("interp.yaml:4:") && err.contains("set NOPE2"),
            "{err}"
        );
        let err = with(vec![base, PathBuf::from("absent.yaml")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.yaml: no such file"), "{err}");
    }

    #[test]
    fn start_order_puts_dependencies_first_and_pulls_them_in() {
        let tmp = tempfile::tempdir().unwrap();
        let p = project_in(tmp.path(), "services:\n  app: {image: x, depends_on: [db, cache]}\n  db: {image: x}\n  cache: {image: x, depends_on: [db]}\n  other: {image: x}\n").unwrap();
        let names = |v: Vec<&Service>| v.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(p.start_order(&["app".into()], true).unwrap()),
            vec!["db", "cache", "app"]
        );
        assert_eq!(
            names(p.start_order(&["app".into()], false).unwrap()),
            vec!["app"]
        );
        assert_eq!(names(p.start_order(&[], true).unwrap()).len(), 4);
    }
}

//! The build executor: runs a parsed Dockerfile stage by stage, step by
//! step, and prints what docker's classic builder prints.
//!
//! Mechanism: a build *state* per stage — the image config so far, its
//! layers, the ARGs in scope — and for each step:
//! 1. substitute variables where docker does (see [`super::shell`]) and
//!    compute the step's history line (`/bin/sh -c #(nop)  ENV A=b`,
//!    `|1 V=2 /bin/sh -c make`, `COPY file:<content hash> in /app`);
//! 2. look the step up in the [`BuildCache`] under (parent state id, history
//!    line); on a hit, take the cached config and layers (` ---> Using cache`);
//! 3. otherwise do the work: metadata steps edit the config; RUN, COPY, ADD
//!    and WORKDIR mount an overlay over the current layers
//!    ([`super::rootfs::StepMount`]), change it, unmount, and commit the
//!    upper directory as a layer; then append the history entry and record
//!    the result in the cache.
//!
//! The state id printed after each step (` ---> 1a2b3c4d5e6f`) is the digest
//! of the config at that point: the id the image would have if the build
//! stopped there, so the final one is the image id.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::cache::BuildCache;
use super::copy::{CopyError, CopyOptions, SourceRoot, SourceSet};
use super::dockerfile::{self, CommandForm, CopySpec, Dockerfile, Healthcheck, Instruction, Step};
use super::ignore::IgnoreMatcher;
use super::rootfs::{self, ReadOnlyMount, StepMount};
use super::run::{run_in_container, RunRequest};
use super::shell;
use super::{BuildError, BuildOptions};
use crate::fsutil::FileLock;
use crate::image::config::History;
use crate::image::{Digest, ImageConfig, ImageStore, LayerDescriptor};
use crate::paths::Roots;

/// What a successful build made.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image id (`sha256:<hex>`).
    pub id: Digest,
    /// The tags it got, familiar form (`app:latest`).
    pub tags: Vec<String>,
}

/// ARGs docker lets a RUN see without an ARG line, and keeps out of history.
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The state of a stage between steps.
#[derive(Clone)]
struct State {
    config: ImageConfig,
    layers: Vec<LayerDescriptor>,
    /// Digest of the config: the id an image of this state has.
    id: Digest,
    /// ARGs declared in this stage, in order, with their values.
    args: Vec<(String, Option<String>)>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

impl State {
    fn layer_dirs(&self, store: &ImageStore) -> Vec<PathBuf> {
        self.layers
            .iter()
            .map(|l| store.layer_dir(&l.chain_id))
            .collect()
    }

    fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    fn env_value(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.config
            .config
            .env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(&prefix).map(str::to_string))
    }
}

/// Filesystem work a step needs.
enum Work {
    None,
    Run {
        args: Vec<String>,
        env: Vec<String>,
        /// The command as docker's error message shows it.
        command: String,
    },
    Copy {
        instruction: &'static str,
        sources: SourceSet,
        /// Keeps a `COPY --from` stage mounted while its sources are read.
        _from: Option<ReadOnlyMount>,
        dest: String,
        dest_is_dir: bool,
        chown: Option<String>,
        chmod: Option<u32>,
        extract: bool,
    },
    Mkdir(String),
}

/// How a step changes the config.
type ConfigChange = Box<dyn FnOnce(&mut ImageConfig)>;

/// A step, planned: its history line, its filesystem work, its config change.
type Planned = (String, Work, ConfigChange);

/// One build.
struct Builder<'a> {
    roots: &'a Roots,
    options: &'a BuildOptions,
    store: ImageStore,
    cache: BuildCache,
    out: &'a mut dyn Write,
    file: Dockerfile,
    ignore: IgnoreMatcher,
    context: PathBuf,
    work: PathBuf,
    step: usize,
    total: usize,
    scratch_counter: usize,
    global_args: BTreeMap<String, Option<String>>,
    used_build_args: BTreeSet<String>,
    finished: Vec<(Option<String>, State)>,
}

/// Build the image described by `options`, printing docker's classic
/// progress to `out`.
pub fn build(
    roots: &Roots,
    options: &BuildOptions,
    out: &mut dyn Write,
) -> Result<BuildResult, BuildError> {
    let context = fs::canonicalize(&options.context).map_err(|e| {
        BuildError::Invalid(format!(
            "unable to prepare context: path {:?} not found: {e}",
            options.context.display().to_string()
        ))
    })?;
    if !context.is_dir() {
        return Err(BuildError::Invalid(format!(
            "unable to prepare context: {} is not a directory",
            context.display()
        )));
    }
    let dockerfile_path = options
        .dockerfile
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    let text = read_dockerfile(&dockerfile_path)?;
    let file = dockerfile::parse(&text)?;
    let ignore = match fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => IgnoreMatcher::parse(&text).map_err(|e| BuildError::Invalid(e.to_string()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => IgnoreMatcher::default(),
        Err(e) => return Err(BuildError::Invalid(format!("reading .dockerignore: {e}"))),
    };
    let last = match &options.target {
        Some(target) => file.stage_index(target).ok_or_else(|| {
            BuildError::Invalid(format!(
                "failed to reach build target {target} in Dockerfile"
            ))
        })?,
        None => file.stages.len() - 1,
    };
    let store = ImageStore::open(roots)?;
    // Layers imported by this build stay unreferenced until the image is
    // added: keep rmi's garbage collection away meanwhile.
    let _hold = store.hold()?;
    let (work, _work_lock) = make_work_dir(roots)?;
    let result = (|| {
        rootfs::enter_private_mount_namespace()?;
        let total = file.global_args.len()
            + file.stages[..=last]
                .iter()
                .map(|s| 1 + s.steps.len())
                .sum::<usize>();
        let mut builder = Builder {
            roots,
            options,
            cache: BuildCache::open(roots),
            store,
            out,
            file,
            ignore,
            context,
            work: work.clone(),
            step: 0,
            total,
            scratch_counter: 0,
            global_args: BTreeMap::new(),
            used_build_args: BTreeSet::new(),
            finished: Vec::new(),
        };
        builder.run(last)
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

fn read_dockerfile(path: &Path) -> Result<String, BuildError> {
    let file = fs::File::open(path).map_err(|e| {
        BuildError::Invalid(format!(
            "unable to prepare context: unable to read Dockerfile {}: {e}",
            path.display()
        ))
    })?;
    let mut text = String::new();
    file.take(dockerfile::MAX_DOCKERFILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            BuildError::Invalid(format!(
                "reading {}: {e} (a Dockerfile must be UTF-8 text)",
                path.display()
            ))
        })?;
    Ok(text)
}

/// `<root>/tmp/build-<pid>-<start time>-<random>`, locked for the build's
/// life; directories of builds that died are removed first.
///
/// The name carries the owner (pid and process start time) because there is
/// a moment between `mkdir` and taking the lock inside: a build killed
/// exactly then leaves a directory without a lock, and only the name can
/// tell that its owner is gone (see [`is_abandoned_work_dir`]).
fn make_work_dir(roots: &Roots) -> Result<(PathBuf, FileLock), BuildError> {
    let tmp = roots.tmp();
    fs::create_dir_all(&tmp)
        .map_err(|e| BuildError::Setup(format!("creating {}: {e}", tmp.display())))?;
    if let Ok(entries) = fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            if is_abandoned_work_dir(&entry.path()) {
                tracing::info!(dir = %entry.path().display(), "removing the work directory of a build that died");
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let me = std::process::id() as i32;
    let started = crate::container::procinfo::start_time(me).unwrap_or(0);
    let dir = tmp.join(format!(
        "build-{me}-{started}-{:016x}",
        rand::random::<u64>()
    ));
    fs::create_dir(&dir)
        .map_err(|e| BuildError::Setup(format!("creating {}: {e}", dir.display())))?;
    let lock = FileLock::exclusive(&dir.join("lock"))
        .map_err(|e| BuildError::Setup(format!("locking {}: {e}", dir.display())))?;
    Ok((dir, lock))
}

/// Whether `dir` is the work directory of a build that is gone: its `lock`
/// is free, or (killed before it locked) the process its name records no
/// longer runs.
pub fn is_abandoned_work_dir(dir: &Path) -> bool {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(owner) = name.strip_prefix("build-") else {
        return false;
    };
    if let Ok(lock) = fs::File::open(dir.join("lock")) {
        return rustix::fs::flock(
            lock.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .is_ok();
    }
    let mut parts = owner.split('-');
    let pid = parts.next().and_then(|p| p.parse::<i32>().ok());
    let started = parts.next().and_then(|p| p.parse::<u64>().ok());
    match (pid, started, parts.next()) {
        (Some(pid), Some(started), Some(_)) => {
            !crate::container::procinfo::is_running(pid, started)
        }
        // Not a name this version makes: leave it to `system prune`'s age rule.
        _ => false,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn config_digest(config: &ImageConfig) -> Result<Digest, BuildError> {
    let bytes = serde_json::to_vec(config)
        .map_err(|e| BuildError::Setup(format!("serializing the config: {e}")))?;
    Ok(Digest::of(&bytes))
}

impl Builder<'_> {
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    fn announce(&mut self, step: &Step) {
        self.step += 1;
        let line = format!("Step {}/{} : {}", self.step, self.total, step.text);
        self.say(&line);
    }

    fn build_arg(&mut self, name: &str) -> Option<String> {
        let found = self
            .options
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        if found.is_some() {
            self.used_build_args.insert(name.to_string());
        }
        found
    }

    fn scratch_dir(&mut self) -> Result<PathBuf, BuildError> {
        self.scratch_counter += 1;
        let dir = self.work.join(format!("step-{}", self.scratch_counter));
        fs::create_dir_all(&dir)
            .map_err(|e| BuildError::Setup(format!("creating {}: {e}", dir.display())))?;
        Ok(dir)
    }

    fn run(&mut self, last: usize) -> Result<BuildResult, BuildError> {
        for step in self.file.global_args.clone() {
            self.announce(&step);
            if let Instruction::Arg(declared) = &step.instruction {
                for (name, default) in declared {
                    let value = match self.build_arg(name) {
                        Some(v) => Some(v),
                        None => match default {
                            Some(d) => Some(self.expand_global(d, &step)?),
                            None => None,
                        },
                    };
                    self.global_args.insert(name.clone(), value);
                }
            }
        }
        let mut final_state = None;
        for index in 0..=last {
            let stage = self.file.stages[index].clone();
            let mut state = self.from(&stage.from)?;
            for step in &stage.steps {
                self.announce(step);
                state = self.step(state, &step.instruction, step)?;
            }
            final_state = Some(state.clone());
            self.finished
                .push((stage.name().map(str::to_string), state));
        }
        let state = final_state.ok_or_else(|| BuildError::Invalid("nothing to build".into()))?;
        let unused: Vec<&str> = self
            .options
            .build_args
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !self.used_build_args.contains(*k) && !PREDEFINED_ARGS.contains(k))
            .collect();
        if !unused.is_empty() {
            let line = format!(
                "[Warning] One or more build-args [{}] were not consumed",
                unused.join(" ")
            );
            self.say(&line);
        }
        let tags: Vec<&str> = self.options.tags.iter().map(String::as_str).collect();
        let image = self
            .store
            .add_image(state.config.clone(), &state.layers, &tags)?;
        if image.id != state.id {
            tracing::debug!(state = %state.id, image = %image.id, "image id differs from the last state id");
        }
        let short = image.id.short().to_string();
        self.say(&format!("Successfully built {short}"));
        let mut familiar = Vec::new();
        for tag in &self.options.tags {
            let shown = crate::image::Reference::parse(tag)
                .map(|r| r.with_default_tag().familiar())
                .unwrap_or_else(|_| tag.clone());
            self.say(&format!("Successfully tagged {shown}"));
            familiar.push(shown);
        }
        Ok(BuildResult {
            id: image.id,
            tags: familiar,
        })
    }

    fn expand_global(&self, word: &str, step: &Step) -> Result<String, BuildError> {
        let lookup = |name: &str| self.global_args.get(name).cloned().flatten();
        shell::expand(word, self.file.escape, &lookup).map_err(|e| at(step, e))
    }

    fn expand(&self, state: &State, word: &str, step: &Step) -> Result<String, BuildError> {
        let lookup = |name: &str| {
            state.env_value(name).or_else(|| {
                state
                    .args
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, v)| v.clone())
            })
        };
        shell::expand(word, self.file.escape, &lookup).map_err(|e| at(step, e))
    }

    /// FROM: the stage's starting state, then the base image's ONBUILD triggers.
    fn from(&mut self, step: &Step) -> Result<State, BuildError> {
        self.announce(step);
        let Instruction::From {
            image, platform, ..
        } = &step.instruction
        else {
            return Err(BuildError::Invalid("a stage must start with FROM".into()));
        };
        if let Some(platform) = platform {
            let wanted = self.expand_global(platform, step)?;
            let host = format!("linux/{}", crate::image::manifest::host_architecture());
            if !wanted.is_empty() && wanted != host {
                return Err(BuildError::Invalid(format!(
                    "FROM --platform={wanted}: berth builds for the host platform ({host}) only"
                )));
            }
        }
        let name = self.expand_global(image, step)?;
        let mut state = if let Some((_, stage)) = self
            .finished
            .iter()
            .rev()
            .find(|(n, _)| n.as_deref() == Some(&name.to_ascii_lowercase()))
        {
            State {
                args: Vec::new(),
                cmd_set: false,
                ..stage.clone()
            }
        } else if name.eq_ignore_ascii_case("scratch") {
            let mut config = ImageConfig::new_for_host();
            config.config.env = vec![crate::container::spec::DEFAULT_PATH.to_string()];
            let id = config_digest(&config)?;
            State {
                config,
                layers: Vec::new(),
                id,
                args: Vec::new(),
                cmd_set: false,
            }
        } else {
            let image = self.store.resolve(&name).map_err(|e| match e {
                crate::image::ImageError::NotFound(_) => BuildError::Invalid(format!(
                    "FROM {name}: No such image: {name}: load it with `berth load -i FILE` or pull it with `berth pull {name}` first"
                )),
                other => BuildError::Image(other),
            })?;
            State {
                layers: image
                    .layers
                    .iter()
                    .map(|l| LayerDescriptor {
                        diff_id: l.diff_id.clone(),
                        chain_id: l.chain_id.clone(),
                        blob: l.blob.clone(),
                    })
                    .collect(),
                config: image.config.clone(),
                id: image.id.clone(),
                args: Vec::new(),
                cmd_set: false,
            }
        };
        self.say(&format!(" ---> {}", state.id.short()));
        let triggers = state.config.config.on_build.take().unwrap_or_default();
        if !triggers.is_empty() {
            state.id = config_digest(&state.config)?;
            let count = triggers.len();
            self.say(&format!(
                "# Executing {count} build trigger{}",
                if count == 1 { "" } else { "s" }
            ));
            for text in triggers {
                let instruction =
                    dockerfile::parse_trigger(&text, self.file.escape).map_err(|e| {
                        BuildError::Invalid(format!(
                            "ONBUILD trigger {text:?} of {name}: {}",
                            e.message
                        ))
                    })?;
                let pseudo = Step {
                    line: step.line,
                    text: text.clone(),
                    instruction: instruction.clone(),
                };
                state = self.step(state, &instruction, &pseudo)?;
            }
        }
        Ok(state)
    }

    /// One instruction after FROM.
    fn step(
        &mut self,
        mut state: State,
        instruction: &Instruction,
        step: &Step,
    ) -> Result<State, BuildError> {
        let nop = |text: String| format!("/bin/sh -c #(nop) {text}");
        let (history, work, change): Planned = match instruction {
            Instruction::From { .. } => {
                return Err(BuildError::Invalid("FROM inside a stage".into()))
            }
            Instruction::Arg(declared) => {
                let mut shown = Vec::new();
                for (name, default) in declared {
                    let value = match self.build_arg(name) {
                        Some(v) => Some(v),
                        None => match default {
                            Some(d) => Some(self.expand(&state, d, step)?),
                            None => self.global_args.get(name).cloned().flatten(),
                        },
                    };
                    shown.push(match default {
                        Some(d) => format!("{name}={d}"),
                        None => name.clone(),
                    });
                    state.args.retain(|(n, _)| n != name);
                    state.args.push((name.clone(), value));
                }
                (
                    nop(format!(" ARG {}", shown.join(" "))),
                    Work::None,
                    Box::new(|_| {}),
                )
            }
            Instruction::Env(pairs) => {
                let mut expanded = Vec::new();
                // Each pair sees the ones before it on the same line? docker
                // expands the whole line with the env from before it.
                for (k, v) in pairs {
                    expanded.push((self.expand(&state, k, step)?, self.expand(&state, v, step)?));
                }
                let shown: Vec<String> = expanded.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (
                    nop(format!(" ENV {}", shown.join(" "))),
                    Work::None,
                    Box::new(move |c| {
                        for (k, v) in expanded {
                            set_env(&mut c.config.env, &k, &v);
                        }
                    }),
                )
            }
            Instruction::Label(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((self.expand(&state, k, step)?, self.expand(&state, v, step)?));
                }
                let shown: Vec<String> = expanded.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (
                    nop(format!(" LABEL {}", shown.join(" "))),
                    Work::None,
                    Box::new(move |c| c.config.labels.extend(expanded)),
                )
            }
            Instruction::Maintainer(name) => {
                let name = name.clone();
                (
                    nop(format!(" MAINTAINER {name}")),
                    Work::None,
                    Box::new(move |c| c.author = Some(name)),
                )
            }
            Instruction::User(user) => {
                let user = self.expand(&state, user, step)?;
                (
                    nop(format!(" USER {user}")),
                    Work::None,
                    Box::new(move |c| c.config.user = user),
                )
            }
            Instruction::StopSignal(signal) => {
                let signal = self.expand(&state, signal, step)?;
                check_signal(&signal).map_err(|e| at(step, e))?;
                (
                    nop(format!(" STOPSIGNAL {signal}")),
                    Work::None,
                    Box::new(move |c| c.config.stop_signal = signal),
                )
            }
            Instruction::Expose(ports) => {
                let mut expanded = Vec::new();
                for port in ports {
                    let word = self.expand(&state, port, step)?;
                    expanded.extend(expose_ports(&word).map_err(|e| at(step, e))?);
                }
                (
                    nop(format!(" EXPOSE {}", expanded.join(" "))),
                    Work::None,
                    Box::new(move |c| {
                        for port in expanded {
                            c.config.exposed_ports.insert(port, json!({}));
                        }
                    }),
                )
            }
            Instruction::Volume(volumes) => {
                let mut expanded = Vec::new();
                for volume in volumes {
                    let v = self.expand(&state, volume, step)?;
                    if v.trim().is_empty() {
                        return Err(at(step, "VOLUME specified can not be an empty string"));
                    }
                    expanded.push(v);
                }
                (
                    nop(format!(
                        " VOLUME {}",
                        serde_json::to_string(&expanded).unwrap_or_default()
                    )),
                    Work::None,
                    Box::new(move |c| {
                        for v in expanded {
                            c.config.volumes.insert(v, json!({}));
                        }
                    }),
                )
            }
            Instruction::Shell(words) => {
                let words = words.clone();
                (
                    nop(format!(
                        " SHELL {}",
                        serde_json::to_string(&words).unwrap_or_default()
                    )),
                    Work::None,
                    Box::new(move |c| c.config.shell = Some(words)),
                )
            }
            Instruction::Cmd(form) => {
                let argv = self.argv(&state, form);
                state.cmd_set = true;
                (
                    nop(format!(
                        " CMD {}",
                        serde_json::to_string(&argv).unwrap_or_default()
                    )),
                    Work::None,
                    Box::new(move |c| c.config.cmd = Some(argv)),
                )
            }
            Instruction::Entrypoint(form) => {
                let argv = match form {
                    CommandForm::Shell(text) if text.is_empty() => Vec::new(),
                    _ => self.argv(&state, form),
                };
                let keep_cmd = state.cmd_set;
                (
                    nop(format!(
                        " ENTRYPOINT {}",
                        serde_json::to_string(&argv).unwrap_or_default()
                    )),
                    Work::None,
                    Box::new(move |c| {
                        c.config.entrypoint = Some(argv);
                        if !keep_cmd {
                            c.config.cmd = None;
                        }
                    }),
                )
            }
            Instruction::Healthcheck(check) => {
                let value = self.healthcheck(&state, check);
                let shown = match check {
                    Healthcheck::None => "NONE".to_string(),
                    Healthcheck::Check { .. } => format!("{value}"),
                };
                (
                    nop(format!(" HEALTHCHECK {shown}")),
                    Work::None,
                    Box::new(move |c| c.config.healthcheck = Some(value)),
                )
            }
            Instruction::Onbuild(text) => {
                let text = normalize_trigger(text);
                let shown = text.clone();
                (
                    nop(format!(" ONBUILD {shown}")),
                    Work::None,
                    Box::new(move |c| c.config.on_build.get_or_insert_with(Vec::new).push(text)),
                )
            }
            Instruction::Workdir(path) => {
                let path = self.expand(&state, path, step)?;
                let current = if state.config.config.working_dir.is_empty() {
                    "/".to_string()
                } else {
                    state.config.config.working_dir.clone()
                };
                let joined = normalize_workdir(&current, &path);
                let set = joined.clone();
                (
                    nop(format!("WORKDIR {joined}")),
                    Work::Mkdir(joined),
                    Box::new(move |c| c.config.working_dir = set),
                )
            }
            Instruction::Run(form) => {
                let args = self.argv(&state, form);
                let mut build_env = Vec::new();
                let mut shown_args = Vec::new();
                for (name, value) in &state.args {
                    if let Some(value) = value {
                        if state.env_value(name).is_none() {
                            build_env.push(format!("{name}={value}"));
                        }
                        shown_args.push(format!("{name}={value}"));
                    }
                }
                for name in PREDEFINED_ARGS {
                    if state.args.iter().any(|(n, _)| n == name) {
                        continue;
                    }
                    if let Some(value) = self.build_arg(name) {
                        build_env.push(format!("{name}={value}"));
                    }
                }
                let command = args.join(" ");
                let history = if shown_args.is_empty() {
                    command.clone()
                } else {
                    format!("|{} {} {command}", shown_args.len(), shown_args.join(" "))
                };
                let mut env = state.config.config.env.clone();
                env.extend(build_env);
                (history, Work::Run { args, env, command }, Box::new(|_| {}))
            }
            Instruction::Copy(spec) => self.copy_work(&state, "COPY", spec, step)?,
            Instruction::Add(spec) => self.copy_work(&state, "ADD", spec, step)?,
        };
        self.commit(state, history, work, change, step)
    }

    /// Exec form as is; shell form through SHELL (default `/bin/sh -c`).
    fn argv(&self, state: &State, form: &CommandForm) -> Vec<String> {
        match form {
            CommandForm::Exec(args) => args.clone(),
            CommandForm::Shell(text) => {
                let mut argv = state
                    .config
                    .config
                    .shell
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()]);
                argv.push(text.clone());
                argv
            }
        }
    }

    fn healthcheck(&self, state: &State, check: &Healthcheck) -> Value {
        match check {
            Healthcheck::None => json!({"Test": ["NONE"]}),
            Healthcheck::Check {
                command,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                let test: Vec<String> = match command {
                    CommandForm::Exec(args) => std::iter::once("CMD".to_string())
                        .chain(args.iter().cloned())
                        .collect(),
                    CommandForm::Shell(text) => vec!["CMD-SHELL".to_string(), text.clone()],
                };
                let _ = state;
                let mut value = json!({ "Test": test });
                for (key, text) in [
                    ("Interval", interval),
                    ("Timeout", timeout),
                    ("StartPeriod", start_period),
                    ("StartInterval", start_interval),
                ] {
                    if let Some(ns) = text.as_deref().and_then(dockerfile::parse_duration) {
                        value[key] = json!(ns);
                    }
                }
                if let Some(n) = retries.as_deref().and_then(|r| r.parse::<u32>().ok()) {
                    value["Retries"] = json!(n);
                }
                value
            }
        }
    }

    /// Resolve the sources of COPY/ADD (and hash them for the cache key).
    fn copy_work(
        &mut self,
        state: &State,
        instruction: &'static str,
        spec: &CopySpec,
        step: &Step,
    ) -> Result<Planned, BuildError> {
        let copy_err = |error: CopyError| BuildError::Copy { instruction, error };
        let expand = |this: &Self, word: &str| -> Result<String, BuildError> {
            if spec.json {
                // JSON words keep their quotes' content; variables still expand.
                let quoted = word.replace('\\', "\\\\").replace('"', "\\\"");
                this.expand(state, &format!("\"{quoted}\""), step)
            } else {
                this.expand(state, word, step)
            }
        };
        let mut patterns = Vec::new();
        for source in &spec.sources {
            patterns.push(expand(self, source)?);
        }
        let raw_dest = expand(self, &spec.dest)?;
        let dest_is_dir = raw_dest.ends_with('/') || raw_dest.ends_with("/.") || raw_dest == ".";
        let workdir = if state.config.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            state.config.config.working_dir.clone()
        };
        let mut dest = normalize_workdir(&workdir, &raw_dest);
        if dest_is_dir && !dest.ends_with('/') {
            dest.push('/');
        }
        let chown = match &spec.chown {
            Some(c) => Some(expand(self, c)?),
            None => None,
        };
        let chmod = spec
            .chmod
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok());
        let urls: Vec<&String> = patterns.iter().filter(|p| is_url(p)).collect();
        if !urls.is_empty() && instruction == "COPY" {
            return Err(BuildError::Copy {
                instruction,
                error: CopyError::NotFound {
                    root: "build context".into(),
                    path: urls[0].clone(),
                },
            });
        }
        let (sources, from_mount, from_word, extract) = if !urls.is_empty() {
            if patterns.len() != 1 {
                return Err(at(step, "ADD with a URL takes exactly one source"));
            }
            let scratch = self.scratch_dir()?;
            let name = download(&patterns[0], &scratch)
                .map_err(|e| BuildError::Invalid(format!("ADD failed: {e}")))?;
            let root = SourceRoot {
                dir: &scratch,
                ignore: None,
                name: "the download".into(),
            };
            let sources = SourceSet::collect(&root, &[name]).map_err(copy_err)?;
            (sources, None, String::new(), false)
        } else if let Some(from) = &spec.from {
            let from = expand(self, from)?;
            let layers = self.layers_of(&from)?;
            let dir = self.scratch_dir()?;
            let mount = ReadOnlyMount::mount(&dir, &layers)?;
            let root = SourceRoot {
                dir: mount.path(),
                ignore: None,
                name: format!("stage {from}"),
            };
            let sources = SourceSet::collect(&root, &patterns).map_err(copy_err)?;
            (sources, Some(mount), format!("--from={from} "), false)
        } else {
            let root = SourceRoot {
                dir: &self.context,
                ignore: Some(&self.ignore),
                name: "build context".into(),
            };
            let sources = SourceSet::collect(&root, &patterns).map_err(copy_err)?;
            let extract =
                instruction == "ADD" && sources.single_file().is_some() && is_tar_archive(&sources);
            (sources, None, String::new(), extract)
        };
        let hash = sources.content_hash().map_err(copy_err)?;
        let mut flags = from_word;
        if let Some(c) = &chown {
            flags.push_str(&format!("--chown={c} "));
        }
        if let Some(m) = &spec.chmod {
            flags.push_str(&format!("--chmod={m} "));
        }
        let kind = if extract {
            "archive"
        } else {
            sources.kind_word()
        };
        let history = format!("/bin/sh -c #(nop) {instruction} {flags}{kind}:{hash} in {dest} ");
        Ok((
            history,
            Work::Copy {
                instruction,
                sources,
                _from: from_mount,
                dest,
                dest_is_dir,
                chown,
                chmod,
                extract,
            },
            Box::new(|_| {}),
        ))
    }

    /// The layer directories of a finished stage (by name or index) or of an image.
    fn layers_of(&self, from: &str) -> Result<Vec<PathBuf>, BuildError> {
        let lower = from.to_ascii_lowercase();
        if let Some((_, state)) = self
            .finished
            .iter()
            .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
        {
            return Ok(state.layer_dirs(&self.store));
        }
        if let Ok(index) = from.parse::<usize>() {
            return match self.finished.get(index) {
                Some((_, state)) => Ok(state.layer_dirs(&self.store)),
                None => Err(BuildError::Invalid(format!(
                    "COPY --from={from}: stage {from} is not built before this one (stages are numbered from 0)"
                ))),
            };
        }
        let image = self.store.resolve(from).map_err(|e| {
            BuildError::Invalid(format!(
                "COPY --from={from}: no stage named {from:?} and {e}"
            ))
        })?;
        Ok(image.layer_dirs())
    }

    /// Use the cache or do the work; then the new state.
    fn commit(
        &mut self,
        state: State,
        history: String,
        work: Work,
        change: ConfigChange,
        step: &Step,
    ) -> Result<State, BuildError> {
        let key = BuildCache::key(&state.id, &history);
        if !self.options.no_cache {
            if let Some((config, layers)) = self.cache.get(&self.store, &key) {
                let id = config_digest(&config)?;
                self.say(" ---> Using cache");
                self.say(&format!(" ---> {}", id.short()));
                return Ok(State {
                    config,
                    layers,
                    id,
                    ..state
                });
            }
        }
        let layer = self.do_work(&state, work, step)?;
        let mut config = state.config.clone();
        change(&mut config);
        let mut layers = state.layers.clone();
        let empty_layer = layer.is_none();
        if let Some(layer) = layer {
            layers.push(layer);
        }
        let created = now();
        config.created = Some(created.clone());
        config.history.push(History {
            created: Some(created),
            created_by: Some(history),
            author: None,
            comment: None,
            empty_layer,
        });
        config.rootfs.kind = "layers".to_string();
        config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
        let id = config_digest(&config)?;
        self.cache.put(&key, &config, &layers);
        self.say(&format!(" ---> {}", id.short()));
        Ok(State {
            config,
            layers,
            id,
            ..state
        })
    }

    fn do_work(
        &mut self,
        state: &State,
        work: Work,
        step: &Step,
    ) -> Result<Option<LayerDescriptor>, BuildError> {
        if matches!(work, Work::None) {
            return Ok(None);
        }
        let scratch = self.scratch_dir()?;
        let mount = StepMount::mount(&scratch, &state.layer_dirs(&self.store))?;
        match work {
            Work::None => {}
            Work::Mkdir(path) => {
                let root = rustix::fs::open(
                    mount.rootfs(),
                    rustix::fs::OFlags::PATH
                        | rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| BuildError::Setup(format!("opening the rootfs: {e}")))?;
                berth_runtime::beneath::mkdir_all_beneath(
                    root.as_fd(),
                    Path::new(&path),
                    rustix::fs::Mode::from_raw_mode(0o755),
                )
                .map_err(|e| at(step, format!("WORKDIR {path}: {e}")))?;
            }
            Work::Run { args, env, command } => {
                let short = crate::container::names::new_id()[..12].to_string();
                self.say(&format!(" ---> Running in {short}"));
                let request = RunRequest {
                    args,
                    env,
                    working_dir: &state.config.config.working_dir,
                    user: &state.config.config.user,
                    host_network: self.options.host_network,
                };
                let status =
                    run_in_container(self.roots, mount.rootfs(), &scratch, &request, self.out)?;
                if status != 0 {
                    return Err(BuildError::RunFailed {
                        command,
                        code: status,
                    });
                }
                self.say(&format!("Removing intermediate container {short}"));
            }
            Work::Copy {
                instruction,
                sources,
                _from,
                dest,
                dest_is_dir,
                chown,
                chmod,
                extract,
            } => {
                let owner = match &chown {
                    Some(spec) => {
                        Some(resolve_chown(mount.rootfs(), spec).map_err(|e| at(step, e))?)
                    }
                    None => None,
                };
                let options = CopyOptions { owner, chmod };
                if extract {
                    extract_archive(&sources, mount.rootfs(), &dest)
                        .map_err(|e| at(step, format!("ADD failed: {e}")))?;
                } else {
                    sources
                        .copy_into(instruction, mount.rootfs(), &dest, dest_is_dir, &options)
                        .map_err(|error| BuildError::Copy { instruction, error })?;
                }
            }
        }
        let upper = mount.unmount()?;
        let layer = rootfs::commit_layer(&self.store, &upper, &scratch, &state.diff_ids())?;
        let _ = fs::remove_dir_all(&scratch);
        Ok(layer)
    }
}

/// An error that names the instruction's line.
fn at(step: &Step, message: impl std::fmt::Display) -> BuildError {
    BuildError::Invalid(format!(
        "line {}: {}: {message}",
        step.line,
        step.instruction.keyword()
    ))
}

/// Replace `KEY=...` in place, or append.
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let prefix = format!("{key}=");
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// WORKDIR and relative COPY destinations: relative to the current one,
/// cleaned, absolute.
fn normalize_workdir(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", current.trim_end_matches('/'))
    };
    format!("/{}", super::ignore::clean(&joined))
}

fn normalize_trigger(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.find(char::is_whitespace) {
        Some(i) => format!(
            "{} {}",
            trimmed[..i].to_ascii_uppercase(),
            trimmed[i..].trim_start()
        ),
        None => trimmed.to_ascii_uppercase(),
    }
}

/// `SIGINT`, `INT`, `9`, `SIGRTMIN+3`: what docker's signal parser accepts.
fn check_signal(signal: &str) -> Result<(), String> {
    let ok = if let Ok(n) = signal.parse::<u32>() {
        (1..=64).contains(&n)
    } else {
        let name = signal.strip_prefix("SIG").unwrap_or(signal);
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-')
    };
    if ok {
        Ok(())
    } else {
        Err(format!("Invalid signal: {signal}"))
    }
}

/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`, ... (ranges expanded, as docker does).
fn expose_ports(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("invalid port {word:?}"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(ports)?, parse(ports)?),
    };
    if end < start || end - start > 1024 {
        return Err(format!("invalid port range {word:?}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `--chown=user[:group]` against the rootfs's passwd and group files. As in
/// docker's builder, a user without a group gets the gid equal to its uid.
fn resolve_chown(rootfs: &Path, spec: &str) -> Result<(u32, u32), String> {
    let resolved = berth_runtime::user::resolve_user(rootfs, spec)
        .map_err(|e| format!("--chown={spec}: {e}"))?;
    if spec.contains(':') {
        Ok((resolved.uid, resolved.gid))
    } else {
        Ok((resolved.uid, resolved.uid))
    }
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

/// Fetch `url` into `dir`; returns the file name (the last path segment).
fn download(url: &str, dir: &Path) -> Result<String, String> {
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .find(|s| !s.is_empty() && !s.contains(':'))
        .unwrap_or("download")
        .to_string();
    let name = if name.starts_with('.') {
        format!("download{name}")
    } else {
        name
    };
    let mut body =
        crate::registry::http::fetch_url(url).map_err(|e| format!("cannot fetch {url}: {e}"))?;
    let path = dir.join(&name);
    let mut file = fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    io::copy(&mut body, &mut file).map_err(|e| format!("downloading {url}: {e}"))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(name)
}

/// A tar (plain, gzip or zstd): the ustar magic at offset 257 after decompression.
fn is_tar_archive(sources: &SourceSet) -> bool {
    let Ok(file) = sources.open_single_file() else {
        return false;
    };
    let Ok((_, mut reader)) = crate::layer::compression::decompress(file) else {
        return false;
    };
    let mut header = [0u8; 512];
    let mut read = 0;
    while read < header.len() {
        match reader.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(_) => return false,
        }
    }
    read == 512 && &header[257..262] == b"ustar"
}

/// ADD of a local archive: unpacked into `dest` (a directory), every entry
/// confined beneath it.
fn extract_archive(sources: &SourceSet, rootfs: &Path, dest: &str) -> Result<(), String> {
    let root = rustix::fs::open(
        rootfs,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening the rootfs: {e}"))?;
    let target = berth_runtime::beneath::mkdir_all_beneath(
        root.as_fd(),
        Path::new(dest),
        rustix::fs::Mode::from_raw_mode(0o755),
    )
    .map_err(|e| format!("{dest}: {e}"))?;
    let file = sources.open_single_file().map_err(|e| e.to_string())?;
    let (_, reader) = crate::layer::compression::decompress(file).map_err(|e| e.to_string())?;
    let path = crate::layer::unpack::proc_fd_path(&target);
    crate::layer::unpack::unpack(reader, &path, crate::layer::Whiteouts::Apply)
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_joins_and_cleans() {
        assert_eq!(normalize_workdir("/", "app"), "/app");
        assert_eq!(normalize_workdir("/srv", "app/../x/"), "/srv/x");
        assert_eq!(normalize_workdir("/srv", "/abs"), "/abs");
        assert_eq!(normalize_workdir("/srv/", "."), "/srv");
        assert_eq!(normalize_workdir("/", "/"), "/");
    }

    #[test]
    fn exposed_ports_are_normalized_like_docker() {
        assert_eq!(expose_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            expose_ports("8000-8002").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expose_ports("0").is_err());
        assert!(expose_ports("80/xyz").is_err());
        assert!(expose_ports("9-1").is_err());
    }

    #[test]
    fn signals_and_env() {
        assert!(check_signal("SIGINT").is_ok());
        assert!(check_signal("9").is_ok());
        assert!(check_signal("SIGRTMIN+3").is_ok());
        assert!(check_signal("sigint").is_err());
        assert!(check_signal("99").is_err());
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        set_env(&mut env, "A", "3");
        set_env(&mut env, "C", "4");
        assert_eq!(env, vec!["A=3", "B=2", "C=4"]);
        assert_eq!(normalize_trigger("run  echo hi"), "RUN echo hi");
    }
}

#[cfg(test)]
mod work_dir_tests {
    use super::*;

    #[test]
    fn a_lockless_work_dir_is_abandoned_only_when_its_owner_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let started = crate::container::procinfo::start_time(me).unwrap();
        let mine = tmp.path().join(format!("build-{me}-{started}-00"));
        fs::create_dir(&mine).unwrap();
        assert!(!is_abandoned_work_dir(&mine), "its owner (this test) runs");
        let gone = tmp.path().join(format!("build-{me}-{}-00", started + 1));
        fs::create_dir(&gone).unwrap();
        assert!(
            is_abandoned_work_dir(&gone),
            "no process started then with that pid"
        );
        let other = tmp.path().join("build-cache-like-name");
        fs::create_dir(&other).unwrap();
        assert!(
            !is_abandoned_work_dir(&other),
            "unknown names are left alone"
        );
    }

    #[test]
    fn a_locked_work_dir_is_kept_and_a_free_one_is_abandoned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("build-1-2-00");
        fs::create_dir(&dir).unwrap();
        let held = FileLock::exclusive(&dir.join("lock")).unwrap();
        assert!(!is_abandoned_work_dir(&dir));
        drop(held);
        assert!(is_abandoned_work_dir(&dir));
    }
}

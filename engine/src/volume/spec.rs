//! What a container mounts, as the user said it: `-v`, `--mount`, `--tmpfs`,
//! `--volumes-from`, and the image's `VOLUME` entries, all turned into one
//! list of [`MountSpec`]s kept in the container's record.
//!
//! No kernel mechanism here: parsing and validation only, so every mistake
//! (a relative host path, an empty name, an unknown option) is reported
//! before anything is created. The mounts themselves are made at start
//! (see [`super::mounts`]).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The three kinds of mount docker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host file or directory.
    Bind,
    /// A named or anonymous volume under `<root>/volumes`.
    Volume,
    /// A fresh tmpfs.
    Tmpfs,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// The host path (bind), the volume name (volume), empty (tmpfs).
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
    /// `rprivate` unless the user asked for `shared`, `slave`, ...
    #[serde(default)]
    pub propagation: Option<String>,
    /// tmpfs options (`size=64m`, `mode=1777`, `exec`, ...).
    #[serde(default)]
    pub options: Vec<String>,
    /// Do not seed a new volume with the image's content (`nocopy`).
    #[serde(default)]
    pub no_copy: bool,
    /// A volume made for this container alone (`-v /path`, an image VOLUME):
    /// `rm -v` and `run --rm` remove it.
    #[serde(default)]
    pub anonymous: bool,
    /// `-v` creates a missing host directory; `--mount type=bind` refuses it.
    #[serde(default)]
    pub create_source: bool,
}

impl MountSpec {
    fn new(kind: MountKind, source: &str, target: &str) -> MountSpec {
        MountSpec {
            kind,
            source: source.to_string(),
            target: target.to_string(),
            read_only: false,
            propagation: None,
            options: Vec::new(),
            no_copy: false,
            anonymous: false,
            create_source: false,
        }
    }

    /// docker's `Mode` field: `ro`/`rw`, then the propagation (`z`-free).
    pub fn mode(&self) -> String {
        let mut parts = vec![if self.read_only { "ro" } else { "rw" }.to_string()];
        if let Some(p) = &self.propagation {
            parts.push(p.clone());
        }
        parts.join(",")
    }
}

/// The propagation modes docker accepts on a bind.
const PROPAGATIONS: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// `-v [SOURCE:]TARGET[:OPTIONS]`. A SOURCE starting with `/` is a host
/// path; anything else is a volume name; no SOURCE makes an anonymous volume.
pub fn parse_volume_flag(text: &str) -> Result<MountSpec, String> {
    let bad = |why: String| format!("invalid volume specification {text:?}: {why}");
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => return Err(bad("too many colons; use [SOURCE:]TARGET[:OPTIONS]".into())),
    };
    if parts.len() > 1 && source.is_empty() {
        return Err(bad("the source before the first ':' is empty".into()));
    }
    let target = clean_target(target).map_err(bad)?;
    let mut spec = if source.is_empty() {
        let mut spec = MountSpec::new(MountKind::Volume, "", &target);
        spec.anonymous = true;
        spec
    } else if source.starts_with('/') {
        let mut spec = MountSpec::new(MountKind::Bind, &clean_host_path(source), &target);
        spec.create_source = true;
        spec
    } else {
        validate_volume_name(source).map_err(|e| {
            bad(format!(
                "{e}. If you intended to pass a host directory, use an absolute path"
            ))
        })?;
        MountSpec::new(MountKind::Volume, source, &target)
    };
    apply_mode_list(&mut spec, options).map_err(bad)?;
    Ok(spec)
}

/// What one `-v` option does.
fn mode_effect(option: &str) -> Option<&'static str> {
    Some(match option {
        "ro" | "readonly" => "ro",
        "rw" => "rw",
        "z" | "Z" | "consistent" | "cached" | "delegated" => "ignore",
        "nocopy" => "nocopy",
        p if PROPAGATIONS.contains(&p) => "propagation",
        _ => return None,
    })
}

fn apply_mode_list(spec: &mut MountSpec, options: &str) -> Result<(), String> {
    if options.is_empty() {
        return Ok(());
    }
    let (mut seen_rw, mut seen_propagation) = (false, false);
    for option in options.split(',') {
        match mode_effect(option) {
            Some("ro" | "rw") => {
                if seen_rw {
                    return Err("ro and rw given more than once".into());
                }
                seen_rw = true;
                spec.read_only = matches!(option, "ro" | "readonly");
            }
            Some("propagation") => {
                if spec.kind != MountKind::Bind {
                    return Err(format!("propagation {option:?} is only for host directories"));
                }
                if seen_propagation {
                    return Err("more than one propagation mode".into());
                }
                seen_propagation = true;
                spec.propagation = Some(option.to_string());
            }
            Some("nocopy") => {
                if spec.kind != MountKind::Volume {
                    return Err("nocopy is only for volumes".into());
                }
                spec.no_copy = true;
            }
            Some(_) => {}
            None => {
                return Err(format!(
                    "invalid mode {option:?}: use ro, rw, nocopy, or a propagation (private, shared, slave, rprivate, rshared, rslave)"
                ))
            }
        }
    }
    Ok(())
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,…]`.
pub fn parse_mount_flag(text: &str) -> Result<MountSpec, String> {
    let bad = |why: String| format!("invalid argument {text:?} for --mount: {why}");
    let mut kind = MountKind::Volume;
    let (mut source, mut target) = (String::new(), String::new());
    let (mut read_only, mut no_copy) = (false, false);
    let mut propagation = None;
    let mut options = Vec::new();
    for field in text.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (field.trim(), None),
        };
        let truthy = |v: Option<&str>| -> Result<bool, String> {
            match v {
                None | Some("1" | "true") => Ok(true),
                Some("0" | "false") => Ok(false),
                Some(other) => Err(format!(
                    "invalid value {other:?} for {key}: use true or false"
                )),
            }
        };
        let need = |v: Option<&str>| -> Result<String, String> {
            v.filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("{key} needs a value ({key}=...)"))
        };
        match key {
            "type" => {
                kind = match need(value).map_err(bad)?.as_str() {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    "tmpfs" => MountKind::Tmpfs,
                    other => {
                        return Err(bad(format!(
                            "unknown mount type {other:?}: use bind, volume or tmpfs"
                        )))
                    }
                }
            }
            "source" | "src" => source = need(value).map_err(bad)?,
            "target" | "destination" | "dst" => target = need(value).map_err(bad)?,
            "readonly" | "ro" => read_only = truthy(value).map_err(bad)?,
            "volume-nocopy" => no_copy = truthy(value).map_err(bad)?,
            "bind-propagation" => {
                let p = need(value).map_err(bad)?;
                if !PROPAGATIONS.contains(&p.as_str()) {
                    return Err(bad(format!("invalid bind-propagation {p:?}")));
                }
                propagation = Some(p);
            }
            "tmpfs-size" => options.push(format!("size={}", need(value).map_err(bad)?)),
            "tmpfs-mode" => {
                let mode = need(value).map_err(bad)?;
                if u32::from_str_radix(&mode, 8).is_err() {
                    return Err(bad(format!("tmpfs-mode {mode:?} is not an octal mode")));
                }
                options.push(format!("mode={mode}"));
            }
            "" => return Err(bad("empty field".into())),
            other => return Err(bad(format!("unexpected key {other:?}"))),
        }
    }
    if target.is_empty() {
        return Err(bad("target is required (target=/path/in/container)".into()));
    }
    let target = clean_target(&target).map_err(bad)?;
    let mut spec = MountSpec::new(kind, "", &target);
    spec.read_only = read_only;
    match kind {
        MountKind::Bind => {
            if source.is_empty() {
                return Err(bad("a bind mount needs source=/host/path".into()));
            }
            if !source.starts_with('/') {
                return Err(bad(format!(
                    "the bind source {source:?} must be an absolute path"
                )));
            }
            spec.source = clean_host_path(&source);
            spec.propagation = propagation;
        }
        MountKind::Volume => {
            if propagation.is_some() {
                return Err(bad("bind-propagation is only for type=bind".into()));
            }
            if source.is_empty() {
                spec.anonymous = true;
            } else {
                validate_volume_name(&source).map_err(bad)?;
                spec.source = source;
            }
            spec.no_copy = no_copy;
        }
        MountKind::Tmpfs => {
            if !source.is_empty() {
                return Err(bad("a tmpfs has no source".into()));
            }
            spec.options = options.clone();
        }
    }
    if kind != MountKind::Tmpfs && !options.is_empty() {
        return Err(bad(
            "tmpfs-size and tmpfs-mode are only for type=tmpfs".into()
        ));
    }
    Ok(spec)
}

/// `--tmpfs /path[:OPTIONS]` (mount options such as `size=64m,mode=1777,exec`).
pub fn parse_tmpfs_flag(text: &str) -> Result<MountSpec, String> {
    let bad = |why: String| format!("invalid --tmpfs {text:?}: {why}");
    let (target, options) = text.split_once(':').unwrap_or((text, ""));
    let target = clean_target(target).map_err(bad)?;
    let mut spec = MountSpec::new(MountKind::Tmpfs, "", &target);
    for option in options.split(',').filter(|o| !o.is_empty()) {
        if option.contains(char::is_whitespace) {
            return Err(bad(format!("option {option:?} contains spaces")));
        }
        match option {
            "ro" => spec.read_only = true,
            "rw" => spec.read_only = false,
            other => spec.options.push(other.to_string()),
        }
    }
    Ok(spec)
}

/// `--volumes-from CONTAINER[:ro|:rw]`.
pub fn parse_volumes_from(text: &str) -> Result<(String, Option<bool>), String> {
    let (container, mode) = match text.split_once(':') {
        Some((c, "ro")) => (c, Some(true)),
        Some((c, "rw")) => (c, Some(false)),
        Some((_, other)) => {
            return Err(format!(
                "invalid --volumes-from {text:?}: mode {other:?} must be ro or rw"
            ))
        }
        None => (text, None),
    };
    if container.is_empty() {
        return Err(format!(
            "invalid --volumes-from {text:?}: no container named"
        ));
    }
    Ok((container.to_string(), mode))
}

/// A container path: absolute, never `/`, `.` and `..` resolved lexically
/// (it is resolved again, by fd and beneath the rootfs, when mounted).
pub fn clean_target(target: &str) -> Result<String, String> {
    if target.is_empty() {
        return Err("the mount target (path in the container) is empty".into());
    }
    if !target.starts_with('/') {
        return Err(format!("mount path {target:?} must be absolute"));
    }
    let mut clean = PathBuf::from("/");
    for component in Path::new(target).components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    if clean == Path::new("/") {
        return Err("the destination can't be '/'".into());
    }
    Ok(clean.to_string_lossy().into_owned())
}

/// A host path without `.`, `..` or a trailing slash (lexically).
fn clean_host_path(path: &str) -> String {
    let mut clean = PathBuf::from("/");
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    clean.to_string_lossy().into_owned()
}

/// docker's volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (at least two characters).
pub fn validate_volume_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() {
        return Err("the volume name is empty".into());
    }
    if !first_ok || !rest_ok || name.len() < 2 {
        return Err(format!(
            "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed (at least two characters)"
        ));
    }
    Ok(())
}

/// Check a container's whole list: one mount per target (docker's
/// "Duplicate mount point").
pub fn check_duplicates(mounts: &[MountSpec]) -> Result<(), String> {
    let mut targets: Vec<&str> = mounts.iter().map(|m| m.target.as_str()).collect();
    targets.sort_unstable();
    for pair in targets.windows(2) {
        if pair[0] == pair[1] {
            return Err(format!("Duplicate mount point: {}", pair[0]));
        }
    }
    Ok(())
}

/// `--mount type=bind` needs its source to exist already (only `-v` creates
/// a missing directory): checked at create, so nothing is made for a typo.
pub fn check_bind_sources(mounts: &[MountSpec]) -> Result<(), String> {
    for m in mounts {
        if m.kind == MountKind::Bind && !m.create_source && !Path::new(&m.source).exists() {
            return Err(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                m.source
            ));
        }
    }
    Ok(())
}

/// The image's `VOLUME` entries not already covered by a user mount, as
/// anonymous volumes (docker makes one per entry).
pub fn image_volumes(volumes: &[String], user: &[MountSpec]) -> Result<Vec<MountSpec>, String> {
    let mut out = Vec::new();
    for volume in volumes {
        let target = clean_target(volume).map_err(|e| format!("image VOLUME {volume:?}: {e}"))?;
        if user
            .iter()
            .chain(&out)
            .any(|m: &MountSpec| m.target == target)
        {
            continue;
        }
        let mut spec = MountSpec::new(MountKind::Volume, "", &target);
        spec.anonymous = true;
        out.push(spec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_flag_forms() {
        let b = parse_volume_flag("/srv/notebooks:/srv/notebooks:ro").unwrap();
        assert_eq!(
            (b.kind, b.source.as_str(), b.target.as_str(), b.read_only),
            (MountKind::Bind, "/srv/notebooks", "/srv/notebooks", true)
        );
        assert!(b.create_source, "-v creates a missing host directory");
        let v = parse_volume_flag("data:/var/lib/db").unwrap();
        assert_eq!(
            (v.kind, v.source.as_str(), v.anonymous),
            (MountKind::Volume, "data", false)
        );
        let a = parse_volume_flag("/cache").unwrap();
        assert_eq!(
            (a.kind, a.source.as_str(), a.anonymous),
            (MountKind::Volume, "", true)
        );
        let s = parse_volume_flag("/h:/c:ro,rshared").unwrap();
        assert_eq!(s.propagation.as_deref(), Some("rshared"));
        assert_eq!(s.mode(), "ro,rshared");
        let n = parse_volume_flag("data:/x:nocopy").unwrap();
        assert!(n.no_copy);
        let t = parse_volume_flag("/h/./a/../b/:/c//d/").unwrap();
        assert_eq!((t.source.as_str(), t.target.as_str()), ("/h/b", "/c/d"));
    }

    #[test]
    fn v_flag_mistakes_are_explained() {
        for (text, needle) in [
            ("./data:/x", "use an absolute path"),
            ("data:x", "must be absolute"),
            (":/x", "empty"),
            ("/h:/", "can't be '/'"),
            ("/h:/c:rw,ro", "more than once"),
            ("/h:/c:bogus", "invalid mode \"bogus\""),
            ("data:/c:shared", "only for host directories"),
            ("/h:/c:nocopy", "only for volumes"),
            ("a:b:c:d", "too many colons"),
            ("x:/c", "invalid characters"),
        ] {
            let err = parse_volume_flag(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn mount_flag_forms_and_mistakes() {
        let b = parse_mount_flag("type=bind,source=/h,target=/c,readonly,bind-propagation=rslave")
            .unwrap();
        assert_eq!(
            (
                b.kind,
                b.read_only,
                b.propagation.as_deref(),
                b.create_source
            ),
            (MountKind::Bind, true, Some("rslave"), false)
        );
        let v = parse_mount_flag("source=vol,dst=/data,volume-nocopy").unwrap();
        assert_eq!(
            (v.kind, v.source.as_str(), v.no_copy),
            (MountKind::Volume, "vol", true)
        );
        let t = parse_mount_flag("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(t.options, vec!["size=64m", "mode=1770"]);
        for (text, needle) in [
            ("type=bind,target=/c", "needs source"),
            ("type=bind,source=rel,target=/c", "absolute"),
            ("type=volume,source=v", "target is required"),
            ("type=nfs,target=/c", "unknown mount type"),
            (
                "type=bind,source=/h,target=/c,colour=red",
                "unexpected key \"colour\"",
            ),
            ("type=tmpfs,source=x,target=/c", "no source"),
            ("type=volume,target=/c,tmpfs-size=1m", "only for type=tmpfs"),
            (
                "type=bind,source=/h,target=/c,readonly=maybe",
                "true or false",
            ),
        ] {
            let err = parse_mount_flag(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn tmpfs_and_volumes_from() {
        let t = parse_tmpfs_flag("/run:size=1m,exec").unwrap();
        assert_eq!(
            (t.target.as_str(), t.options.clone()),
            ("/run", vec!["size=1m".to_string(), "exec".into()])
        );
        assert!(parse_tmpfs_flag("run").is_err());
        assert_eq!(
            parse_volumes_from("web:ro").unwrap(),
            ("web".into(), Some(true))
        );
        assert_eq!(parse_volumes_from("web").unwrap(), ("web".into(), None));
        assert!(parse_volumes_from("web:x").is_err());
    }

    #[test]
    fn duplicates_and_image_volumes() {
        let user = vec![parse_volume_flag("data:/var/lib/db").unwrap()];
        let extra = image_volumes(
            &["/var/lib/db".into(), "/logs/".into(), "/logs".into()],
            &user,
        )
        .unwrap();
        assert_eq!(extra.len(), 1, "a user mount covers the first, /logs once");
        assert_eq!(
            (extra[0].target.as_str(), extra[0].anonymous),
            ("/logs", true)
        );
        let mut all = user.clone();
        all.push(parse_volume_flag("/h:/var/lib/db").unwrap());
        assert_eq!(
            check_duplicates(&all).unwrap_err(),
            "Duplicate mount point: /var/lib/db"
        );
    }
}

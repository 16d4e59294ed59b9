//! Mount options from config.json (`["nosuid", "mode=755", "rbind"]`) split
//! into what `mount(2)` takes: flag bits, propagation changes (each its own
//! `mount(2)` call), and the filesystem-specific data string.
//!
//! The names are mount(8)'s; unknown names go to the data string, as the
//! filesystem may know them (`size=65536k`, `newinstance`).

use nix::mount::MsFlags;

/// `MS_NOSYMFOLLOW` (Linux 5.10); not in nix's flag set yet.
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for `mount(2)` (for a bind mount: for its remount).
    pub flags: MsFlags,
    /// `Some(recursive)` for `bind` / `rbind`.
    pub bind: Option<bool>,
    /// Propagation changes in order (`MS_SHARED`, `MS_SLAVE | MS_REC`, ...).
    pub propagation: Vec<MsFlags>,
    /// The rest, comma-joined for the filesystem.
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            bind: None,
            propagation: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl MountOptions {
    /// The data string, or None when empty.
    pub fn data_string(&self) -> Option<String> {
        if self.data.is_empty() {
            None
        } else {
            Some(self.data.join(","))
        }
    }

    /// Flags that a bind mount only gets by a second, remount call.
    pub fn bind_remount_flags(&self) -> MsFlags {
        self.flags
            & (MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_RELATIME
                | MsFlags::MS_STRICTATIME
                | MS_NOSYMFOLLOW)
    }
}

enum Effect {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
    Bind(bool),
    Ignore,
}

fn effect_of(option: &str) -> Option<Effect> {
    use Effect::*;
    Some(match option {
        "defaults" => Ignore,
        "ro" => Set(MsFlags::MS_RDONLY),
        "rw" => Clear(MsFlags::MS_RDONLY),
        "nosuid" => Set(MsFlags::MS_NOSUID),
        "suid" => Clear(MsFlags::MS_NOSUID),
        "nodev" => Set(MsFlags::MS_NODEV),
        "dev" => Clear(MsFlags::MS_NODEV),
        "noexec" => Set(MsFlags::MS_NOEXEC),
        "exec" => Clear(MsFlags::MS_NOEXEC),
        "sync" => Set(MsFlags::MS_SYNCHRONOUS),
        "async" => Clear(MsFlags::MS_SYNCHRONOUS),
        "dirsync" => Set(MsFlags::MS_DIRSYNC),
        "remount" => Set(MsFlags::MS_REMOUNT),
        "mand" => Set(MsFlags::MS_MANDLOCK),
        "nomand" => Clear(MsFlags::MS_MANDLOCK),
        "noatime" => Set(MsFlags::MS_NOATIME),
        "atime" => Clear(MsFlags::MS_NOATIME),
        "nodiratime" => Set(MsFlags::MS_NODIRATIME),
        "diratime" => Clear(MsFlags::MS_NODIRATIME),
        "relatime" => Set(MsFlags::MS_RELATIME),
        "norelatime" => Clear(MsFlags::MS_RELATIME),
        "strictatime" => Set(MsFlags::MS_STRICTATIME),
        "nostrictatime" => Clear(MsFlags::MS_STRICTATIME),
        "lazytime" => Set(MsFlags::MS_LAZYTIME),
        "nolazytime" => Clear(MsFlags::MS_LAZYTIME),
        "iversion" => Set(MsFlags::MS_I_VERSION),
        "noiversion" => Clear(MsFlags::MS_I_VERSION),
        "silent" => Set(MsFlags::MS_SILENT),
        "loud" => Clear(MsFlags::MS_SILENT),
        "nosymfollow" => Set(MS_NOSYMFOLLOW),
        "symfollow" => Clear(MS_NOSYMFOLLOW),
        "bind" => Bind(false),
        "rbind" => Bind(true),
        "private" => Propagation(MsFlags::MS_PRIVATE),
        "rprivate" => Propagation(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
        "shared" => Propagation(MsFlags::MS_SHARED),
        "rshared" => Propagation(MsFlags::MS_SHARED | MsFlags::MS_REC),
        "slave" => Propagation(MsFlags::MS_SLAVE),
        "rslave" => Propagation(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        "unbindable" => Propagation(MsFlags::MS_UNBINDABLE),
        "runbindable" => Propagation(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
        // Extensions of other runtimes and engines that change nothing here:
        // tmpcopyup (crun/runc copy the image's files into a new tmpfs;
        // berth-runtime mounts an empty one), SELinux relabel marks, and
        // mount(8) userspace options.
        "tmpcopyup" | "notmpcopyup" | "z" | "Z" | "U" | "copy-symlink" => Ignore,
        o if o.starts_with("x-") => Ignore,
        _ => return None,
    })
}

/// Parse config.json's option list. Fails on options that need a mount
/// feature this runtime does not implement (id-mapped and recursive-attribute
/// mounts), rather than mounting without them.
pub fn parse(options: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions::default();
    for option in options {
        let option = option.as_str();
        if matches!(option, "idmap" | "ridmap") || option.starts_with("idmap=") {
            return Err(format!(
                "mount option {option:?} (id-mapped mount) is not supported by berth-runtime"
            ));
        }
        if matches!(
            option,
            "rro"
                | "rrw"
                | "rnosuid"
                | "rsuid"
                | "rnodev"
                | "rdev"
                | "rnoexec"
                | "rexec"
                | "rnoatime"
                | "ratime"
                | "rrelatime"
                | "rnorelatime"
                | "rstrictatime"
                | "rnostrictatime"
                | "rnodiratime"
                | "rdiratime"
                | "rnosymfollow"
                | "rsymfollow"
        ) {
            return Err(format!(
                "mount option {option:?} (recursive mount attribute) is not supported by berth-runtime; use {:?} on each mount",
                &option[1..]
            ));
        }
        match effect_of(option) {
            Some(Effect::Set(f)) => out.flags |= f,
            Some(Effect::Clear(f)) => out.flags &= !f,
            Some(Effect::Propagation(f)) => out.propagation.push(f),
            Some(Effect::Bind(recursive)) => {
                out.bind = Some(recursive || out.bind == Some(true));
            }
            Some(Effect::Ignore) => {}
            None => out.data.push(option.to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.bind, None);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = opts(&["ro", "rw", "noexec", "exec", "nodev"]);
        assert_eq!(o.flags, MsFlags::MS_NODEV);
    }

    #[test]
    fn bind_and_rbind() {
        assert_eq!(opts(&["bind", "ro"]).bind, Some(false));
        assert_eq!(opts(&["rbind"]).bind, Some(true));
        assert_eq!(opts(&["rbind", "bind"]).bind, Some(true));
        assert_eq!(
            opts(&["bind", "ro", "nosuid", "mode=1"]).bind_remount_flags(),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
    }

    #[test]
    fn unsupported_mount_features_are_refused_by_name() {
        let err = parse(&["rro".to_string()]).unwrap_err();
        assert!(err.contains("\"rro\""), "{err}");
        assert!(parse(&["idmap".to_string()]).is_err());
    }
}

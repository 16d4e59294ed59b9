//! Volumes: directories berth keeps for containers, outliving them.
//!
//! Layout under `--root`:
//! ```text
//! volumes/lock                  flock(2) held to create, remove or prune
//! volumes/<name>/volume.json    the record (docker's `volume inspect` fields)
//! volumes/<name>/_data          what the container sees (the Mountpoint)
//! volumes/<name>/lock           held while the volume is seeded
//! ```
//!
//! A volume is in use while any container record — running or not — names
//! it in its mounts: the count comes from the records themselves, not from a
//! counter that a crash could leave wrong. `rm` and `prune` hold the lock
//! that container creation also takes, so a volume cannot be removed between
//! the check and a new container naming it.
//!
//! Module map: [`spec`] (the `-v`/`--mount`/`--tmpfs` grammar), [`seed`]
//! (copying the image's content into a new volume), [`mounts`] (turning a
//! container's mounts into OCI mounts at start).

pub mod mounts;
pub mod seed;
pub mod spec;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use spec::{MountKind, MountSpec};

use crate::fsutil::{atomic_write_json, FileLock};
use crate::paths::Roots;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{containers}]")]
    InUse { name: String, containers: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: corrupt volume record: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One volume, as `volume inspect` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container (`-v /path`, image VOLUME): `rm -v` removes it.
    #[serde(default)]
    pub anonymous: bool,
}

/// The volumes of one `--root`.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
    containers: PathBuf,
}

impl VolumeStore {
    pub fn open(roots: &Roots) -> Result<VolumeStore, VolumeError> {
        let dir = roots.volumes();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(VolumeStore {
            dir,
            containers: roots.containers(),
        })
    }

    /// The store-wide lock (create, remove, prune, and container creation).
    pub fn lock(&self) -> Result<FileLock, VolumeError> {
        let path = self.dir.join("lock");
        FileLock::exclusive(&path).map_err(io_err(&path))
    }

    /// The directory the container sees (docker's `Mountpoint`).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("volume.json")
    }

    /// The volume `name`, if it exists.
    pub fn get(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        spec::validate_volume_name(name).map_err(|_| VolumeError::NotFound(name.to_string()))?;
        let path = self.record_path(name);
        let text = fs::read_to_string(&path).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                VolumeError::NotFound(name.to_string())
            } else {
                io_err(&path)(err)
            }
        })?;
        serde_json::from_str(&text).map_err(|source| VolumeError::Corrupt { path, source })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<VolumeRecord>, VolumeError> {
        let mut all = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.path().join("volume.json").is_file() {
                continue;
            }
            match self.get(&name) {
                Ok(record) => all.push(record),
                Err(VolumeError::NotFound(_)) => continue,
                Err(err) => return Err(err),
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Create volume `name` (a random 64-hex name when None), or return the
    /// existing one: like docker, creating a volume that exists is not an
    /// error. The caller holds [`VolumeStore::lock`].
    pub fn create_locked(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<VolumeRecord, VolumeError> {
        let name = match name {
            Some(n) => {
                spec::validate_volume_name(n).map_err(VolumeError::Invalid)?;
                n.to_string()
            }
            None => hex::encode(rand::random::<[u8; 32]>()),
        };
        if let Ok(existing) = self.get(&name) {
            return Ok(existing);
        }
        let record = VolumeRecord {
            name: name.clone(),
            driver: "local".into(),
            created: Utc::now(),
            labels,
            anonymous,
        };
        // Built under a temporary name and renamed into place, so a crash
        // never leaves a volume without its record.
        let staging = self.dir.join(format!(".new-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let result = (|| {
            fs::create_dir_all(staging.join("_data")).map_err(io_err(&staging))?;
            let path = staging.join("volume.json");
            atomic_write_json(&path, &record).map_err(io_err(&path))?;
            let target = self.dir.join(&name);
            fs::rename(&staging, &target).map_err(io_err(&target))
        })();
        if let Err(err) = result {
            let _ = fs::remove_dir_all(&staging);
            return Err(err);
        }
        tracing::debug!(volume = %name, anonymous, "volume created");
        Ok(record)
    }

    /// [`VolumeStore::create_locked`] under the lock.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<VolumeRecord, VolumeError> {
        let _lock = self.lock()?;
        self.create_locked(name, labels, false)
    }

    /// The containers whose records mount volume `name`.
    pub fn users(&self, name: &str) -> Result<Vec<String>, VolumeError> {
        Ok(volume_users(&self.containers)?
            .into_iter()
            .filter(|(_, volume)| volume == name)
            .map(|(id, _)| id)
            .collect())
    }

    /// Remove a volume no container uses (`force` still refuses one in use,
    /// as docker does; it only makes a missing volume not an error).
    pub fn remove(&self, name: &str, force: bool) -> Result<(), VolumeError> {
        let _lock = self.lock()?;
        self.remove_locked(name, force)
    }

    fn remove_locked(&self, name: &str, force: bool) -> Result<(), VolumeError> {
        match self.get(name) {
            Ok(_) => {}
            Err(VolumeError::NotFound(_)) if force => return Ok(()),
            Err(err) => return Err(err),
        }
        let users = self.users(name)?;
        if !users.is_empty() {
            let short: Vec<&str> = users.iter().map(|id| &id[..12.min(id.len())]).collect();
            return Err(VolumeError::InUse {
                name: name.to_string(),
                containers: short.join(", "),
            });
        }
        self.delete_dir(name)
    }

    /// Rename the volume's directory out of the way first (atomic), then
    /// delete it: a crash half way leaves a hidden directory, never a
    /// volume with half its files.
    fn delete_dir(&self, name: &str) -> Result<(), VolumeError> {
        let dir = self.dir.join(name);
        let doomed = self.dir.join(format!(".rm-{name}-{}", std::process::id()));
        fs::rename(&dir, &doomed).map_err(io_err(&dir))?;
        fs::remove_dir_all(&doomed).map_err(io_err(&doomed))?;
        tracing::debug!(volume = name, "volume removed");
        Ok(())
    }

    /// Remove every unused anonymous volume, or with `all` every unused one;
    /// the names removed.
    pub fn prune(&self, all: bool) -> Result<Vec<String>, VolumeError> {
        let _lock = self.lock()?;
        let used: Vec<String> = volume_users(&self.containers)?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let mut removed = Vec::new();
        for volume in self.list()? {
            if (all || volume.anonymous) && !used.contains(&volume.name) {
                self.delete_dir(&volume.name)?;
                removed.push(volume.name);
            }
        }
        Ok(removed)
    }

    /// Remove the anonymous volumes among `mounts` that no other container
    /// uses (`rm -v`, `run --rm`). Named volumes always stay.
    pub fn remove_anonymous(&self, mounts: &[MountSpec]) -> Result<(), VolumeError> {
        let _lock = self.lock()?;
        for mount in mounts {
            if mount.kind == MountKind::Volume && mount.anonymous && !mount.source.is_empty() {
                match self.remove_locked(&mount.source, true) {
                    Ok(()) | Err(VolumeError::InUse { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(())
    }

    /// Give every volume mount of a new container its volume: a named one
    /// is created if missing, an anonymous one is created and named. The
    /// caller holds [`VolumeStore::lock`] until the container's record is
    /// written, so no `rm`/`prune` can slip in between. Returns the volumes
    /// made here, for [`VolumeStore::discard_locked`] if the container is
    /// not created after all.
    pub fn provide(&self, mounts: &mut [MountSpec]) -> Result<Vec<String>, VolumeError> {
        let mut created = Vec::new();
        let result = (|| {
            for mount in mounts.iter_mut().filter(|m| m.kind == MountKind::Volume) {
                if mount.source.is_empty() {
                    mount.source = self.create_locked(None, BTreeMap::new(), true)?.name;
                    mount.anonymous = true;
                    created.push(mount.source.clone());
                } else if self.get(&mount.source).is_err() {
                    self.create_locked(Some(&mount.source), BTreeMap::new(), false)?;
                    created.push(mount.source.clone());
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(created),
            Err(err) => {
                self.discard_locked(&created);
                Err(err)
            }
        }
    }

    /// Delete volumes just made by [`VolumeStore::provide`] (under the lock).
    pub fn discard_locked(&self, names: &[String]) {
        for name in names {
            if let Err(err) = self.delete_dir(name) {
                tracing::warn!(%err, volume = name, "discarding a volume made for a container that was not created");
            }
        }
    }

    /// Bytes used by a volume's files (for `system df`-like output; 0 if unreadable).
    pub fn size(&self, name: &str) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = fs::read_dir(dir) else {
                return 0;
            };
            entries
                .filter_map(Result::ok)
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                    _ => 0,
                })
                .sum()
        }
        walk(&self.mountpoint(name))
    }
}

/// The mounts a container inherits with `--volumes-from` (its binds and
/// volumes, not its tmpfs), read-only or read-write as asked, else as the
/// other container has them.
pub fn inherit(from: &[MountSpec], read_only: Option<bool>) -> Vec<MountSpec> {
    from.iter()
        .filter(|m| m.kind != MountKind::Tmpfs)
        .map(|m| MountSpec {
            read_only: read_only.unwrap_or(m.read_only),
            create_source: false,
            ..m.clone()
        })
        .collect()
}

/// (container id, volume name) for every volume mount in every record.
/// Read straight from the JSON, so a record from any version of berth counts.
fn volume_users(containers: &Path) -> Result<Vec<(String, String)>, VolumeError> {
    #[derive(Deserialize)]
    struct Partial {
        #[serde(default)]
        host: PartialHost,
    }
    #[derive(Deserialize, Default)]
    struct PartialHost {
        #[serde(default)]
        mounts: Vec<MountSpec>,
    }
    let mut users = Vec::new();
    let entries = match fs::read_dir(containers) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(users),
        Err(err) => return Err(io_err(containers)(err)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(containers))?;
        let path = entry.path().join(crate::container::RECORD_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(io_err(&path)(err)),
        };
        let parsed: Partial =
            serde_json::from_str(&text).map_err(|source| VolumeError::Corrupt { path, source })?;
        let id = entry.file_name().to_string_lossy().into_owned();
        for mount in parsed.host.mounts {
            if mount.kind == MountKind::Volume {
                users.push((id.clone(), mount.source));
            }
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Roots, VolumeStore) {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::new(dir.path().join("root"), dir.path().join("state"));
        let store = VolumeStore::open(&roots).unwrap();
        (dir, roots, store)
    }

    fn fake_container(roots: &Roots, id: &str, mounts: &[MountSpec]) {
        let dir = roots.containers().join(id);
        fs::create_dir_all(&dir).unwrap();
        let record = serde_json::json!({"id": id, "host": {"mounts": mounts}});
        fs::write(dir.join(crate::container::RECORD_FILE), record.to_string()).unwrap();
    }

    #[test]
    fn create_is_idempotent_and_lists_by_name() {
        let (_d, _r, store) = setup();
        let a = store.create(Some("data"), BTreeMap::new()).unwrap();
        fs::write(store.mountpoint("data").join("f"), "kept").unwrap();
        let again = store.create(Some("data"), BTreeMap::new()).unwrap();
        assert_eq!(a.created, again.created);
        assert_eq!(
            fs::read_to_string(store.mountpoint("data").join("f")).unwrap(),
            "kept"
        );
        store.create(Some("b-vol"), BTreeMap::new()).unwrap();
        let names: Vec<String> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names, vec!["b-vol", "data"]);
        assert!(matches!(store.get("nope"), Err(VolumeError::NotFound(_))));
        assert!(matches!(
            store.create(Some("-bad"), BTreeMap::new()),
            Err(VolumeError::Invalid(_))
        ));
    }

    #[test]
    fn a_volume_in_use_is_refused_until_its_container_goes() {
        let (_d, roots, store) = setup();
        store.create(Some("data"), BTreeMap::new()).unwrap();
        let mount = spec::parse_volume_flag("data:/x").unwrap();
        let id = "ab".repeat(32);
        fake_container(&roots, &id, &[mount]);
        let err = store.remove("data", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "remove data: volume is in use - [abababababab]"
        );
        assert!(
            store.remove("data", true).is_err(),
            "force does not override in-use"
        );
        fs::remove_dir_all(roots.containers().join(&id)).unwrap();
        store.remove("data", false).unwrap();
        assert!(matches!(store.get("data"), Err(VolumeError::NotFound(_))));
        assert!(store.remove("data", false).is_err());
        store.remove("data", true).unwrap();
    }

    #[test]
    fn anonymous_volumes_are_named_pruned_and_removed_with_their_container() {
        let (_d, roots, store) = setup();
        let mut mounts = vec![
            spec::parse_volume_flag("/cache").unwrap(),
            spec::parse_volume_flag("named:/data").unwrap(),
        ];
        store.provide(&mut mounts).unwrap();
        assert_eq!(
            mounts[0].source.len(),
            64,
            "an anonymous volume gets a random name"
        );
        assert!(store.get(&mounts[0].source).unwrap().anonymous);
        assert!(!store.get("named").unwrap().anonymous);
        let id = "cd".repeat(32);
        fake_container(&roots, &id, &mounts);
        assert!(store.prune(false).unwrap().is_empty(), "both in use");
        fs::remove_dir_all(roots.containers().join(&id)).unwrap();
        store.remove_anonymous(&mounts).unwrap();
        assert!(
            store.get(&mounts[0].source).is_err(),
            "the anonymous one went"
        );
        assert!(store.get("named").is_ok(), "the named one stays");
        let orphan = store.create_locked(None, BTreeMap::new(), true).unwrap();
        assert_eq!(store.prune(false).unwrap(), vec![orphan.name]);
        assert_eq!(store.prune(true).unwrap(), vec!["named".to_string()]);
        assert!(store.list().unwrap().is_empty());
    }
}

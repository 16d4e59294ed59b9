//! Containers: records on disk, names, and lookup.
//!
//! Layout under `--root`:
//! ```text
//! containers/<id>/container.json   the record (see record.rs), replaced atomically
//! containers/<id>/lock             flock(2) held while the record is changed
//! containers/<id>/config.json      the OCI runtime spec (the bundle's config)
//! containers/<id>/upper, work      the overlayfs upper and work directories
//! containers/<id>/rootfs           where the overlay is mounted (in the monitor's
//!                                  private mount namespace)
//! containers/<id>/<id>-json.log    stdout/stderr in docker's json-file format
//! names/<name> -> <id>             one symlink per name; symlink(2) fails with
//!                                  EEXIST when the name is taken, which makes
//!                                  name reservation atomic without a global lock
//! ```

pub mod attach;
pub mod bundle;
pub mod changes;
pub mod health;
pub mod lifecycle;
pub mod logs;
pub mod memory;
pub mod monitor;
pub mod names;
pub mod overlay;
pub mod procinfo;
pub mod record;
pub mod runtime_bridge;
pub mod spec;
pub mod stats;

use std::fs;
use std::io;
use std::os::unix::fs as unix_fs;
use std::path::{Path, PathBuf};

use crate::fsutil::{atomic_write_json, FileLock};
use crate::paths::Roots;

pub use record::{ContainerRecord, HostConfig, RestartPolicy, RunConfig, State, Status};

/// The name of the record file inside a container's directory.
pub const RECORD_FILE: &str = "container.json";
const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple containers match the id prefix {prefix:?} ({count} of them): give more characters of the id")]
    Ambiguous { prefix: String, count: usize },
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("{0}")]
    InvalidName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: corrupt container record: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContainerError + '_ {
    move |source| ContainerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The container records of one berth root.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    containers: PathBuf,
    names: PathBuf,
}

impl ContainerStore {
    pub fn open(roots: &Roots) -> Result<ContainerStore, ContainerError> {
        let store = ContainerStore {
            containers: roots.containers(),
            names: roots.root.join("names"),
        };
        for dir in [&store.containers, &store.names] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        Ok(store)
    }

    /// The directory holding everything of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.containers.join(id)
    }

    /// Store a new record and reserve its name. When `record.name` is empty a
    /// name is generated. On a name conflict nothing is left behind.
    pub fn create(&self, record: &mut ContainerRecord) -> Result<(), ContainerError> {
        let dir = self.dir(&record.id);
        fs::create_dir(&dir).map_err(io_err(&dir))?;
        let result = self.write_record_and_reserve_name(record);
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    fn write_record_and_reserve_name(
        &self,
        record: &mut ContainerRecord,
    ) -> Result<(), ContainerError> {
        let chosen = !record.name.is_empty();
        if chosen {
            names::validate_name(&record.name).map_err(ContainerError::InvalidName)?;
        }
        for attempt in 0..64 {
            if !chosen {
                record.name = names::generate_name(attempt);
            }
            self.save(record)?;
            match self.reserve_name(&record.name, &record.id) {
                Ok(()) => return Ok(()),
                Err(ContainerError::NameInUse { .. }) if !chosen => continue,
                Err(err) => return Err(err),
            }
        }
        Err(ContainerError::InvalidName(
            "could not find a free container name after 64 tries: give one with --name".into(),
        ))
    }

    /// Atomically claim `name` for `id`; a link whose container no longer
    /// exists (left by a crash or a manual deletion) is taken over.
    fn reserve_name(&self, name: &str, id: &str) -> Result<(), ContainerError> {
        let link = self.names.join(name);
        for _ in 0..2 {
            match unix_fs::symlink(id, &link) {
                Ok(()) => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_link(&link).map_err(io_err(&link))?;
                    let owner = owner.to_string_lossy().into_owned();
                    if self.dir(&owner).join(RECORD_FILE).exists() {
                        return Err(ContainerError::NameInUse {
                            name: name.to_string(),
                            id: owner,
                        });
                    }
                    tracing::debug!(name, stale_owner = %owner, "taking over a stale name link");
                    let _ = fs::remove_file(&link);
                }
                Err(err) => return Err(io_err(&link)(err)),
            }
        }
        Err(ContainerError::NameInUse {
            name: name.to_string(),
            id: String::from("(being created)"),
        })
    }

    /// Write a record atomically (the caller holds the lock or owns the record).
    pub fn save(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        let path = self.dir(&record.id).join(RECORD_FILE);
        atomic_write_json(&path, record).map_err(io_err(&path))
    }

    /// Read the record of container `id`.
    pub fn load(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let path = self.dir(id).join(RECORD_FILE);
        let text = fs::read_to_string(&path).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                ContainerError::NotFound(id.to_string())
            } else {
                io_err(&path)(err)
            }
        })?;
        serde_json::from_str(&text).map_err(|source| ContainerError::Corrupt { path, source })
    }

    /// Change a record under its lock: read, apply `change`, write back.
    pub fn update<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut ContainerRecord) -> T,
    ) -> Result<(ContainerRecord, T), ContainerError> {
        let _lock = self.lock(id)?;
        let mut record = self.load(id)?;
        let before = record.clone();
        let out = change(&mut record);
        // Nothing changed, nothing to write (and no fsync to wait for).
        if record != before {
            self.save(&record)?;
        }
        Ok((record, out))
    }

    /// Take the container's lock (blocking) for a multi-step change.
    pub fn lock(&self, id: &str) -> Result<FileLock, ContainerError> {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(ContainerError::NotFound(id.to_string()));
        }
        let path = dir.join(LOCK_FILE);
        FileLock::exclusive(&path).map_err(io_err(&path))
    }

    /// Every container's record, newest first (as `ps` lists them). Directories
    /// without a readable record (being created or removed) are skipped.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, ContainerError> {
        let mut records = Vec::new();
        for entry in fs::read_dir(&self.containers).map_err(io_err(&self.containers))? {
            let entry = entry.map_err(io_err(&self.containers))?;
            let id = entry.file_name().to_string_lossy().into_owned();
            match self.load(&id) {
                Ok(record) => records.push(record),
                Err(ContainerError::NotFound(_)) => continue,
                Err(err) => return Err(err),
            }
        }
        records.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(records)
    }

    /// Find a container by name (with or without docker's leading `/`), full
    /// id, or unique id prefix.
    pub fn find(&self, reference: &str) -> Result<ContainerRecord, ContainerError> {
        let name = reference.strip_prefix('/').unwrap_or(reference);
        if !name.is_empty() && !name.contains('/') && name != "." && name != ".." {
            if let Ok(id) = fs::read_link(self.names.join(name)) {
                if let Ok(record) = self.load(&id.to_string_lossy()) {
                    return Ok(record);
                }
            }
        }
        let is_hex = !reference.is_empty() && reference.chars().all(|c| c.is_ascii_hexdigit());
        if !is_hex {
            return Err(ContainerError::NotFound(reference.to_string()));
        }
        if reference.len() == 64 {
            return self.load(reference);
        }
        let mut matches = Vec::new();
        for entry in fs::read_dir(&self.containers).map_err(io_err(&self.containers))? {
            let id = entry
                .map_err(io_err(&self.containers))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if id.starts_with(reference) {
                matches.push(id);
            }
        }
        match matches.len() {
            0 => Err(ContainerError::NotFound(reference.to_string())),
            1 => self.load(&matches[0]),
            count => Err(ContainerError::Ambiguous {
                prefix: reference.to_string(),
                count,
            }),
        }
    }

    /// Give container `id` the name `new_name` (`berth rename`).
    pub fn rename(&self, id: &str, new_name: &str) -> Result<(), ContainerError> {
        names::validate_name(new_name).map_err(ContainerError::InvalidName)?;
        let _lock = self.lock(id)?;
        let mut record = self.load(id)?;
        self.reserve_name(new_name, id)?;
        let old_name = std::mem::replace(&mut record.name, new_name.to_string());
        if let Err(err) = self.save(&record) {
            let _ = fs::remove_file(self.names.join(new_name));
            return Err(err);
        }
        self.release_name(&old_name, id);
        Ok(())
    }

    /// Forget container `id`: its name first (so the name is free at once),
    /// then its directory with everything in it.
    pub fn remove(&self, id: &str) -> Result<(), ContainerError> {
        if let Ok(record) = self.load(id) {
            self.release_name(&record.name, id);
        }
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_err(&dir)(err)),
        }
    }

    /// Remove the name link only if it still points at `id`.
    fn release_name(&self, name: &str, id: &str) {
        let link = self.names.join(name);
        if fs::read_link(&link).is_ok_and(|target| target == Path::new(id)) {
            let _ = fs::remove_file(&link);
        }
    }
}

/// The ids of the containers whose record names `image_id` (`sha256:<hex>`).
/// `rmi` refuses to remove an image while this is not empty.
pub fn users_of_image(roots: &Roots, image_id: &str) -> io::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct ImageOnly {
        image_id: String,
    }
    let mut users = Vec::new();
    let dir = roots.containers();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(users),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let record = entry.path().join(RECORD_FILE);
        let text = match fs::read_to_string(&record) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let parsed: ImageOnly = serde_json::from_str(&text)
            .map_err(|e| io::Error::other(format!("{}: {e}", record.display())))?;
        if parsed.image_id == image_id {
            users.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    users.sort();
    Ok(users)
}

/// The unpacked layer directories of image `image_id`, lowest first, to be
/// stacked as the overlay's lower layers. (`rmi` never deletes an image a
/// container uses, so they exist for as long as the container does.)
pub fn image_layers(roots: &Roots, image_id: &str) -> Result<Vec<PathBuf>, String> {
    let store = crate::image::ImageStore::open(roots).map_err(|e| e.to_string())?;
    let digest =
        crate::image::Digest::parse(image_id).map_err(|e| format!("image id {image_id}: {e}"))?;
    let image = store.image(&digest).map_err(|e| e.to_string())?;
    Ok(image.layer_dirs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ContainerRecord {
        ContainerRecord {
            id: names::new_id(),
            name: name.to_string(),
            created: chrono::Utc::now(),
            image: "busybox".into(),
            image_id: "sha256:abc".into(),
            config: RunConfig::default(),
            host: HostConfig::default(),
            state: State::default(),
        }
    }

    fn store() -> (tempfile::TempDir, ContainerStore) {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::new(dir.path().join("root"), dir.path().join("state"));
        let store = ContainerStore::open(&roots).unwrap();
        (dir, store)
    }

    #[test]
    fn a_taken_name_is_refused_and_leaves_nothing() {
        let (_dir, store) = store();
        let mut first = record("web");
        store.create(&mut first).unwrap();
        let mut second = record("web");
        let err = store.create(&mut second).unwrap_err();
        assert!(matches!(err, ContainerError::NameInUse { .. }), "{err}");
        assert!(
            !store.dir(&second.id).exists(),
            "the loser's directory is removed"
        );
        assert_eq!(store.find("web").unwrap().id, first.id);
    }

    #[test]
    fn containers_are_found_by_name_id_and_unique_prefix() {
        let (_dir, store) = store();
        let mut a = record("");
        store.create(&mut a).unwrap();
        assert!(!a.name.is_empty(), "a name was generated");
        assert_eq!(store.find(&a.name).unwrap().id, a.id);
        assert_eq!(store.find(&format!("/{}", a.name)).unwrap().id, a.id);
        assert_eq!(store.find(&a.id).unwrap().id, a.id);
        assert_eq!(store.find(&a.id[..12]).unwrap().id, a.id);
        assert!(matches!(
            store.find("nope"),
            Err(ContainerError::NotFound(_))
        ));
    }

    #[test]
    fn an_ambiguous_prefix_is_an_error() {
        let (_dir, store) = store();
        let mut a = record("a1");
        let mut b = record("b1");
        a.id = format!("ab{}", &a.id[2..]);
        b.id = format!("ab{}", &b.id[2..]);
        store.create(&mut a).unwrap();
        store.create(&mut b).unwrap();
        assert!(matches!(
            store.find("ab"),
            Err(ContainerError::Ambiguous { count: 2, .. })
        ));
    }

    #[test]
    fn rename_moves_the_name_and_remove_frees_it() {
        let (_dir, store) = store();
        let mut a = record("old");
        store.create(&mut a).unwrap();
        store.rename(&a.id, "new").unwrap();
        assert!(store.find("old").is_err());
        assert_eq!(store.find("new").unwrap().name, "new");
        store.remove(&a.id).unwrap();
        let mut b = record("new");
        store.create(&mut b).unwrap();
    }

    #[test]
    fn users_of_image_lists_containers_of_that_image() {
        let (dir, store) = store();
        let mut a = record("a1");
        store.create(&mut a).unwrap();
        let roots = Roots::new(dir.path().join("root"), dir.path().join("state"));
        assert_eq!(
            users_of_image(&roots, "sha256:abc").unwrap(),
            vec![a.id.clone()]
        );
        assert!(users_of_image(&roots, "sha256:other").unwrap().is_empty());
    }
}

//! Network records: the default `bridge` network and the user-defined ones.
//!
//! Layout under `--root`:
//! ```text
//! networks/lock                   flock(2) held to create or remove a network
//! networks/<id>/network.json      the record, replaced atomically
//! networks/<id>/endpoints.json    who holds which address (see ipam.rs)
//! networks/<id>/lock              the address book's lock
//! ```
//!
//! `host` and `none` are not records: they name the host's own network
//! namespace and an empty one, and appear in `network ls` as docker shows them.
//! The `bridge` record is made on first use from the settings (bridge name
//! and subnet; `BERTH_BRIDGE`, `BERTH_SUBNET`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ipam::Ipam;
use super::subnet::Subnet;
use super::{NetworkError, NetworkOptions};
use crate::fsutil::{atomic_write_json, FileLock};
use crate::paths::Roots;

/// The name of the default network, as docker calls it.
pub const DEFAULT_NETWORK: &str = "bridge";

/// One bridge network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// 64 hex characters.
    pub id: String,
    pub name: String,
    /// Always `bridge` for now.
    pub driver: String,
    /// The Linux bridge device (`berth0`, `br-<id12>`).
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Containers on it find each other by name (false only for `bridge`,
    /// where docker offers no name resolution either).
    pub name_resolution: bool,
}

impl NetworkRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// The network records of one `--root`.
#[derive(Debug, Clone)]
pub struct NetworkStore {
    dir: PathBuf,
    options: NetworkOptions,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NetworkError + '_ {
    move |source| NetworkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl NetworkStore {
    pub fn open(roots: &Roots, options: &NetworkOptions) -> Result<NetworkStore, NetworkError> {
        let dir = roots.root.join("networks");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(NetworkStore {
            dir,
            options: options.clone(),
        })
    }

    pub fn options(&self) -> &NetworkOptions {
        &self.options
    }

    /// The store-wide lock for creating and removing networks.
    pub fn lock(&self) -> Result<FileLock, NetworkError> {
        let path = self.dir.join("lock");
        FileLock::exclusive(&path).map_err(io_err(&path))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(id).join("network.json")
    }

    /// The address book of `network`.
    pub fn ipam(&self, network: &NetworkRecord) -> Ipam {
        Ipam::new(&self.dir.join(&network.id), network.subnet, network.gateway)
    }

    fn load(&self, id: &str) -> Result<NetworkRecord, NetworkError> {
        let path = self.record_path(id);
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        serde_json::from_str(&text).map_err(|source| NetworkError::Corrupt { path, source })
    }

    /// Every network record, `bridge` first, then by name.
    pub fn list(&self) -> Result<Vec<NetworkRecord>, NetworkError> {
        let mut records = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if !entry.path().join("network.json").is_file() {
                continue;
            }
            records.push(self.load(&entry.file_name().to_string_lossy())?);
        }
        records.sort_by(|a, b| {
            (a.name != DEFAULT_NETWORK, &a.name).cmp(&(b.name != DEFAULT_NETWORK, &b.name))
        });
        Ok(records)
    }

    /// The default network, made on first use from the settings. If it
    /// exists with another bridge or subnet than explicitly asked for, that
    /// is an error rather than a silent surprise.
    pub fn default_network(&self) -> Result<NetworkRecord, NetworkError> {
        if let Some(found) = self.try_find(DEFAULT_NETWORK)? {
            return self.check_default_matches(found);
        }
        let _lock = self.lock()?;
        if let Some(found) = self.try_find(DEFAULT_NETWORK)? {
            return self.check_default_matches(found);
        }
        let subnet = self.options.subnet;
        let gateway = subnet.first_host().ok_or_else(|| {
            NetworkError::Invalid(format!("subnet {subnet} is too small for a bridge network"))
        })?;
        // A bridge that exists before this root ever used it belongs to
        // another berth root (or another program): sharing it would hand out
        // the same addresses twice.
        let bridge = &self.options.bridge;
        if super::netlink::Netlink::open()?
            .link_index(bridge)?
            .is_some()
        {
            return Err(NetworkError::Invalid(format!(
                "the bridge {bridge} already exists, made by another berth root or another program: \
                 give this root a bridge and subnet of its own with BERTH_BRIDGE and BERTH_SUBNET"
            )));
        }
        let record = NetworkRecord {
            id: new_id(),
            name: DEFAULT_NETWORK.to_string(),
            driver: "bridge".into(),
            bridge: self.options.bridge.clone(),
            subnet,
            gateway,
            created: Utc::now(),
            labels: BTreeMap::new(),
            name_resolution: false,
        };
        self.save(&record)?;
        tracing::debug!(bridge = %record.bridge, %subnet, "default network recorded");
        Ok(record)
    }

    fn check_default_matches(&self, found: NetworkRecord) -> Result<NetworkRecord, NetworkError> {
        let o = &self.options;
        if (o.bridge_explicit && found.bridge != o.bridge)
            || (o.subnet_explicit && found.subnet != o.subnet)
        {
            return Err(NetworkError::Invalid(format!(
                "the default network of this root uses bridge {} with subnet {}, not {} with {}: \
                 unset BERTH_BRIDGE/BERTH_SUBNET, or use another --root",
                found.bridge, found.subnet, o.bridge, o.subnet
            )));
        }
        Ok(found)
    }

    fn save(&self, record: &NetworkRecord) -> Result<(), NetworkError> {
        let dir = self.dir.join(&record.id);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = self.record_path(&record.id);
        atomic_write_json(&path, record).map_err(io_err(&path))
    }

    /// A network by name, full id or unique id prefix; None if none matches.
    pub fn try_find(&self, reference: &str) -> Result<Option<NetworkRecord>, NetworkError> {
        let all = self.list()?;
        if let Some(found) = all
            .iter()
            .find(|n| n.name == reference || n.id == reference)
        {
            return Ok(Some(found.clone()));
        }
        let is_hex = !reference.is_empty() && reference.chars().all(|c| c.is_ascii_hexdigit());
        if !is_hex {
            return Ok(None);
        }
        let matches: Vec<_> = all.iter().filter(|n| n.id.starts_with(reference)).collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(Some(matches[0].clone())),
            _ => Err(NetworkError::Invalid(format!(
                "network {reference} is ambiguous ({} networks match): give more of its id",
                matches.len()
            ))),
        }
    }

    /// A network by reference; `bridge` is made on demand.
    pub fn find(&self, reference: &str) -> Result<NetworkRecord, NetworkError> {
        if reference == DEFAULT_NETWORK || reference == "default" {
            return self.default_network();
        }
        self.try_find(reference)?
            .ok_or_else(|| NetworkError::NotFound(reference.to_string()))
    }

    /// Record a user-defined network (the caller creates its bridge). With
    /// no subnet, the first /24 of the pool that neither another berth
    /// network nor a host route uses is taken.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<Subnet>,
        labels: BTreeMap<String, String>,
        routes_in_use: &[Subnet],
    ) -> Result<NetworkRecord, NetworkError> {
        validate_name(name)?;
        let _lock = self.lock()?;
        let existing = self.list()?;
        if existing.iter().any(|n| n.name == name) {
            return Err(NetworkError::Exists(name.to_string()));
        }
        let taken: Vec<Subnet> = existing
            .iter()
            .map(|n| n.subnet)
            .chain(std::iter::once(self.options.subnet))
            .collect();
        let subnet = match subnet {
            Some(s) => {
                if let Some(clash) = taken.iter().chain(routes_in_use).find(|t| t.overlaps(&s)) {
                    return Err(NetworkError::Invalid(format!(
                        "subnet {s} overlaps {clash}, which is already in use: choose another --subnet"
                    )));
                }
                s
            }
            None => pick_free_subnet(self.options.pool, &taken, routes_in_use)?,
        };
        let gateway = subnet.first_host().ok_or_else(|| {
            NetworkError::Invalid(format!(
                "subnet {subnet} is too small: a network needs at least a /30"
            ))
        })?;
        let id = new_id();
        let record = NetworkRecord {
            bridge: format!("br-{}", &id[..12]),
            id,
            name: name.to_string(),
            driver: "bridge".into(),
            subnet,
            gateway,
            created: Utc::now(),
            labels,
            name_resolution: true,
        };
        self.save(&record)?;
        Ok(record)
    }

    /// Forget a network record (the caller removed its bridge and checked
    /// that no container uses it).
    pub fn remove_record(&self, record: &NetworkRecord) -> Result<(), NetworkError> {
        let dir = self.dir.join(&record.id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_err(&dir)(err)),
        }
    }
}

/// docker's network names: letters, digits, `_`, `.`, `-`, starting with a
/// letter or digit; the pseudo-networks' names are reserved.
pub fn validate_name(name: &str) -> Result<(), NetworkError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || !valid_chars || !starts_well || name.len() > 64 {
        return Err(NetworkError::Invalid(format!(
            "invalid network name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )));
    }
    if matches!(name, "bridge" | "host" | "none" | "default") || name.starts_with("container:") {
        return Err(NetworkError::Invalid(format!(
            "{name} is a pre-defined network and cannot be created"
        )));
    }
    Ok(())
}

/// The first /24 of `pool` that overlaps nothing in use.
fn pick_free_subnet(
    pool: Subnet,
    taken: &[Subnet],
    routes: &[Subnet],
) -> Result<Subnet, NetworkError> {
    let step = 256u64;
    let mut offset = 0u64;
    while offset + step <= pool.size() {
        let start = pool.nth(offset).expect("inside the pool");
        let candidate = Subnet::new(start, 24).expect("aligned /24");
        if !taken.iter().chain(routes).any(|t| t.overlaps(&candidate)) {
            return Ok(candidate);
        }
        offset += step;
    }
    Err(NetworkError::Invalid(format!(
        "every /24 of the address pool {pool} is in use: give the network a --subnet"
    )))
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> NetworkStore {
        let roots = Roots::new(dir.join("root"), dir.join("state"));
        let options = NetworkOptions {
            bridge: "bt-test0".into(),
            subnet: "10.201.0.0/24".parse().unwrap(),
            pool: "10.202.0.0/22".parse().unwrap(),
            ..NetworkOptions::default()
        };
        NetworkStore::open(&roots, &options).unwrap()
    }

    #[test]
    fn the_default_network_is_made_once_from_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let first = store.find("bridge").unwrap();
        assert_eq!(
            (
                first.bridge.as_str(),
                first.subnet.to_string(),
                first.gateway.to_string()
            ),
            ("bt-test0", "10.201.0.0/24".into(), "10.201.0.1".into())
        );
        assert!(!first.name_resolution);
        assert_eq!(store.find("bridge").unwrap().id, first.id);
    }

    #[test]
    fn user_networks_get_free_subnets_and_unique_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let routes = vec!["10.202.0.0/24".parse().unwrap()];
        let a = store
            .create("front", None, BTreeMap::new(), &routes)
            .unwrap();
        assert_eq!(
            a.subnet.to_string(),
            "10.202.1.0/24",
            "skips the routed /24"
        );
        assert_eq!(a.bridge, format!("br-{}", &a.id[..12]));
        assert!(a.name_resolution);
        let b = store
            .create("back", None, BTreeMap::new(), &routes)
            .unwrap();
        assert_eq!(b.subnet.to_string(), "10.202.2.0/24");
        assert!(matches!(
            store.create("front", None, BTreeMap::new(), &routes),
            Err(NetworkError::Exists(_))
        ));
        let err = store
            .create(
                "clash",
                Some("10.202.1.128/25".parse().unwrap()),
                BTreeMap::new(),
                &routes,
            )
            .unwrap_err();
        assert!(err.to_string().contains("overlaps 10.202.1.0/24"), "{err}");
        assert_eq!(store.find(&a.id[..8]).unwrap().name, "front");
        assert!(matches!(store.find("nope"), Err(NetworkError::NotFound(_))));
        store.remove_record(&a).unwrap();
        assert!(store.try_find("front").unwrap().is_none());
    }

    #[test]
    fn names_follow_dockers_rules() {
        assert!(validate_name("my-net_1.0").is_ok());
        for bad in ["", "-x", "a b", "host", "bridge", "none", "x/y"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}

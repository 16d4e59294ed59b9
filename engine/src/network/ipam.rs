//! IP address management: which container holds which address of a network.
//!
//! Mechanism: one JSON file per network (`<root>/networks/<id>/endpoints.json`),
//! read and replaced atomically (temp file, fsync, rename) while an
//! `flock(2)` on `<root>/networks/<id>/lock` is held, so concurrent
//! `berth run`s never hand out the same address. The file also says *who*
//! holds each address (container id, name, aliases), which is all a
//! container's /etc/hosts needs to list its peers on a user network.
//!
//! The first host address is the bridge's (the gateway); containers get the
//! lowest free one after it. The network and broadcast addresses are never
//! handed out.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::subnet::Subnet;
use crate::fsutil::{atomic_write_json, FileLock};

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub container_id: String,
    pub name: String,
    pub hostname: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Endpoints {
    /// Address -> holder, ordered by address.
    endpoints: BTreeMap<Ipv4Addr, Holder>,
}

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in {subnet} for container {container}: remove containers from the network or use a wider --subnet")]
    Exhausted { subnet: Subnet, container: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: corrupt address file: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The address book of one network.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    subnet: Subnet,
    gateway: Ipv4Addr,
}

impl Ipam {
    /// The allocator of the network whose directory is `dir`.
    pub fn new(dir: &Path, subnet: Subnet, gateway: Ipv4Addr) -> Ipam {
        Ipam {
            dir: dir.to_path_buf(),
            subnet,
            gateway,
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("endpoints.json")
    }

    fn lock(&self) -> Result<FileLock, IpamError> {
        let path = self.dir.join("lock");
        FileLock::exclusive(&path).map_err(|source| IpamError::Io { path, source })
    }

    fn read(&self) -> Result<Endpoints, IpamError> {
        let path = self.file();
        match fs::read(&path) {
            Ok(data) => {
                serde_json::from_slice(&data).map_err(|source| IpamError::Corrupt { path, source })
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Endpoints::default()),
            Err(source) => Err(IpamError::Io { path, source }),
        }
    }

    fn write(&self, endpoints: &Endpoints) -> Result<(), IpamError> {
        let path = self.file();
        atomic_write_json(&path, endpoints).map_err(|source| IpamError::Io { path, source })
    }

    /// Give `holder` the lowest free address (its old one if it still has one).
    pub fn allocate(&self, holder: Holder) -> Result<Ipv4Addr, IpamError> {
        let _lock = self.lock()?;
        let mut book = self.read()?;
        if let Some((ip, _)) = book
            .endpoints
            .iter()
            .find(|(_, h)| h.container_id == holder.container_id)
        {
            let ip = *ip;
            book.endpoints.insert(ip, holder);
            self.write(&book)?;
            return Ok(ip);
        }
        let last = self.subnet.size().saturating_sub(1);
        let free = (1..last)
            .filter_map(|n| self.subnet.nth(n))
            .find(|ip| *ip != self.gateway && !book.endpoints.contains_key(ip));
        let Some(ip) = free else {
            return Err(IpamError::Exhausted {
                subnet: self.subnet,
                container: holder.container_id,
            });
        };
        tracing::debug!(%ip, container = %holder.container_id, subnet = %self.subnet, "address allocated");
        book.endpoints.insert(ip, holder);
        self.write(&book)?;
        Ok(ip)
    }

    /// Give back every address `container_id` holds (none is fine).
    pub fn release(&self, container_id: &str) -> Result<(), IpamError> {
        let _lock = self.lock()?;
        let mut book = self.read()?;
        let before = book.endpoints.len();
        book.endpoints.retain(|_, h| h.container_id != container_id);
        if book.endpoints.len() != before {
            tracing::debug!(container = container_id, "address released");
            self.write(&book)?;
        }
        Ok(())
    }

    /// Every address in use and its holder.
    pub fn endpoints(&self) -> Result<Vec<(Ipv4Addr, Holder)>, IpamError> {
        let _lock = self.lock()?;
        Ok(self.read()?.endpoints.into_iter().collect())
    }

    /// Run `f` on the book while holding the lock (e.g. to rewrite every
    /// member's /etc/hosts consistently with the allocations).
    pub fn with_endpoints<T>(
        &self,
        f: impl FnOnce(&[(Ipv4Addr, Holder)]) -> T,
    ) -> Result<T, IpamError> {
        let _lock = self.lock()?;
        let list: Vec<_> = self.read()?.endpoints.into_iter().collect();
        Ok(f(&list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(id: &str) -> Holder {
        Holder {
            container_id: id.into(),
            name: format!("name-{id}"),
            hostname: id.into(),
            aliases: vec![],
        }
    }

    fn ipam(dir: &Path, subnet: &str) -> Ipam {
        let subnet: Subnet = subnet.parse().unwrap();
        Ipam::new(dir, subnet, subnet.first_host().unwrap())
    }

    #[test]
    fn addresses_skip_the_gateway_and_are_reused_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.5.0.0/24");
        assert_eq!(
            ipam.allocate(holder("a")).unwrap(),
            "10.5.0.2".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            ipam.allocate(holder("b")).unwrap(),
            "10.5.0.3".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            ipam.allocate(holder("a")).unwrap(),
            "10.5.0.2".parse::<Ipv4Addr>().unwrap(),
            "a container keeps its address"
        );
        ipam.release("a").unwrap();
        assert_eq!(ipam.endpoints().unwrap().len(), 1);
        assert_eq!(
            ipam.allocate(holder("c")).unwrap(),
            "10.5.0.2".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn a_full_subnet_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        // /30: network, gateway (.1), one host (.2), broadcast.
        let ipam = ipam(dir.path(), "10.6.0.0/30");
        ipam.allocate(holder("a")).unwrap();
        let err = ipam.allocate(holder("b")).unwrap_err();
        assert!(
            err.to_string()
                .contains("no free address left in 10.6.0.0/30"),
            "{err}"
        );
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    ipam(&path, "10.7.0.0/24")
                        .allocate(holder(&format!("c{i}")))
                        .unwrap()
                })
            })
            .collect();
        let mut ips: Vec<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 16, "every container got its own address");
        assert_eq!(ipam(&path, "10.7.0.0/24").endpoints().unwrap().len(), 16);
    }
}

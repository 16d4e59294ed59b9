//! What `berth network create|rm|prune` do: a network record and its
//! bridge, made and removed together.
//!
//! A user network's bridge is created at `network create` (as docker does),
//! so a bad subnet is reported at once; it is made again on first use after
//! a reboot (see [`super::bridge::ensure_bridge`]).

use std::collections::BTreeMap;

use super::bridge;
use super::netlink::Netlink;
use super::nft::Firewall;
use super::store::{NetworkRecord, NetworkStore, DEFAULT_NETWORK};
use super::subnet::Subnet;
use super::{NetworkError, NetworkOptions};
use crate::paths::Roots;

/// Record a user network and create its bridge; nothing is left if either fails.
pub fn create_network(
    roots: &Roots,
    options: &NetworkOptions,
    name: &str,
    subnet: Option<Subnet>,
    labels: BTreeMap<String, String>,
) -> Result<NetworkRecord, NetworkError> {
    let store = NetworkStore::open(roots, options)?;
    let mut nl = Netlink::open()?;
    let routes: Vec<Subnet> = nl
        .routes_v4()?
        .into_iter()
        .map(|r| r.destination)
        .filter(|s| s.prefix() > 0)
        .collect();
    let record = store.create(name, subnet, labels, &routes)?;
    let firewall = Firewall::for_root(roots);
    if let Err(err) = bridge::ensure_bridge(&mut nl, &record, &firewall, options, || store.lock()) {
        let _ = store.remove_record(&record);
        return Err(err);
    }
    tracing::debug!(network = name, bridge = %record.bridge, subnet = %record.subnet, "network created");
    Ok(record)
}

/// Remove a network no running container is attached to: its bridge, its
/// nftables elements, its record. The default network cannot be removed.
pub fn remove_network(
    roots: &Roots,
    options: &NetworkOptions,
    reference: &str,
) -> Result<NetworkRecord, NetworkError> {
    if matches!(reference, "bridge" | "host" | "none" | "default") {
        return Err(NetworkError::Invalid(format!(
            "{reference} is a pre-defined network and cannot be removed"
        )));
    }
    let store = NetworkStore::open(roots, options)?;
    let _lock = store.lock()?;
    let network = store
        .try_find(reference)?
        .ok_or_else(|| NetworkError::NotFound(reference.to_string()))?;
    if network.name == DEFAULT_NETWORK {
        return Err(NetworkError::Invalid(
            "bridge is a pre-defined network and cannot be removed".into(),
        ));
    }
    let members = store.ipam(&network).endpoints()?;
    if !members.is_empty() {
        let names: Vec<String> = members.into_iter().map(|(_, h)| h.name).collect();
        return Err(NetworkError::InUse {
            name: network.name.clone(),
            id: network.id.clone(),
            containers: names.join(", "),
        });
    }
    let mut nl = Netlink::open()?;
    bridge::remove_bridge(&mut nl, &network, &Firewall::for_root(roots))?;
    store.remove_record(&network)?;
    tracing::debug!(network = %network.name, "network removed");
    Ok(network)
}

/// Remove every user network no container is attached to; their names.
pub fn prune_networks(
    roots: &Roots,
    options: &NetworkOptions,
) -> Result<Vec<String>, NetworkError> {
    let store = NetworkStore::open(roots, options)?;
    let mut removed = Vec::new();
    for network in store.list()? {
        if network.name == DEFAULT_NETWORK {
            continue;
        }
        match remove_network(roots, options, &network.id) {
            Ok(n) => removed.push(n.name),
            Err(NetworkError::InUse { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

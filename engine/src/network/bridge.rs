//! A network's Linux bridge: the virtual switch every container of the
//! network is plugged into, with the gateway address on it.
//!
//! Mechanism: rtnetlink (`RTM_NEWLINK` kind `bridge`, `RTM_NEWADDR`,
//! `RTM_SETLINK` up; see [`super::netlink`]), two sysctls written under
//! /proc/sys/net, and the network's elements in the nftables sets (see
//! [`super::nft`]):
//! - `net/ipv4/conf/<bridge>/route_localnet = 1`, on the bridge only, so a
//!   connection to 127.0.0.1:PORT can be DNATed to a container (the kernel
//!   otherwise refuses to route a loopback source out of a real device);
//! - `net/ipv4/ip_forward = 1`, the host-wide switch that lets containers'
//!   packets be routed (and masqueraded) to the outside world, as docker and
//!   podman set it. `BERTH_IP_FORWARD=0` leaves it alone: containers then
//!   reach the host and each other, nothing beyond.
//!
//! A bridge is made on first use and then kept (like docker0); `berth
//! network rm` removes a user network's bridge. The setup is undone if any
//! step fails, so no half-configured bridge is left.

use std::fs;
use std::io;

use super::netlink::Netlink;
use super::nft::Firewall;
use super::store::NetworkRecord;
use super::{NetworkError, NetworkOptions};

/// Make sure `network`'s bridge exists and is configured; its link index.
/// The fast path (bridge present) is a single netlink lookup.
pub fn ensure_bridge(
    nl: &mut Netlink,
    network: &NetworkRecord,
    firewall: &Firewall,
    options: &NetworkOptions,
    lock: impl FnOnce() -> Result<crate::fsutil::FileLock, NetworkError>,
) -> Result<u32, NetworkError> {
    if let Some(index) = nl.link_index(&network.bridge)? {
        return Ok(index);
    }
    let _lock = lock()?;
    if let Some(index) = nl.link_index(&network.bridge)? {
        return Ok(index);
    }
    check_subnet_is_free(nl, network)?;
    tracing::debug!(bridge = %network.bridge, subnet = %network.subnet, "creating the bridge");
    nl.create_bridge(&network.bridge)?;
    match configure(nl, network, firewall, options) {
        Ok(index) => Ok(index),
        Err(err) => {
            let _ = nl.delete_link(&network.bridge);
            let _ = firewall.remove_network(&network.bridge, network.subnet);
            Err(err)
        }
    }
}

fn configure(
    nl: &mut Netlink,
    network: &NetworkRecord,
    firewall: &Firewall,
    options: &NetworkOptions,
) -> Result<u32, NetworkError> {
    let index = nl.link_index(&network.bridge)?.ok_or_else(|| {
        NetworkError::Invalid(format!(
            "bridge {} vanished right after its creation",
            network.bridge
        ))
    })?;
    nl.add_address(index, network.gateway, network.subnet.prefix())?;
    nl.set_up(index)?;
    if !options.userland_proxy {
        write_sysctl(
            &format!("net/ipv4/conf/{}/route_localnet", network.bridge),
            "1",
        )?;
    }
    if options.ip_forward {
        write_sysctl("net/ipv4/ip_forward", "1")?;
    }
    firewall.add_network(&network.bridge, network.subnet)?;
    Ok(index)
}

/// A subnet that a route of the host already covers (another bridge, a VPN,
/// the LAN) would make containers unreachable or hijack that traffic.
fn check_subnet_is_free(nl: &mut Netlink, network: &NetworkRecord) -> Result<(), NetworkError> {
    for route in nl.routes_v4()? {
        if route.destination.prefix() == 0 {
            continue; // the default route overlaps everything
        }
        if route.destination.overlaps(&network.subnet) {
            return Err(NetworkError::Invalid(format!(
                "subnet {} of network {} overlaps the host's route to {}: choose another subnet \
                 (BERTH_SUBNET for the default network, --subnet for others)",
                network.subnet, network.name, route.destination
            )));
        }
    }
    Ok(())
}

/// Remove the bridge and the network's nftables elements.
pub fn remove_bridge(
    nl: &mut Netlink,
    network: &NetworkRecord,
    firewall: &Firewall,
) -> Result<(), NetworkError> {
    nl.delete_link(&network.bridge)?;
    firewall.remove_network(&network.bridge, network.subnet)?;
    Ok(())
}

/// Write a value under /proc/sys (of the calling thread's network namespace).
pub fn write_sysctl(key: &str, value: &str) -> Result<(), NetworkError> {
    let path = format!("/proc/sys/{key}");
    if fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    tracing::debug!(%path, value, "sysctl");
    fs::write(&path, value).map_err(|source| NetworkError::Io {
        path: path.into(),
        source,
    })
}

/// Read a sysctl (tests, inspect).
pub fn read_sysctl(key: &str) -> io::Result<String> {
    Ok(fs::read_to_string(format!("/proc/sys/{key}"))?
        .trim()
        .to_string())
}

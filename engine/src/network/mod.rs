//! Container networking: the bridge network with NAT, user-defined networks
//! with name resolution, `-p` port publishing, and the /etc files.
//!
//! One module per mechanism:
//! - [`subnet`]: CIDR arithmetic;
//! - [`netlink`]: links, addresses, routes over rtnetlink;
//! - [`netns`]: network namespaces held by fd;
//! - [`bridge`]: a network's bridge, its gateway address, the sysctls;
//! - [`nft`]: the berth nftables table (masquerade, DNAT of published ports);
//! - [`ports`]: `-p` parsing and the host sockets that reserve ports;
//! - [`proxy`]: the user-space proxy for IPv6 and `BERTH_USERLAND_PROXY=1`;
//! - [`ipam`]: the file-locked address allocator;
//! - [`etcfiles`]: /etc/hosts, /etc/resolv.conf, /etc/hostname;
//! - [`store`]: network records; [`manage`]: `berth network create/rm/prune`;
//! - [`endpoint`]: all of the above put together for one container: what its
//!   monitor calls at start ([`endpoint::attach`]) and at stop, and what
//!   `berth` calls to clean up after a monitor that died;
//! - [`container`]: the glue between a container record and [`endpoint`].
//!
//! Settings (environment, read by [`NetworkOptions::from_env`]):
//! - `BERTH_BRIDGE` (default `berth0`) and `BERTH_SUBNET` (default
//!   `10.89.0.0/16`): the default network's bridge and subnet, so tests (or
//!   a second installation) can run beside a developer's berth0;
//! - `BERTH_NETWORK_POOL` (default `10.90.0.0/16`): where user networks
//!   created without `--subnet` get a /24;
//! - `BERTH_USERLAND_PROXY=1`: serve 127.0.0.1 publishes with the user-space
//!   proxy instead of DNAT (no `route_localnet` on the bridges);
//! - `BERTH_IP_FORWARD=0`: never turn on `net.ipv4.ip_forward`.

pub mod bridge;
pub mod container;
pub mod endpoint;
pub mod etcfiles;
pub mod ipam;
pub mod manage;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod ports;
pub mod proxy;
pub mod store;
pub mod subnet;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use endpoint::{Attachment, EndpointSettings, NetworkMode, NetworkSettings};
pub use ports::{PortSpec, Protocol, PublishedPort};
pub use store::{NetworkRecord, NetworkStore, DEFAULT_NETWORK};
pub use subnet::Subnet;

/// The default bridge's name.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The default bridge's subnet.
pub const DEFAULT_SUBNET: &str = "10.89.0.0/16";
/// Where user networks without `--subnet` get their /24.
pub const DEFAULT_POOL: &str = "10.90.0.0/16";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "error while removing network: network {name} id {id} has active endpoints ({containers})"
    )]
    InUse {
        name: String,
        id: String,
        containers: String,
    },
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
    #[error(transparent)]
    Port(#[from] ports::PortError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: corrupt network record: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl NetworkError {
    pub(crate) fn kernel(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetworkError {
        let what = what.into();
        move |source| NetworkError::Kernel { what, source }
    }
}

/// How this berth installation networks (see the module docs for the
/// environment variables).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkOptions {
    pub bridge: String,
    pub subnet: Subnet,
    pub pool: Subnet,
    /// `BERTH_BRIDGE` was given (a mismatch with the stored network is an error).
    pub bridge_explicit: bool,
    pub subnet_explicit: bool,
    pub userland_proxy: bool,
    pub ip_forward: bool,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            bridge: DEFAULT_BRIDGE.to_string(),
            subnet: DEFAULT_SUBNET.parse().expect("valid default subnet"),
            pool: DEFAULT_POOL.parse().expect("valid default pool"),
            bridge_explicit: false,
            subnet_explicit: false,
            userland_proxy: false,
            ip_forward: true,
        }
    }
}

impl NetworkOptions {
    /// The settings from `BERTH_BRIDGE`, `BERTH_SUBNET`, `BERTH_NETWORK_POOL`,
    /// `BERTH_USERLAND_PROXY` and `BERTH_IP_FORWARD`.
    pub fn from_env() -> Result<NetworkOptions, NetworkError> {
        let mut options = NetworkOptions::default();
        if let Some(bridge) = env("BERTH_BRIDGE") {
            validate_bridge_name(&bridge)?;
            options.bridge = bridge;
            options.bridge_explicit = true;
        }
        if let Some(subnet) = env("BERTH_SUBNET") {
            options.subnet = subnet
                .parse()
                .map_err(|e| NetworkError::Invalid(format!("BERTH_SUBNET: {e}")))?;
            options.subnet_explicit = true;
        }
        if let Some(pool) = env("BERTH_NETWORK_POOL") {
            options.pool = pool
                .parse()
                .map_err(|e| NetworkError::Invalid(format!("BERTH_NETWORK_POOL: {e}")))?;
        }
        options.userland_proxy = flag("BERTH_USERLAND_PROXY")?.unwrap_or(false);
        options.ip_forward = flag("BERTH_IP_FORWARD")?.unwrap_or(true);
        Ok(options)
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn flag(name: &str) -> Result<Option<bool>, NetworkError> {
    match env(name).as_deref() {
        None => Ok(None),
        Some("1" | "true" | "yes") => Ok(Some(true)),
        Some("0" | "false" | "no") => Ok(Some(false)),
        Some(other) => Err(NetworkError::Invalid(format!(
            "{name}={other:?}: use 1 or 0"
        ))),
    }
}

/// A Linux interface name: 1 to 15 bytes, no `/`, no whitespace.
pub fn validate_bridge_name(name: &str) -> Result<(), NetworkError> {
    if name.is_empty()
        || name.len() > 15
        || name.contains('/')
        || name.contains(char::is_whitespace)
        || name == "."
        || name == ".."
    {
        return Err(NetworkError::Invalid(format!(
            "invalid bridge name {name:?}: an interface name has 1 to 15 characters, without '/' or spaces"
        )));
    }
    Ok(())
}

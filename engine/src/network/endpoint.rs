//! One container's network, from start to stop: what its monitor does
//! between making the rootfs and starting the process, and undoes when the
//! container is gone for good.
//!
//! The steps of [`attach`] for a bridge network, in order:
//! 1. make sure the network's bridge exists (created on first use);
//! 2. make the container's network namespace (held by fd, see [`super::netns`]);
//! 3. take an address from the network's allocator;
//! 4. create the veth pair: host end on the bridge, other end moved into
//!    the namespace as `eth0` (one netlink message);
//! 5. inside the namespace: `lo` up, the address on `eth0`, the default
//!    route via the bridge's gateway address;
//! 6. write /etc/hosts, /etc/resolv.conf, /etc/hostname (and, on a user
//!    network, rewrite every peer's /etc/hosts to list the newcomer);
//! 7. publish ports: reserve each host port with a bound socket, add the
//!    DNAT elements, start the proxy if one is needed.
//!
//! The runtime then joins the namespace by path (the spec's network
//! namespace `path`), so the process starts with its network ready: the
//! "create the namespace first" way, rather than configuring it between the
//! runtime's create and start. It keeps the runtime a black box, keeps the
//! same namespace, address and veth across restarts by the restart policy,
//! and lets the monitor undo everything without asking the runtime.
//!
//! Any failure undoes the steps already done ([`Attachment::detach`] copes
//! with a partial attachment). When the monitor dies without detaching,
//! the kernel removes the namespace and the veth pair, closes the reserved
//! ports and kills the proxy (`PR_SET_PDEATHSIG`); what remains — DNAT
//! elements, the address allocation, peers' hosts entries — is removed by
//! [`cleanup_after_crash`] from what the container's record remembers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::etcfiles::{self, HostEntry};
use super::ipam::Holder;
use super::netlink::Netlink;
use super::netns::NetNs;
use super::nft::{Firewall, PortRule, Reach};
use super::ports::{self, Forwarding, PortSpec, PublishedPort, Reservation};
use super::proxy::{ProxyProcess, ProxyTarget};
use super::store::{NetworkRecord, NetworkStore};
use super::{bridge, NetworkError, NetworkOptions};
use crate::paths::Roots;

/// What `--network` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A namespace with only `lo`.
    None,
    /// The host's own network namespace.
    Host,
    /// A bridge network by name (`bridge` is the default one).
    Bridge(String),
    /// The network namespace of another (running) container.
    Container(String),
}

impl NetworkMode {
    /// docker's values: `bridge` (or `default`), `none`, `host`,
    /// `container:NAME|ID`, or the name of a user network.
    pub fn parse(text: &str) -> Result<NetworkMode, NetworkError> {
        Ok(match text {
            "" | "bridge" | "default" => NetworkMode::Bridge(super::DEFAULT_NETWORK.into()),
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            other => match other.strip_prefix("container:") {
                Some("") => {
                    return Err(NetworkError::Invalid(
                        "--network container: needs a container name or id".into(),
                    ))
                }
                Some(target) => NetworkMode::Container(target.to_string()),
                None => NetworkMode::Bridge(other.to_string()),
            },
        })
    }

    /// The text docker shows as `HostConfig.NetworkMode`.
    pub fn as_string(&self) -> String {
        match self {
            NetworkMode::None => "none".into(),
            NetworkMode::Host => "host".into(),
            NetworkMode::Bridge(name) if name == super::DEFAULT_NETWORK => "bridge".into(),
            NetworkMode::Bridge(name) => name.clone(),
            NetworkMode::Container(target) => format!("container:{target}"),
        }
    }
}

/// A container's place on a bridge network, as recorded for `inspect` and
/// for the cleanup after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSettings {
    pub network: String,
    pub network_id: String,
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Everything the network part of a running container is, stored in its
/// record (docker's `NetworkSettings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSettings {
    /// The mode as given (`bridge`, `none`, `host`, `container:x`, a network name).
    pub mode: String,
    pub endpoint: Option<EndpointSettings>,
    pub ports: Vec<PublishedPort>,
    /// The network namespace's path while the container runs.
    pub sandbox_key: String,
    /// The nftables table holding the DNAT elements.
    pub firewall_table: String,
}

impl NetworkSettings {
    /// docker's PORTS column of a running container: each published port
    /// (`0.0.0.0:8080->80/tcp`), then each exposed port not published (`443/tcp`).
    pub fn ports_column(&self, exposed: &[String]) -> String {
        let mut published: Vec<&PublishedPort> = self.ports.iter().collect();
        published.sort_by_key(|p| (p.container_port, p.protocol, p.host_port));
        let mut parts: Vec<String> = published.iter().map(|p| p.display()).collect();
        for key in exposed {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let taken = self
                .ports
                .iter()
                .any(|p| p.container_port.to_string() == port && p.protocol.as_str() == proto);
            if !taken {
                parts.push(format!("{port}/{proto}"));
            }
        }
        parts.join(", ")
    }

    /// The DNAT elements this container's ports were given.
    pub fn port_rules(&self) -> Vec<PortRule> {
        let Some(endpoint) = &self.endpoint else {
            return Vec::new();
        };
        self.ports
            .iter()
            .filter_map(|p| port_rule(p, endpoint.ip))
            .collect()
    }
}

fn port_rule(port: &PublishedPort, container_ip: Ipv4Addr) -> Option<PortRule> {
    let reach = match port.via {
        Forwarding::Dnat => Reach::AllLocal,
        Forwarding::DnatAndProxy => Reach::External,
        Forwarding::Proxy => return None,
    };
    let host_ip = match port.host_ip {
        IpAddr::V4(ip) if ip.is_unspecified() => None,
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => return None,
    };
    Some(PortRule {
        host_ip,
        reach,
        protocol: port.protocol,
        host_port: port.host_port,
        container_ip,
        container_port: port.container_port,
    })
}

/// `--network container:X`, resolved by the caller: X's namespace and the
/// directory holding X's hosts, resolv.conf and hostname.
#[derive(Debug, Clone)]
pub struct JoinTarget {
    pub netns_path: String,
    pub etc_dir: PathBuf,
}

/// What [`attach`] needs to know about the container.
#[derive(Debug, Clone)]
pub struct AttachRequest<'a> {
    pub roots: &'a Roots,
    pub options: &'a NetworkOptions,
    pub container_id: &'a str,
    pub name: &'a str,
    pub hostname: &'a str,
    pub mode: NetworkMode,
    /// `--network-alias`: more names on a user network.
    pub aliases: Vec<String>,
    pub ports: Vec<PortSpec>,
    /// Where this container's hosts, resolv.conf and hostname are written.
    pub container_dir: &'a Path,
    /// Required for [`NetworkMode::Container`].
    pub join: Option<JoinTarget>,
}

/// Which network namespace the container's process goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    /// Share the host's (no network namespace in the spec).
    Host,
    /// Join the namespace at this path.
    Join(String),
}

/// A container's network while it runs: owned by its monitor.
#[derive(Debug)]
pub struct Attachment {
    netns: Option<NetNs>,
    namespace: Namespace,
    /// The hosts, resolv.conf and hostname files to bind over the image's.
    pub etc_dir: PathBuf,
    pub settings: NetworkSettings,
    network: Option<NetworkRecord>,
    store: Option<NetworkStore>,
    firewall: Firewall,
    container_id: String,
    containers_dir: PathBuf,
    address_taken: bool,
    ports_published: Vec<PortRule>,
    reservations: Vec<Reservation>,
    proxy: Option<ProxyProcess>,
}

impl Attachment {
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// What a killed monitor leaves behind: the kernel closes its fds (the
    /// namespace, the reserved ports) and the proxy dies with it; nothing else
    /// is undone. For the tests of [`cleanup_after_crash`].
    #[cfg(test)]
    pub(crate) fn abandon(mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
        self.reservations.clear();
        self.netns = None;
        self.address_taken = false;
        self.ports_published.clear();
        self.settings.endpoint = None;
    }

    /// Like [`Attachment::abandon`], but as seen from outside: the veth and
    /// address stay recorded for the cleanup to find.
    #[cfg(test)]
    pub(crate) fn abandon_keeping_rules(mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
        self.reservations.clear();
        if let Some(endpoint) = &self.settings.endpoint {
            let _ = Netlink::open().and_then(|mut nl| nl.delete_link(&endpoint.host_veth));
        }
        self.netns = None;
        self.address_taken = false;
        self.ports_published.clear();
        self.settings.endpoint = None;
    }

    /// Undo everything this attachment did, in reverse order. Safe on a
    /// partial attachment; errors are logged, never stop the rest.
    pub fn detach(mut self) {
        self.release();
        self.finish();
    }

    /// The first, quick half of [`Attachment::detach`]: what other
    /// containers and commands can see — the proxy, the DNAT elements, the
    /// host ports, the address and the peers' hosts entries. Idempotent.
    pub fn release(&mut self) {
        tracing::debug!(id = %self.container_id, "releasing the container's ports and address");
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
        if let Err(err) = self.firewall.remove_ports(&self.ports_published) {
            tracing::warn!(%err, "removing the container's DNAT elements");
        }
        self.ports_published.clear();
        self.reservations.clear();
        if let (true, Some(store), Some(network)) = (self.address_taken, &self.store, &self.network)
        {
            release_and_refresh(store, network, &self.container_id, &self.containers_dir);
        }
        self.address_taken = false;
    }

    /// The second half: delete the veth pair (which waits for the kernel's
    /// RCU grace periods, ~10-30 ms, so the monitor does it after telling
    /// its clients the container exited) and close the namespace.
    pub fn finish(mut self) {
        if let Some(endpoint) = &self.settings.endpoint {
            match Netlink::open().and_then(|mut nl| nl.delete_link(&endpoint.host_veth)) {
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "removing the veth pair"),
            }
        }
        self.netns = None;
    }
}

/// Set up the container's network (see the module docs for the steps).
pub fn attach(request: AttachRequest<'_>) -> Result<Attachment, NetworkError> {
    let mut attachment = Attachment {
        netns: None,
        namespace: Namespace::Host,
        etc_dir: request.container_dir.to_path_buf(),
        settings: NetworkSettings {
            mode: request.mode.as_string(),
            ..Default::default()
        },
        network: None,
        store: None,
        firewall: Firewall::for_root(request.roots),
        container_id: request.container_id.to_string(),
        containers_dir: request.roots.containers(),
        address_taken: false,
        ports_published: Vec::new(),
        reservations: Vec::new(),
        proxy: None,
    };
    match attach_steps(&request, &mut attachment) {
        Ok(()) => Ok(attachment),
        Err(err) => {
            tracing::debug!(%err, "network setup failed; undoing it");
            attachment.detach();
            Err(err)
        }
    }
}

fn attach_steps(request: &AttachRequest<'_>, att: &mut Attachment) -> Result<(), NetworkError> {
    let dir = request.container_dir;
    match &request.mode {
        NetworkMode::Host => {
            att.namespace = Namespace::Host;
            let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            let hostname = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            write_etc(
                dir,
                &hostname,
                &hosts,
                &etcfiles::resolv_conf(&etcfiles::host_resolv_conf(), true),
            )?;
            Ok(())
        }
        NetworkMode::Container(target) => {
            let join = request.join.as_ref().ok_or_else(|| {
                NetworkError::Invalid(format!(
                    "container {target} is not running: cannot join its network"
                ))
            })?;
            att.namespace = Namespace::Join(join.netns_path.clone());
            att.etc_dir = join.etc_dir.clone();
            att.settings.sandbox_key = join.netns_path.clone();
            Ok(())
        }
        NetworkMode::None => {
            let netns =
                NetNs::create().map_err(NetworkError::kernel("create a network namespace"))?;
            bring_loopback_up(&netns)?;
            att.namespace = Namespace::Join(netns.proc_path());
            att.settings.sandbox_key = netns.proc_path();
            att.netns = Some(netns);
            let hosts = etcfiles::hosts_file(None, &[]);
            write_etc(
                dir,
                request.hostname,
                &hosts,
                &etcfiles::resolv_conf(&etcfiles::host_resolv_conf(), false),
            )
        }
        NetworkMode::Bridge(name) => attach_bridge(request, name, att),
    }
}

fn write_etc(dir: &Path, hostname: &str, hosts: &str, resolv: &str) -> Result<(), NetworkError> {
    etcfiles::write_all(dir, hostname, hosts, resolv).map_err(|source| NetworkError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn bring_loopback_up(netns: &NetNs) -> Result<(), NetworkError> {
    netns
        .enter(|| -> Result<(), NetworkError> {
            let mut nl = Netlink::open()?;
            nl.set_up(1)?; // lo is always index 1 in a new namespace
            Ok(())
        })
        .map_err(NetworkError::kernel(
            "enter the container's network namespace",
        ))?
}

fn attach_bridge(
    request: &AttachRequest<'_>,
    network_name: &str,
    att: &mut Attachment,
) -> Result<(), NetworkError> {
    let store = NetworkStore::open(request.roots, request.options)?;
    let network = store.find(network_name)?;
    att.store = Some(store.clone());
    att.network = Some(network.clone());
    att.settings.firewall_table = att.firewall.table().to_string();

    // Step 1.
    let mut nl = Netlink::open()?;
    let bridge_index =
        bridge::ensure_bridge(&mut nl, &network, &att.firewall, request.options, || {
            store.lock()
        })?;

    // Step 2.
    let netns = NetNs::create().map_err(NetworkError::kernel("create a network namespace"))?;
    att.namespace = Namespace::Join(netns.proc_path());
    att.settings.sandbox_key = netns.proc_path();

    // Step 3.
    let aliases = if network.name_resolution {
        request.aliases.clone()
    } else {
        Vec::new()
    };
    let ip = store.ipam(&network).allocate(Holder {
        container_id: request.container_id.to_string(),
        name: request.name.to_string(),
        hostname: request.hostname.to_string(),
        aliases: aliases.clone(),
    })?;
    att.address_taken = true;

    // Step 4.
    let host_veth = host_veth_name(request.container_id);
    let mac = mac_for(ip);
    let _ = nl.delete_link(&host_veth); // a leftover of a crashed earlier start
    nl.create_veth(&host_veth, bridge_index, "eth0", mac, netns.fd())?;
    att.settings.endpoint = Some(EndpointSettings {
        network: network.name.clone(),
        network_id: network.id.clone(),
        bridge: network.bridge.clone(),
        ip,
        prefix_len: network.subnet.prefix(),
        gateway: network.gateway,
        mac: mac_text(mac),
        host_veth: host_veth.clone(),
        aliases,
    });
    tracing::debug!(step = "veth", %host_veth, %ip, bridge = %network.bridge, peer = "eth0",
        "veth pair created over netlink: {host_veth} on the host, attached to bridge {}; its peer moved into the container's namespace as eth0 (mac {})",
        network.bridge, mac_text(mac));

    // Step 5.
    let prefix = network.subnet.prefix();
    let gateway = network.gateway;
    netns
        .enter(|| -> Result<(), NetworkError> {
            let mut inside = Netlink::open()?;
            inside.set_up(1)?;
            let eth0 = inside.link_index("eth0")?.ok_or_else(|| {
                NetworkError::Invalid("eth0 did not arrive in the container's namespace".into())
            })?;
            inside.add_address(eth0, ip, prefix)?;
            inside.set_up(eth0)?;
            inside.add_default_route(gateway)?;
            tracing::debug!(step = "address", %ip, prefix, %gateway,
                "inside the container's namespace: lo and eth0 up, {ip}/{prefix} on eth0, default route via {gateway}");
            Ok(())
        })
        .map_err(NetworkError::kernel(
            "enter the container's network namespace",
        ))??;
    att.netns = Some(netns);

    // Step 6.
    let resolv = etcfiles::resolv_conf(&etcfiles::host_resolv_conf(), false);
    let own = HostEntry {
        ip,
        names: own_names(request, &network),
    };
    let hosts = etcfiles::hosts_file(Some(&own), &[]);
    write_etc(request.container_dir, request.hostname, &hosts, &resolv)?;
    if network.name_resolution {
        refresh_hosts(&store, &network, &att.containers_dir)?;
    }

    // Step 7.
    publish_ports(request, att, ip)
}

fn own_names(request: &AttachRequest<'_>, network: &NetworkRecord) -> Vec<String> {
    let mut names = vec![request.hostname.to_string()];
    if network.name_resolution {
        names.push(request.name.to_string());
        names.extend(request.aliases.iter().cloned());
    }
    names
}

/// Reserve, DNAT and proxy every requested port; the attachment remembers
/// each step so that a failure (a port in use) undoes the earlier ones.
fn publish_ports(
    request: &AttachRequest<'_>,
    att: &mut Attachment,
    container_ip: Ipv4Addr,
) -> Result<(), NetworkError> {
    let mut proxy_targets = Vec::new();
    for spec in &request.ports {
        let via = forwarding_for(spec, request.options);
        let listen = via != Forwarding::Dnat;
        let reservation = ports::reserve(spec, via, listen)?;
        if listen {
            let socket = reservation
                .socket
                .try_clone()
                .map_err(NetworkError::kernel(
                    "duplicate a port socket for the proxy",
                ))?;
            proxy_targets.push(ProxyTarget {
                socket,
                protocol: spec.protocol,
                target: SocketAddr::new(IpAddr::V4(container_ip), spec.container_port),
            });
        }
        att.settings.ports.push(reservation.port.clone());
        att.reservations.push(reservation);
    }
    let rules: Vec<PortRule> = att
        .settings
        .ports
        .iter()
        .filter_map(|p| port_rule(p, container_ip))
        .collect();
    att.firewall.add_ports(&rules)?;
    att.ports_published = rules;
    if !proxy_targets.is_empty() {
        let proxy = ProxyProcess::spawn(proxy_targets)
            .map_err(NetworkError::kernel("start the port proxy"))?;
        att.proxy = Some(proxy);
    }
    Ok(())
}

/// Kernel DNAT where it can serve; the proxy for IPv6 host addresses, and
/// for loopback in userland-proxy mode.
fn forwarding_for(spec: &PortSpec, options: &NetworkOptions) -> Forwarding {
    match spec.host_ip {
        Some(IpAddr::V6(_)) => Forwarding::Proxy,
        Some(IpAddr::V4(ip)) if ip.is_loopback() && options.userland_proxy => Forwarding::Proxy,
        None if options.userland_proxy => Forwarding::DnatAndProxy,
        Some(IpAddr::V4(ip)) if ip.is_unspecified() && options.userland_proxy => {
            Forwarding::DnatAndProxy
        }
        _ => Forwarding::Dnat,
    }
}

/// The host end of container `id`'s veth pair: derived from the id, so a
/// cleanup after a crash knows what to look for (at most 15 characters).
pub fn host_veth_name(container_id: &str) -> String {
    format!("vb{}", &container_id[..12.min(container_id.len())])
}

/// A locally administered MAC derived from the address, as docker did
/// (02:42 + the four bytes of the IPv4 address): stable across restarts.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Rewrite the /etc/hosts of every container on `network` so each lists
/// itself and all the others (under the address book's lock, so two
/// containers joining at once both end up everywhere).
pub fn refresh_hosts(
    store: &NetworkStore,
    network: &NetworkRecord,
    containers_dir: &Path,
) -> Result<(), NetworkError> {
    store.ipam(network).with_endpoints(|members| {
        for (ip, holder) in members {
            let path = containers_dir
                .join(&holder.container_id)
                .join(etcfiles::HOSTS);
            if !path.exists() {
                continue; // not written yet (or the container is gone)
            }
            let own = HostEntry {
                ip: *ip,
                names: holder_names(holder),
            };
            let peers: Vec<HostEntry> = members
                .iter()
                .filter(|(_, h)| h.container_id != holder.container_id)
                .map(|(ip, h)| HostEntry {
                    ip: *ip,
                    names: holder_names(h),
                })
                .collect();
            if let Err(err) =
                etcfiles::write_in_place(&path, &etcfiles::hosts_file(Some(&own), &peers))
            {
                tracing::warn!(%err, "updating a peer's /etc/hosts");
            }
        }
    })?;
    Ok(())
}

fn holder_names(holder: &Holder) -> Vec<String> {
    let mut names = vec![holder.hostname.clone(), holder.name.clone()];
    names.extend(holder.aliases.iter().cloned());
    names.dedup();
    names
}

fn release_and_refresh(
    store: &NetworkStore,
    network: &NetworkRecord,
    id: &str,
    containers_dir: &Path,
) {
    if let Err(err) = store.ipam(network).release(id) {
        tracing::warn!(%err, "releasing the container's address");
    }
    if network.name_resolution {
        if let Err(err) = refresh_hosts(store, network, containers_dir) {
            tracing::warn!(%err, "updating the peers' /etc/hosts");
        }
    }
}

/// After a monitor died without detaching: remove what the kernel does not
/// remove by itself (DNAT elements, the address allocation, peers' hosts
/// entries) and the veth pair if its namespace is still alive. Idempotent.
pub fn cleanup_after_crash(
    roots: &Roots,
    options: &NetworkOptions,
    container_id: &str,
    settings: &NetworkSettings,
) {
    let firewall = if settings.firewall_table.is_empty() {
        Firewall::for_root(roots)
    } else {
        Firewall::named(&settings.firewall_table)
    };
    if let Err(err) = firewall.remove_stale_ports(&settings.port_rules()) {
        tracing::warn!(%err, "cleanup: removing DNAT elements");
    }
    let Some(endpoint) = &settings.endpoint else {
        return;
    };
    if let Ok(mut nl) = Netlink::open() {
        let _ = nl.delete_link(&endpoint.host_veth);
    }
    let Ok(store) = NetworkStore::open(roots, options) else {
        return;
    };
    if let Ok(Some(network)) = store.try_find(&endpoint.network_id) {
        release_and_refresh(&store, &network, container_id, &roots.containers());
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn modes_parse_as_docker_spells_them() {
        assert_eq!(
            NetworkMode::parse("bridge").unwrap(),
            NetworkMode::Bridge("bridge".into())
        );
        assert_eq!(NetworkMode::parse("default").unwrap().as_string(), "bridge");
        assert_eq!(NetworkMode::parse("none").unwrap(), NetworkMode::None);
        assert_eq!(NetworkMode::parse("host").unwrap(), NetworkMode::Host);
        assert_eq!(
            NetworkMode::parse("container:web").unwrap(),
            NetworkMode::Container("web".into())
        );
        assert!(NetworkMode::parse("container:").is_err());
        assert_eq!(
            NetworkMode::parse("backend").unwrap().as_string(),
            "backend"
        );
    }

    #[test]
    fn names_and_addresses_derive_from_the_container() {
        assert_eq!(
            host_veth_name(&"ab".repeat(32)),
            "vbababababababab"[..14].to_string()
        );
        assert_eq!(host_veth_name(&"ab".repeat(32)).len(), 14);
        assert_eq!(
            mac_text(mac_for("10.89.0.2".parse().unwrap())),
            "02:42:0a:59:00:02"
        );
    }

    #[test]
    fn forwarding_uses_dnat_unless_the_kernel_cannot() {
        let mut options = NetworkOptions::default();
        let spec = |ip: Option<&str>| PortSpec {
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port_start: 0,
            host_port_end: 0,
            container_port: 80,
            protocol: super::super::Protocol::Tcp,
        };
        assert_eq!(forwarding_for(&spec(None), &options), Forwarding::Dnat);
        assert_eq!(
            forwarding_for(&spec(Some("127.0.0.1")), &options),
            Forwarding::Dnat
        );
        assert_eq!(
            forwarding_for(&spec(Some("::1")), &options),
            Forwarding::Proxy
        );
        options.userland_proxy = true;
        assert_eq!(
            forwarding_for(&spec(None), &options),
            Forwarding::DnatAndProxy
        );
        assert_eq!(
            forwarding_for(&spec(Some("127.0.0.1")), &options),
            Forwarding::Proxy
        );
        assert_eq!(
            forwarding_for(&spec(Some("192.0.2.2")), &options),
            Forwarding::Dnat
        );
    }

    #[test]
    fn recorded_ports_give_back_their_dnat_elements() {
        let settings = NetworkSettings {
            mode: "bridge".into(),
            endpoint: Some(EndpointSettings {
                network: "bridge".into(),
                network_id: "x".into(),
                bridge: "berth0".into(),
                ip: "10.89.0.2".parse().unwrap(),
                prefix_len: 16,
                gateway: "10.89.0.1".parse().unwrap(),
                mac: String::new(),
                host_veth: "vbx".into(),
                aliases: vec![],
            }),
            ports: vec![
                PublishedPort {
                    host_ip: "0.0.0.0".parse().unwrap(),
                    host_port: 8080,
                    container_port: 80,
                    protocol: super::super::Protocol::Tcp,
                    via: Forwarding::Dnat,
                },
                PublishedPort {
                    host_ip: "::1".parse().unwrap(),
                    host_port: 8081,
                    container_port: 80,
                    protocol: super::super::Protocol::Tcp,
                    via: Forwarding::Proxy,
                },
            ],
            sandbox_key: String::new(),
            firewall_table: "berth".into(),
        };
        let rules = settings.port_rules();
        assert_eq!(rules.len(), 1, "the proxied port has no DNAT element");
        assert_eq!((rules[0].host_ip, rules[0].host_port), (None, 8080));
    }
}

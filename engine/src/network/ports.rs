//! Published ports: docker's `-p` syntax, and the host sockets that reserve
//! each published port for as long as the container runs.
//!
//! Mechanism: `socket(2)` + `bind(2)` on the host address and port (port 0:
//! the kernel picks a free one from `net.ipv4.ip_local_port_range`, as
//! docker's random ports do). The bound socket is what makes a second
//! container, or any other program, fail with `EADDRINUSE` on the same port:
//! the traffic itself never reaches it, because nftables rewrites the
//! destination (DNAT) before the local delivery decision. A socket that the
//! user-space proxy serves also `listen(2)`s.
//!
//! The sockets live in the container's monitor; when the monitor dies (even
//! by SIGKILL) the kernel closes them and the ports are free again.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::str::FromStr;

use rustix::net::{AddressFamily, SocketType};
use serde::{Deserialize, Serialize};

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Protocol, String> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" | "" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(format!(
                "invalid protocol {other:?}: berth publishes tcp and udp ports"
            )),
        }
    }
}

/// One requested publication, as stored in the container's host config:
/// a container port and where on the host to publish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host address (None: every address of the host).
    pub host_ip: Option<IpAddr>,
    /// The host port range to pick from; (0, 0) asks for a random port.
    pub host_port_start: u16,
    pub host_port_end: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortSpec {
    /// `80/tcp`, the key docker uses for a container port.
    pub fn container_key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol.as_str())
    }
}

/// A port that is published now: the host side the kernel gave us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// `0.0.0.0` when published on every address.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// How traffic reaches the container.
    pub via: Forwarding,
}

/// How a published port's traffic reaches the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forwarding {
    /// nftables DNAT for every local address, loopback included.
    Dnat,
    /// nftables DNAT for every local address but loopback, which the proxy serves.
    DnatAndProxy,
    /// Only the user-space proxy (a loopback publish in proxy mode, or IPv6).
    Proxy,
}

impl PublishedPort {
    /// docker's `ps` form: `0.0.0.0:8080->80/tcp`, `[::1]:8080->80/tcp`.
    pub fn display(&self) -> String {
        let host = match self.host_ip {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        format!(
            "{host}:{}->{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

impl fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// Parse one `-p` value into the publications it asks for:
/// `[ip:][hostPort:]containerPort[/proto]`, `ip::containerPort`, port ranges
/// (`8000-8001:80-81`, or a host range for one container port:
/// `8000-8010:80`), IPv6 host addresses in brackets (`[::1]:8080:80`).
pub fn parse_publish(text: &str) -> Result<Vec<PortSpec>, String> {
    let bad = |why: &str| format!("invalid publish spec {text:?}: {why}");
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((rest, proto)) => (rest, proto.parse::<Protocol>().map_err(|e| bad(&e))?),
        None => (text, Protocol::Tcp),
    };
    let (host_ip, rest) = split_host_ip(rest).map_err(|e| bad(&e))?;
    let (host_part, container_part) = match rest.rsplit_once(':') {
        Some((host, container)) => (host, container),
        None => ("", rest),
    };
    if host_part.contains(':') {
        return Err(bad(
            "too many colons; use [ip:]hostPort:containerPort, with IPv6 addresses in brackets",
        ));
    }
    if container_part.is_empty() {
        return Err(bad("no container port"));
    }
    let (c_start, c_end) = parse_range(container_part).map_err(|e| bad(&e))?;
    let (h_start, h_end) = if host_part.is_empty() {
        (0, 0)
    } else {
        parse_range(host_part).map_err(|e| bad(&e))?
    };
    let container_len = c_end - c_start;
    let host_len = h_end - h_start;
    let mut specs = Vec::new();
    if host_part.is_empty() || container_len == host_len {
        for offset in 0..=container_len {
            let host = if host_part.is_empty() {
                0
            } else {
                h_start + offset
            };
            specs.push(PortSpec {
                host_ip,
                host_port_start: host,
                host_port_end: host,
                container_port: c_start + offset,
                protocol,
            });
        }
    } else if container_len == 0 {
        specs.push(PortSpec {
            host_ip,
            host_port_start: h_start,
            host_port_end: h_end,
            container_port: c_start,
            protocol,
        });
    } else {
        return Err(bad(
            "the host and container port ranges must have the same length",
        ));
    }
    Ok(specs)
}

/// Split a leading host address off: `1.2.3.4:`, `[::1]:`, or nothing.
fn split_host_ip(text: &str) -> Result<(Option<IpAddr>, &str), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, rest) = rest
            .split_once(']')
            .ok_or("an IPv6 address in brackets lacks its ']'")?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or("a port must follow the host address")?;
        return Ok((Some(IpAddr::V6(ip)), rest));
    }
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() == 3 {
        let ip: Ipv4Addr = parts[0].parse().map_err(|_| {
            format!(
                "{:?} is not an IPv4 address (IPv6 goes in brackets)",
                parts[0]
            )
        })?;
        let after = &text[parts[0].len() + 1..];
        return Ok((Some(IpAddr::V4(ip)), after));
    }
    Ok((None, text))
}

/// `80` or `8000-8010`.
fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{p:?} is not a port number (1-65535)")),
            Ok(n) => Ok(n),
        }
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(format!("the range {text:?} ends before it starts"));
            }
            Ok((a, b))
        }
        None => {
            let p = port(text)?;
            Ok((p, p))
        }
    }
}

/// An image's `EXPOSE` entry (`80/tcp`, `53/udp`, `8080`) as a spec for a
/// random host port on every address (`-P`).
pub fn exposed_to_spec(exposed: &str) -> Result<PortSpec, String> {
    let (port, proto) = exposed.split_once('/').unwrap_or((exposed, "tcp"));
    let (start, _) = parse_range(port).map_err(|e| format!("exposed port {exposed:?}: {e}"))?;
    Ok(PortSpec {
        host_ip: None,
        host_port_start: 0,
        host_port_end: 0,
        container_port: start,
        protocol: proto.parse()?,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("Bind for {addr} failed: port is already allocated")]
    InUse { addr: String },
    #[error("cannot publish on {ip}: it is not an address of this host")]
    NoSuchAddress { ip: IpAddr },
    #[error("no free host port in {start}-{end} for {container}")]
    RangeExhausted {
        start: u16,
        end: u16,
        container: String,
    },
    #[error("publish {addr}: {step}: {source}")]
    Socket {
        addr: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A host port held for a container: the bound socket and what it stands for.
#[derive(Debug)]
pub struct Reservation {
    pub socket: OwnedFd,
    pub port: PublishedPort,
}

/// Bind the host side of `spec` (trying each port of its range in turn).
/// With `listen`, the socket also accepts connections (for the proxy).
pub fn reserve(spec: &PortSpec, via: Forwarding, listen: bool) -> Result<Reservation, PortError> {
    let ip = spec.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let candidates: Vec<u16> = if spec.host_port_start == 0 {
        vec![0]
    } else {
        (spec.host_port_start..=spec.host_port_end).collect()
    };
    let single = candidates.len() == 1;
    for port in candidates {
        match bind_one(ip, port, spec.protocol, listen) {
            Ok((socket, bound_port)) => {
                tracing::debug!(step = "port", %ip, port = bound_port, protocol = spec.protocol.as_str(),
                    "bind({ip}:{bound_port}/{}) and keep the socket: the host port stays berth's while the container runs",
                    spec.protocol.as_str());
                return Ok(Reservation {
                    socket,
                    port: PublishedPort {
                        host_ip: ip,
                        host_port: bound_port,
                        container_port: spec.container_port,
                        protocol: spec.protocol,
                        via,
                    },
                });
            }
            Err(PortError::InUse { .. }) if !single => continue,
            Err(err) => return Err(err),
        }
    }
    Err(PortError::RangeExhausted {
        start: spec.host_port_start,
        end: spec.host_port_end,
        container: spec.container_key(),
    })
}

fn bind_one(
    ip: IpAddr,
    port: u16,
    protocol: Protocol,
    listen: bool,
) -> Result<(OwnedFd, u16), PortError> {
    let addr = SocketAddr::new(ip, port);
    let shown = match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    };
    let sock_err = |step: &'static str| {
        let shown = shown.clone();
        move |e: rustix::io::Errno| PortError::Socket {
            addr: shown,
            step,
            source: e.into(),
        }
    };
    let family = if ip.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let kind = match protocol {
        Protocol::Tcp => SocketType::STREAM,
        Protocol::Udp => SocketType::DGRAM,
    };
    let socket = rustix::net::socket_with(family, kind, rustix::net::SocketFlags::CLOEXEC, None)
        .map_err(sock_err("socket"))?;
    if ip.is_ipv6() {
        rustix::net::sockopt::set_ipv6_v6only(&socket, true).map_err(sock_err("IPV6_V6ONLY"))?;
    }
    if listen && protocol == Protocol::Tcp {
        // The proxy's listener must come back at once after a restart, past
        // connections still in TIME_WAIT; it still conflicts with any bound socket.
        rustix::net::sockopt::set_socket_reuseaddr(&socket, true)
            .map_err(sock_err("SO_REUSEADDR"))?;
    }
    match rustix::net::bind(&socket, &addr) {
        Ok(()) => {}
        Err(rustix::io::Errno::ADDRINUSE) => return Err(PortError::InUse { addr: shown }),
        Err(rustix::io::Errno::ADDRNOTAVAIL) => return Err(PortError::NoSuchAddress { ip }),
        Err(e) => return Err(sock_err("bind")(e)),
    }
    if listen && protocol == Protocol::Tcp {
        rustix::net::listen(&socket, 1024).map_err(sock_err("listen"))?;
    }
    let bound = rustix::net::getsockname(&socket).map_err(sock_err("getsockname"))?;
    let bound_port = SocketAddr::try_from(bound)
        .map(|a| a.port())
        .unwrap_or(port);
    Ok((socket, bound_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> PortSpec {
        let specs = parse_publish(text).unwrap();
        assert_eq!(specs.len(), 1, "{text}");
        specs.into_iter().next().unwrap()
    }

    #[test]
    fn dockers_forms_parse() {
        let s = one("127.0.0.1:8888:8000");
        assert_eq!(s.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!((s.host_port_start, s.container_port), (8888, 8000));
        assert_eq!(s.protocol, Protocol::Tcp);
        let s = one("8080:80/udp");
        assert_eq!(
            (s.host_ip, s.host_port_start, s.protocol),
            (None, 8080, Protocol::Udp)
        );
        let s = one("80");
        assert_eq!((s.host_port_start, s.container_port), (0, 80));
        let s = one("127.0.0.1::80");
        assert_eq!((s.host_ip.is_some(), s.host_port_start), (true, 0));
        let s = one("[::1]:8080:80/tcp");
        assert_eq!(s.host_ip, Some("::1".parse().unwrap()));
        let s = one("9000-9010:80");
        assert_eq!((s.host_port_start, s.host_port_end), (9000, 9010));
    }

    #[test]
    fn ranges_expand_pairwise() {
        let specs = parse_publish("8000-8002:80-82").unwrap();
        let pairs: Vec<(u16, u16)> = specs
            .iter()
            .map(|s| (s.host_port_start, s.container_port))
            .collect();
        assert_eq!(pairs, vec![(8000, 80), (8001, 81), (8002, 82)]);
        let random = parse_publish("80-81").unwrap();
        assert_eq!(random.len(), 2);
        assert!(random.iter().all(|s| s.host_port_start == 0));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (text, needle) in [
            ("", "no container port"),
            ("8080:", "no container port"),
            ("0:80", "not a port number"),
            ("70000:80", "not a port number"),
            ("80/sctp", "tcp and udp"),
            ("1.2.3:80:80", "not an IPv4 address"),
            ("8000-8001:80-82", "same length"),
            ("90-80", "ends before it starts"),
            ("::1:80:80", "too many colons"),
        ] {
            let err = parse_publish(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn exposed_ports_become_random_publications() {
        let s = exposed_to_spec("53/udp").unwrap();
        assert_eq!(
            (s.container_port, s.protocol, s.host_port_start),
            (53, Protocol::Udp, 0)
        );
        assert!(exposed_to_spec("x/tcp").is_err());
    }

    #[test]
    fn a_reserved_port_conflicts_and_a_random_one_is_real() {
        let spec = one("127.0.0.1::80");
        let first = reserve(&spec, Forwarding::Dnat, false).unwrap();
        assert_ne!(first.port.host_port, 0, "the kernel picked a port");
        let taken = PortSpec {
            host_port_start: first.port.host_port,
            host_port_end: first.port.host_port,
            ..spec.clone()
        };
        let err = reserve(&taken, Forwarding::Dnat, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Bind for 127.0.0.1:{} failed: port is already allocated",
                first.port.host_port
            )
        );
        // A range skips the taken port.
        let range = PortSpec {
            host_port_start: first.port.host_port,
            host_port_end: first.port.host_port.saturating_add(20),
            ..spec
        };
        let next = reserve(&range, Forwarding::Dnat, false).unwrap();
        assert_ne!(next.port.host_port, first.port.host_port);
        assert_eq!(
            first.port.display(),
            format!("127.0.0.1:{}->80/tcp", first.port.host_port)
        );
    }

    #[test]
    fn an_address_the_host_lacks_is_refused() {
        let spec = one("203.0.113.77:8080:80");
        assert!(matches!(
            reserve(&spec, Forwarding::Dnat, false),
            Err(PortError::NoSuchAddress { .. })
        ));
    }
}

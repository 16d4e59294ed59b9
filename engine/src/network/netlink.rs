//! Links, addresses and routes through rtnetlink: what `ip link`, `ip addr`
//! and `ip route` do, without running them.
//!
//! Mechanism: a `socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)` bound to the
//! network namespace of the thread that opened it (a socket keeps its
//! namespace for life, so one opened inside a container's namespace
//! configures that namespace from anywhere). Each request is one message
//! (`RTM_NEWLINK`, `RTM_DELLINK`, `RTM_GETLINK`, `RTM_NEWADDR`,
//! `RTM_NEWROUTE`, `RTM_GETROUTE`) with `NLM_F_ACK`; the kernel answers
//! with the objects asked for and/or an `NLMSG_ERROR` carrying 0 or an errno.
//!
//! The message types come from the `netlink-packet-route` crate (the one
//! netavark and rtnetlink use); the socket is `netlink-sys`'s synchronous
//! one, so no async runtime (and no thread) is needed: the monitor stays
//! single-threaded, which keeps the runtime's fast create path.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::subnet::Subnet;

/// A failed netlink request: which operation, and the kernel's errno.
#[derive(Debug, thiserror::Error)]
#[error("netlink: {op}: {source}")]
pub struct NetlinkError {
    pub op: String,
    #[source]
    pub source: io::Error,
}

impl NetlinkError {
    fn new(op: impl Into<String>, source: io::Error) -> NetlinkError {
        NetlinkError {
            op: op.into(),
            source,
        }
    }

    /// The kernel's errno, when it gave one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// A route of the main table, as [`Netlink::routes_v4`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Subnet,
    /// The outgoing interface index, when the route names one.
    pub oif: Option<u32>,
}

/// An rtnetlink socket in the network namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// Open a socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)
            .map_err(|e| NetlinkError::new("socket(NETLINK_ROUTE)", e))?;
        socket
            .bind_auto()
            .map_err(|e| NetlinkError::new("bind netlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| NetlinkError::new("connect netlink socket", e))?;
        // Errors carry the request's header only; smaller answers, no surprises.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_ext_ack(true);
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// Send one request and collect the messages the kernel answers with,
    /// until its acknowledgement (or, for a dump, `NLMSG_DONE`).
    fn request(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        // Every non-dump request asks for an acknowledgement: it is how we
        // know the kernel's answer is complete.
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|e| NetlinkError::new(op, e))?;

        let mut answers = Vec::new();
        let mut receive = vec![0u8; 64 * 1024];
        loop {
            let size = self
                .socket
                .recv(&mut &mut receive[..], 0)
                .map_err(|e| NetlinkError::new(op, e))?;
            let mut offset = 0;
            while offset < size {
                let parsed: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&receive[offset..size]).map_err(|e| {
                        NetlinkError::new(
                            op,
                            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                        )
                    })?;
                let length = parsed.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += length;
                if parsed.header.sequence_number != self.sequence {
                    continue; // a late answer to an earlier request
                }
                match parsed.payload {
                    // The acknowledgement (errno 0) ends a plain request.
                    NetlinkPayload::Error(err) if err.code.is_none() && !dump => {
                        return Ok(answers)
                    }
                    NetlinkPayload::Error(err) if err.code.is_none() => {}
                    NetlinkPayload::Error(err) => return Err(NetlinkError::new(op, err.to_io())),
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// The index of link `name`, None when there is no such link.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("find link {name}"),
            RouteNetlinkMessage::GetLink(message),
            0,
        ) {
            Ok(answers) => Ok(answers.into_iter().find_map(|a| match a {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(err) if err.errno() == Some(libc::ENODEV) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The names of every link whose master is the link `master` (a bridge's ports).
    pub fn ports_of(&mut self, master: u32) -> Result<Vec<String>> {
        let answers = self.request(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .filter(|link| {
                link.attributes
                    .iter()
                    .any(|attr| matches!(attr, LinkAttribute::Controller(m) if *m == master))
            })
            .filter_map(|link| {
                link.attributes.into_iter().find_map(|attr| match attr {
                    LinkAttribute::IfName(name) => Some(name),
                    _ => None,
                })
            })
            .collect())
    }

    /// `ip link add NAME type bridge`; EEXIST when it is there already.
    pub fn create_bridge(&mut self, name: &str) -> Result<()> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        message
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            &format!("create bridge {name}"),
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// `ip link add HOST master BRIDGE up type veth peer name PEER netns FD
    /// address MAC`: one message creates the pair, plugs the host end into
    /// the bridge and brings it up, and moves the other end into the
    /// namespace `peer_netns` under its final name.
    pub fn create_veth(
        &mut self,
        host: &str,
        bridge: u32,
        peer: &str,
        peer_mac: [u8; 6],
        peer_netns: BorrowedFd<'_>,
    ) -> Result<()> {
        // The peer cannot be brought up in this message: the kernel opens it
        // before the two ends are linked, and veth_open() then fails with
        // ENOTCONN. It is set up from inside its namespace afterwards.
        let mut peer_message = LinkMessage::default();
        peer_message
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_message
            .attributes
            .push(LinkAttribute::Address(peer_mac.to_vec()));
        peer_message
            .attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));

        let mut message = LinkMessage::default();
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message
            .attributes
            .push(LinkAttribute::IfName(host.to_string()));
        message.attributes.push(LinkAttribute::Controller(bridge));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        self.request(
            &format!("create veth pair {host} / {peer}"),
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// `ip link set dev INDEX up`.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("set link {index} up"),
            RouteNetlinkMessage::SetLink(message),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// `ip link del NAME`; a missing link is not an error (returns false).
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(message),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(true),
            Err(err) if err.errno() == Some(libc::ENODEV) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// `ip addr add ADDR/PREFIX dev INDEX` (with the subnet's broadcast);
    /// an address that is there already is fine.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let broadcast = Subnet::new(
            Ipv4Addr::from(u32::from(addr) & prefix_mask(prefix)),
            prefix,
        )
        .map(|s| s.broadcast())
        .unwrap_or(Ipv4Addr::BROADCAST);
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.scope = AddressScope::Universe;
        message.header.index = index;
        message
            .attributes
            .push(AddressAttribute::Local(IpAddr::V4(addr)));
        message
            .attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        message
            .attributes
            .push(AddressAttribute::Broadcast(broadcast));
        match self.request(
            &format!("add address {addr}/{prefix} to link {index}"),
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(err) if err.errno() == Some(libc::EEXIST) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// `ip route add default via GATEWAY` in the main table.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.destination_prefix_length = 0;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            &format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The IPv4 routes of the main table (to find a subnet already in use).
    pub fn routes_v4(&mut self) -> Result<Vec<Route>> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        let answers = self.request(
            "list routes",
            RouteNetlinkMessage::GetRoute(message),
            NLM_F_DUMP,
        )?;
        let mut routes = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewRoute(route) = answer else {
                continue;
            };
            if route.header.table != RouteHeader::RT_TABLE_MAIN
                || route.header.kind != RouteType::Unicast
            {
                continue;
            }
            let mut destination = Ipv4Addr::UNSPECIFIED;
            let mut oif = None;
            for attr in &route.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => destination = *a,
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            if let Ok(subnet) = Subnet::new(destination, route.header.destination_prefix_length) {
                routes.push(Route {
                    destination: subnet,
                    oif,
                });
            }
        }
        Ok(routes)
    }
}

fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

//! Root tests of the network pieces against the real kernel.
//!
//! Each test runs in a *world*: a thread moved into a network namespace of
//! its own (`unshare(CLONE_NEWNET)`), where it plays the host. Bridges,
//! veths, the nftables table, sysctls and container namespaces all live
//! there, so the tests run in parallel, beside a developer's berth0, and
//! nothing they do can reach the real host or route anything off it. Every
//! test also removes what it made and checks that nothing is left; and when
//! a test fails half way, the world's namespace dies with its thread, taking
//! every link, rule and sysctl with it (the guard of last resort).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::endpoint::{self, AttachRequest, Attachment, Namespace, NetworkMode};
use super::netlink::Netlink;
use super::netns::NetNs;
use super::nft::Firewall;
use super::ports::parse_publish;
use super::store::{NetworkRecord, NetworkStore};
use super::{bridge, NetworkError, NetworkOptions};
use crate::paths::Roots;

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the network tests create bridges, veths, namespaces and nftables rules: run them as root"
    );
}

/// Run `body` on a thread inside a fresh network namespace (with `lo` up).
fn in_world<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    require_root();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        Netlink::open().unwrap().set_up(1).unwrap();
        // A new namespace inherits the host's IPv4 settings: start from off,
        // so the tests see what berth itself turns on.
        bridge::write_sysctl("net/ipv4/ip_forward", "0").unwrap();
        body()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A berth root in a temporary directory with its own bridge and subnet.
struct Lab {
    _dir: tempfile::TempDir,
    roots: Roots,
    options: NetworkOptions,
}

impl Lab {
    fn new(subnet: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::new(dir.path().join("root"), dir.path().join("state"));
        std::fs::create_dir_all(roots.containers()).unwrap();
        let options = NetworkOptions {
            bridge: "bt-world0".into(),
            subnet: subnet.parse().unwrap(),
            pool: "10.79.0.0/16".parse().unwrap(),
            ..NetworkOptions::default()
        };
        Lab {
            _dir: dir,
            roots,
            options,
        }
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        let dir = self.roots.containers().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn attach(
        &self,
        id: &str,
        name: &str,
        mode: NetworkMode,
        publish: &[&str],
    ) -> Result<Attachment, NetworkError> {
        let dir = self.container_dir(id);
        let ports = publish
            .iter()
            .flat_map(|p| parse_publish(p).unwrap())
            .collect();
        endpoint::attach(AttachRequest {
            roots: &self.roots,
            options: &self.options,
            container_id: id,
            name,
            hostname: &id[..12],
            mode,
            aliases: vec![format!("{name}-alias")],
            ports,
            container_dir: &dir,
            join: None,
        })
    }

    fn firewall(&self) -> Firewall {
        Firewall::for_root(&self.roots)
    }

    fn store(&self) -> NetworkStore {
        NetworkStore::open(&self.roots, &self.options).unwrap()
    }

    /// A user network (`berth network create --subnet SUBNET NAME`).
    fn create_network(&self, name: &str, subnet: &str) -> NetworkRecord {
        let routes: Vec<_> = Netlink::open()
            .unwrap()
            .routes_v4()
            .unwrap()
            .into_iter()
            .map(|r| r.destination)
            .collect();
        self.store()
            .create(
                name,
                Some(subnet.parse().unwrap()),
                Default::default(),
                &routes,
            )
            .unwrap()
    }

    /// Everything a detached container may not leave behind.
    fn assert_nothing_left_of(&self, id: &str) {
        let mut nl = Netlink::open().unwrap();
        assert_eq!(
            nl.link_index(&endpoint::host_veth_name(id)).unwrap(),
            None,
            "veth left"
        );
        for network in self.store().list().unwrap() {
            let held = self.store().ipam(&network).endpoints().unwrap();
            assert!(
                held.iter().all(|(_, h)| h.container_id != id),
                "address left: {held:?}"
            );
        }
    }

    /// Remove every bridge and the table, and check the world is clean.
    fn teardown(&self) {
        let mut nl = Netlink::open().unwrap();
        for network in self.store().list().unwrap() {
            bridge::remove_bridge(&mut nl, &network, &self.firewall()).unwrap();
            assert_eq!(nl.link_index(&network.bridge).unwrap(), None);
        }
        self.firewall().delete_table().unwrap();
        assert!(!self.firewall().exists().unwrap(), "table left");
    }
}

fn id(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

fn netns_of(att: &Attachment) -> NetNs {
    match att.namespace() {
        Namespace::Join(path) => NetNs::open(Path::new(path)).unwrap(),
        Namespace::Host => panic!("expected a namespace of its own"),
    }
}

/// A TCP server inside `netns` on `port` that answers each connection with
/// the peer address it saw, for `count` connections.
fn serve_tcp(netns: &NetNs, port: u16, count: usize) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let listener = netns
        .enter(|| TcpListener::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        let mut peers = Vec::new();
        for _ in 0..count {
            let (mut s, peer) = listener.accept().unwrap();
            s.write_all(format!("hello {peer}").as_bytes()).unwrap();
            peers.push(peer);
        }
        peers
    })
}

fn fetch(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_container_on_the_bridge_is_reachable_directly_and_through_published_ports() {
    in_world(|| {
        let lab = Lab::new("10.77.1.0/24");
        let c = id(1);
        let att = lab
            .attach(
                &c,
                "web",
                NetworkMode::Bridge("bridge".into()),
                &["8080:80", "127.0.0.1:8081:80"],
            )
            .unwrap();
        let endpoint = att.settings.endpoint.clone().unwrap();
        assert_eq!(endpoint.ip, "10.77.1.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(endpoint.gateway, "10.77.1.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            bridge::read_sysctl("net/ipv4/conf/bt-world0/route_localnet").unwrap(),
            "1"
        );
        for other in ["all", "default", "lo"] {
            let key = format!("net/ipv4/conf/{other}/route_localnet");
            assert_eq!(
                bridge::read_sysctl(&key).unwrap(),
                "0",
                "never host-wide: {key}"
            );
        }

        let netns = netns_of(&att);
        let server = serve_tcp(&netns, 80, 3);
        // Straight to the container's address over the bridge.
        let direct = fetch(SocketAddr::new(endpoint.ip.into(), 80));
        assert!(direct.starts_with("hello 10.77.1.1:"), "{direct}");
        // Published on every address: 127.0.0.1 is DNATed (route_localnet on
        // the bridge) and masqueraded to the gateway address.
        let via_loopback = fetch("127.0.0.1:8080".parse().unwrap());
        assert!(
            via_loopback.starts_with("hello 10.77.1.1:"),
            "{via_loopback}"
        );
        // Published on 127.0.0.1 only.
        let via_specific = fetch("127.0.0.1:8081".parse().unwrap());
        assert!(
            via_specific.starts_with("hello 10.77.1.1:"),
            "{via_specific}"
        );
        server.join().unwrap();

        // The container's /etc files.
        let hosts = std::fs::read_to_string(lab.roots.containers().join(&c).join("hosts")).unwrap();
        assert!(
            hosts.contains(&format!("10.77.1.2\t{}\n", &c[..12])),
            "{hosts}"
        );
        let resolv =
            std::fs::read_to_string(lab.roots.containers().join(&c).join("resolv.conf")).unwrap();
        assert!(!resolv.contains("nameserver 127."), "{resolv}");

        let published = lab.firewall().port_elements().unwrap();
        assert_eq!(published.len(), 2, "{published:?}");
        att.detach();
        lab.assert_nothing_left_of(&c);
        assert!(lab.firewall().port_elements().unwrap().is_empty());
        assert!(
            TcpStream::connect_timeout(&"127.0.0.1:8080".parse().unwrap(), Duration::from_secs(2))
                .is_err(),
            "the port is no longer published"
        );
        lab.teardown();
    });
}

#[test]
fn outbound_traffic_is_masqueraded_when_forwarding_is_on() {
    in_world(|| {
        let lab = Lab::new("10.77.2.0/24");
        // An "outside" namespace wired to the world by a veth pair.
        let outside = NetNs::create().unwrap();
        let mut nl = Netlink::open().unwrap();
        let bridge_like = {
            // A plain link for the world's side: a bridge with no ports works as one.
            nl.create_bridge("bt-up").unwrap();
            nl.link_index("bt-up").unwrap().unwrap()
        };
        nl.create_veth(
            "bt-up0",
            bridge_like,
            "eth0",
            [2, 0, 0, 0, 0, 9],
            outside.fd(),
        )
        .unwrap();
        nl.add_address(bridge_like, "10.78.0.1".parse().unwrap(), 24)
            .unwrap();
        nl.set_up(bridge_like).unwrap();
        outside
            .enter(|| {
                let mut inside = Netlink::open().unwrap();
                let eth0 = inside.link_index("eth0").unwrap().unwrap();
                inside
                    .add_address(eth0, "10.78.0.2".parse().unwrap(), 24)
                    .unwrap();
                inside.set_up(eth0).unwrap();
                inside.set_up(1).unwrap();
            })
            .unwrap();
        let server = serve_tcp(&outside, 9000, 1);

        let c = id(2);
        let att = lab
            .attach(&c, "client", NetworkMode::Bridge("bridge".into()), &[])
            .unwrap();
        assert_eq!(bridge::read_sysctl("net/ipv4/ip_forward").unwrap(), "1");
        let answer = netns_of(&att)
            .enter(|| fetch("10.78.0.2:9000".parse().unwrap()))
            .unwrap();
        assert!(
            answer.starts_with("hello 10.78.0.1:"),
            "masqueraded to the world's address: {answer}"
        );
        server.join().unwrap();

        att.detach();
        lab.assert_nothing_left_of(&c);
        nl.delete_link("bt-up").unwrap();
        lab.teardown();
    });
}

#[test]
fn a_port_in_use_is_a_clear_error_and_the_failed_attach_leaves_nothing() {
    in_world(|| {
        let lab = Lab::new("10.77.3.0/24");
        let (a, b) = (id(3), id(4));
        let first = lab
            .attach(
                &a,
                "first",
                NetworkMode::Bridge("bridge".into()),
                &["9090:80"],
            )
            .unwrap();
        let err = lab
            .attach(
                &b,
                "second",
                NetworkMode::Bridge("bridge".into()),
                &["9091:81", "9090:80"],
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Bind for 0.0.0.0:9090 failed: port is already allocated"
        );
        lab.assert_nothing_left_of(&b);
        let elements = lab.firewall().port_elements().unwrap();
        assert_eq!(
            elements.len(),
            1,
            "only the first container's port: {elements:?}"
        );
        let mut nl = Netlink::open().unwrap();
        assert!(nl
            .link_index(&endpoint::host_veth_name(&a))
            .unwrap()
            .is_some());
        first.detach();
        lab.assert_nothing_left_of(&a);
        lab.teardown();
    });
}

#[test]
fn udp_is_published_too() {
    in_world(|| {
        let lab = Lab::new("10.77.4.0/24");
        let c = id(5);
        let att = lab
            .attach(
                &c,
                "dns",
                NetworkMode::Bridge("bridge".into()),
                &["5353:53/udp"],
            )
            .unwrap();
        let socket = netns_of(&att)
            .enter(|| UdpSocket::bind("0.0.0.0:53"))
            .unwrap()
            .unwrap();
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            socket.send_to(&buf[..n], from).unwrap();
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.send_to(b"ping", "127.0.0.1:5353").unwrap();
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        server.join().unwrap();
        att.detach();
        lab.assert_nothing_left_of(&c);
        lab.teardown();
    });
}

#[test]
fn containers_on_a_user_network_find_each_other_by_name() {
    in_world(|| {
        let lab = Lab::new("10.77.5.0/24");
        let mut nl = Netlink::open().unwrap();
        let network = lab.create_network("backend", "10.77.6.0/24");
        let (a, b) = (id(6), id(7));
        let att_a = lab
            .attach(&a, "db", NetworkMode::Bridge("backend".into()), &[])
            .unwrap();
        let att_b = lab
            .attach(&b, "app", NetworkMode::Bridge("backend".into()), &[])
            .unwrap();
        let hosts_a =
            std::fs::read_to_string(lab.roots.containers().join(&a).join("hosts")).unwrap();
        assert!(
            hosts_a.contains("10.77.6.3\t"),
            "the later peer was added to the earlier one: {hosts_a}"
        );
        assert!(hosts_a.contains(" app app-alias\n"), "{hosts_a}");
        let hosts_b =
            std::fs::read_to_string(lab.roots.containers().join(&b).join("hosts")).unwrap();
        assert!(hosts_b.contains("10.77.6.2\t"), "{hosts_b}");
        assert!(hosts_b.contains(" db db-alias\n"), "{hosts_b}");
        // And really reach each other over the network's bridge.
        let server = serve_tcp(&netns_of(&att_a), 5432, 1);
        let answer = netns_of(&att_b)
            .enter(|| fetch("10.77.6.2:5432".parse().unwrap()))
            .unwrap();
        assert!(answer.starts_with("hello 10.77.6.3:"), "{answer}");
        server.join().unwrap();

        att_b.detach();
        let hosts_a =
            std::fs::read_to_string(lab.roots.containers().join(&a).join("hosts")).unwrap();
        assert!(
            !hosts_a.contains("10.77.6.3"),
            "a departed peer is removed: {hosts_a}"
        );
        lab.assert_nothing_left_of(&b);
        att_a.detach();
        lab.assert_nothing_left_of(&a);
        let bridge_index = nl.link_index(&network.bridge).unwrap().unwrap();
        assert_eq!(
            nl.ports_of(bridge_index).unwrap(),
            Vec::<String>::new(),
            "no veth on the bridge"
        );
        lab.teardown();
    });
}

/// Whether a TCP connection to `addr` is made within two seconds (a
/// dropped SYN shows as a timeout).
fn connects(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

fn nft(args: &[&str]) {
    let out = std::process::Command::new("nft")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn networks_are_isolated_from_each_other_but_published_ports_are_not() {
    in_world(|| {
        let lab = Lab::new("10.77.9.0/24");
        let back = lab.create_network("back", "10.77.10.0/24");
        let (front, server, peer) = (id(20), id(21), id(22));
        let att_front = lab
            .attach(&front, "front", NetworkMode::Bridge("bridge".into()), &[])
            .unwrap();
        let att_server = lab
            .attach(
                &server,
                "db",
                NetworkMode::Bridge("back".into()),
                &["8090:5432"],
            )
            .unwrap();
        let att_peer = lab
            .attach(&peer, "app", NetworkMode::Bridge("back".into()), &[])
            .unwrap();
        // Forwarding is on (the default), so without isolation the world
        // would route between the two bridges.
        assert_eq!(bridge::read_sysctl("net/ipv4/ip_forward").unwrap(), "1");
        let db: SocketAddr = "10.77.10.2:5432".parse().unwrap();
        let answers = serve_tcp(&netns_of(&att_server), 5432, 3);

        // Its own network reaches it.
        let same = netns_of(&att_peer).enter(|| fetch(db)).unwrap();
        assert!(same.starts_with("hello 10.77.10.3:"), "{same}");
        // Another network does not, by address...
        let across = netns_of(&att_front).enter(|| connects(db)).unwrap();
        assert!(!across, "a container on another network reached {db}");
        // ...but does through the published port, at its own gateway.
        let published = netns_of(&att_front)
            .enter(|| fetch("10.77.9.1:8090".parse().unwrap()))
            .unwrap();
        assert!(published.starts_with("hello 10.77.10.1:"), "{published}");

        // The drop is the isolate chain's: an older table without it routes
        // between the networks, and ensure_table gives it back.
        let table = lab.firewall().table().to_string();
        nft(&["delete", "chain", "ip", &table, "isolate"]);
        nft(&["delete", "set", "ip", &table, "bridge_pairs"]);
        let without = netns_of(&att_front).enter(|| fetch(db)).unwrap();
        assert!(without.starts_with("hello 10.77.9.2:"), "{without}");
        lab.firewall().ensure_table().unwrap();
        let again = netns_of(&att_front).enter(|| connects(db)).unwrap();
        assert!(!again, "isolation is back after ensure_table");
        answers.join().unwrap();

        for (att, c) in [
            (att_front, &front),
            (att_server, &server),
            (att_peer, &peer),
        ] {
            att.detach();
            lab.assert_nothing_left_of(c);
        }
        // Removing a network takes its pair out of the set.
        let pairs = || {
            let out = std::process::Command::new("nft")
                .args(["list", "set", "ip", &table, "bridge_pairs"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(pairs().contains(&back.bridge), "{}", pairs());
        bridge::remove_bridge(&mut Netlink::open().unwrap(), &back, &lab.firewall()).unwrap();
        assert!(!pairs().contains(&back.bridge), "{}", pairs());
        assert!(pairs().contains("bt-world0"), "{}", pairs());
        lab.teardown();
    });
}

#[test]
fn network_none_has_only_a_working_loopback() {
    in_world(|| {
        let lab = Lab::new("10.77.7.0/24");
        let c = id(8);
        let att = lab.attach(&c, "alone", NetworkMode::None, &[]).unwrap();
        let netns = netns_of(&att);
        let server = serve_tcp(&netns, 7000, 1);
        let answer = netns
            .enter(|| fetch("127.0.0.1:7000".parse().unwrap()))
            .unwrap();
        assert!(answer.starts_with("hello 127.0.0.1:"), "{answer}");
        server.join().unwrap();
        let links = netns
            .enter(|| {
                let mut nl = Netlink::open().unwrap();
                (nl.link_index("lo").unwrap(), nl.link_index("eth0").unwrap())
            })
            .unwrap();
        assert_eq!(links, (Some(1), None));
        att.detach();
        assert!(
            !lab.firewall().exists().unwrap(),
            "no table for a container without a network"
        );
    });
}

#[test]
fn cleanup_after_a_crash_removes_what_the_kernel_keeps() {
    in_world(|| {
        let lab = Lab::new("10.77.8.0/24");
        let c = id(9);
        let att = lab
            .attach(
                &c,
                "crashy",
                NetworkMode::Bridge("bridge".into()),
                &["7070:70"],
            )
            .unwrap();
        let settings = att.settings.clone();
        // The monitor "dies": its fds close (namespace, reserved ports), but
        // nothing is detached.
        att.abandon();
        endpoint::cleanup_after_crash(&lab.roots, &lab.options, &c, &settings);
        lab.assert_nothing_left_of(&c);
        assert!(lab.firewall().port_elements().unwrap().is_empty());
        // Idempotent.
        endpoint::cleanup_after_crash(&lab.roots, &lab.options, &c, &settings);
        lab.teardown();
    });
}

#[test]
fn a_subnet_the_host_routes_elsewhere_is_refused() {
    in_world(|| {
        let lab = Lab::new("10.77.9.0/24");
        let mut nl = Netlink::open().unwrap();
        nl.create_bridge("bt-other").unwrap();
        let other = nl.link_index("bt-other").unwrap().unwrap();
        nl.add_address(other, "10.77.9.1".parse().unwrap(), 25)
            .unwrap();
        nl.set_up(other).unwrap();
        let err = lab
            .attach(&id(10), "x", NetworkMode::Bridge("bridge".into()), &[])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("overlaps the host's route to 10.77.9.0/25"),
            "{err}"
        );
        assert_eq!(
            nl.link_index("bt-world0").unwrap(),
            None,
            "no half-made bridge"
        );
        nl.delete_link("bt-other").unwrap();
    });
}

#[test]
fn a_stale_element_of_a_crashed_container_is_replaced_not_reused() {
    in_world(|| {
        let lab = Lab::new("10.77.10.0/24");
        let (a, b) = (id(11), id(12));
        let crashed = lab
            .attach(
                &a,
                "old",
                NetworkMode::Bridge("bridge".into()),
                &["6060:60"],
            )
            .unwrap();
        let stale = crashed.settings.clone();
        crashed.abandon_keeping_rules();
        // The port is free again (the dead monitor's socket closed); a new
        // container publishes it before anyone cleaned up after the crash.
        let fresh = lab
            .attach(
                &b,
                "new",
                NetworkMode::Bridge("bridge".into()),
                &["6060:60"],
            )
            .unwrap();
        let new_ip = fresh.settings.endpoint.as_ref().unwrap().ip.to_string();
        let elements = lab.firewall().port_elements().unwrap();
        assert_eq!(elements.len(), 1, "{elements:?}");
        assert!(
            elements[0].2.to_string().contains(&new_ip),
            "points at the new container: {elements:?}"
        );
        // The late cleanup of the crashed container leaves the new element alone.
        endpoint::cleanup_after_crash(&lab.roots, &lab.options, &a, &stale);
        assert_eq!(lab.firewall().port_elements().unwrap().len(), 1);
        fresh.detach();
        lab.assert_nothing_left_of(&a);
        lab.assert_nothing_left_of(&b);
        assert!(lab.firewall().port_elements().unwrap().is_empty());
        lab.teardown();
    });
}

#[test]
fn a_bridge_made_by_someone_else_is_not_shared() {
    in_world(|| {
        let lab = Lab::new("10.77.11.0/24");
        let mut nl = Netlink::open().unwrap();
        nl.create_bridge("bt-world0").unwrap();
        let err = lab.store().default_network().unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert!(
            err.to_string().contains("BERTH_BRIDGE"),
            "says what to do: {err}"
        );
        nl.delete_link("bt-world0").unwrap();
        lab.store().default_network().unwrap();
    });
}

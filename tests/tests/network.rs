//! End-to-end tests of container networking (issue 5): published ports,
//! user networks with name resolution, UDP, port conflicts, the
//! `none`/`host`/`container:` modes, the user-space proxy, the cleanup after
//! a killed monitor, and the notebook server of our first user.
//!
//! Every test runs in its own root with its own bridge name and /24 (so it
//! runs next to a developer's berth0), with `BERTH_IP_FORWARD=0` (nothing can
//! be routed off the machine), sends traffic only to loopback, to the host's
//! own address and to the test bridge, and checks at the end that no veth,
//! DNAT element, address allocation or mount is left. Its guard removes
//! containers, networks, the bridge and the nftables table even when the
//! test fails.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_tests::{describe, fixture, require_root, TestRoot};
use serde_json::Value;

/// A test root with busybox loaded and a bridge and subnet of its own.
struct Net {
    root: TestRoot,
    bridge: String,
    subnet: String,
    /// `10.x.y` of the default network's /24.
    prefix: String,
    extra_env: Vec<(String, String)>,
    networks: std::cell::RefCell<Vec<String>>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The host's IPv4 routes, to pick test subnets nobody uses.
fn routed_prefixes() -> String {
    let out = Command::new("ip")
        .args(["-4", "route"])
        .output()
        .expect("ip route");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A /24 of 10.223.0.0/16 (or `second`) no route of the host covers.
fn free_prefix(second: u8) -> String {
    let routes = routed_prefixes();
    let start = (std::process::id() * 7) % 250;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let third = (start + n) % 250 + 1;
        let prefix = format!("10.{second}.{third}");
        if !routes.contains(&format!("{prefix}.")) {
            return prefix;
        }
        assert!(n < 500, "no free test subnet in 10.{second}.0.0/16");
    }
}

impl Net {
    fn new() -> Net {
        Self::with_env(&[])
    }

    fn with_env(env: &[(&str, &str)]) -> Net {
        require_root();
        let prefix = free_prefix(223);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let net = Net {
            root: TestRoot::new(),
            bridge: format!("bt{:05x}{:02x}", std::process::id() & 0xfffff, n & 0xff),
            subnet: format!("{prefix}.0/24"),
            prefix,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            networks: Default::default(),
        };
        let archive = fixture("busybox/docker-archive.tar");
        net.ok(&["load", "-i", archive.to_str().unwrap()]);
        net
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.root.berth(args);
        cmd.env("BERTH_BRIDGE", &self.bridge)
            .env("BERTH_SUBNET", &self.subnet)
            .env("BERTH_IP_FORWARD", "0")
            .env("BERTH_NETWORK_POOL", "10.224.0.0/16");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn berth")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "berth {args:?}: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn detached(&self, args: &[&str]) -> String {
        let mut full = vec!["run", "-d"];
        full.extend_from_slice(args);
        let id = self.ok(&full).trim().to_string();
        assert_eq!(id.len(), 64, "{id}");
        id
    }

    fn inspect(&self, name: &str) -> Value {
        let text = self.ok(&["inspect", name]);
        let list: Value = serde_json::from_str(&text).unwrap();
        list[0].clone()
    }

    fn create_network(&self, name: &str, subnet: &str) {
        self.ok(&["network", "create", "--subnet", subnet, name]);
        self.networks.borrow_mut().push(name.to_string());
    }

    /// The nftables table of this root.
    fn table(&self) -> String {
        let text = self.ok(&["network", "inspect", "bridge"]);
        let list: Value = serde_json::from_str(&text).unwrap();
        list[0]["Options"]["berth.nftables.table"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The host port published for `private` (`80/tcp`).
    fn host_port(&self, container: &str, private: &str) -> u16 {
        let line = self.ok(&["port", container, private]);
        let first = line.lines().next().unwrap_or_default();
        first
            .rsplit(':')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("port: {line:?}"))
    }

    /// Every element of the port maps of our table, as text.
    fn dnat_elements(&self) -> Vec<String> {
        let table = self.table();
        let out = Command::new("nft")
            .args(["-j", "list", "table", "ip", &table])
            .output()
            .unwrap();
        if !out.status.success() {
            return Vec::new();
        }
        let state: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut all = Vec::new();
        for item in state["nftables"].as_array().unwrap() {
            if let Some(map) = item.get("map") {
                if map["name"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("hostports")
                {
                    for elem in map["elem"].as_array().cloned().unwrap_or_default() {
                        all.push(elem.to_string());
                    }
                }
            }
        }
        all
    }

    /// Links plugged into `bridge`.
    fn ports_of(bridge: &str) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-j", "link", "show", "master", bridge])
            .output()
            .unwrap();
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
        list.as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|i| i["ifname"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn link_exists(name: &str) -> bool {
        Command::new("ip")
            .args(["link", "show", name])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Addresses still allocated in any network of this root.
    fn allocations(&self) -> Vec<String> {
        let mut held = Vec::new();
        let dir = self.root.root().join("networks");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path().join("endpoints.json")) {
                let book: Value = serde_json::from_str(&text).unwrap();
                held.extend(book["endpoints"].as_object().unwrap().keys().cloned());
            }
        }
        held
    }

    /// After every container is removed: nothing of theirs is left.
    fn assert_clean(&self, ids: &[&str]) {
        for id in ids {
            let veth = format!("vb{}", &id[..12]);
            assert!(!Net::link_exists(&veth), "veth {veth} left");
        }
        assert_eq!(
            Net::ports_of(&self.bridge),
            Vec::<String>::new(),
            "links left on the bridge"
        );
        assert_eq!(
            self.dnat_elements(),
            Vec::<String>::new(),
            "DNAT elements left"
        );
        assert_eq!(
            self.allocations(),
            Vec::<String>::new(),
            "addresses left allocated"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.root.path().to_string_lossy().into_owned();
        assert!(!mounts.contains(&root), "mounts left under the test root");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let out = self.run(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.run(&["rm", "-f", "-v", id]);
        }
        for name in self.networks.borrow().iter() {
            let _ = self.run(&["network", "rm", name]);
        }
        let table = self.table_quietly();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        if let Some(table) = table {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", &table])
                .output();
        }
    }
}

impl Net {
    fn table_quietly(&self) -> Option<String> {
        let out = self.run(&["network", "inspect", "bridge"]);
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        list[0]["Options"]["berth.nftables.table"]
            .as_str()
            .map(String::from)
    }
}

/// The first IPv4 address of the host that is not loopback (the host's own
/// address, as a user would curl it).
fn host_address() -> Option<Ipv4Addr> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let word = line
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)?;
            word.split('/').next()?.parse().ok()
        })
}

/// GET `path` over HTTP/1.0; the body, or the error.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(text))
}

/// A port nothing listens on right now (the kernel's choice).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts on `addr` (the server inside the container
/// starts a moment after `run -d` returns): retries on "refused" only,
/// bounded, and each try is a real connection attempt.
fn wait_for_listener(addr: SocketAddr) {
    for _ in 0..200 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(25))
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    }
    panic!("nothing listens on {addr}");
}

#[test]
fn httpd_serves_a_read_only_host_directory_through_published_ports() {
    let net = Net::new();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello through the bridge\n").unwrap();
    let port = free_port();
    let publish_all = format!("{port}:80");
    let volume = format!("{}:/www:ro", www.path().display());
    let id = net.detached(&[
        "--name",
        "web",
        "-p",
        &publish_all,
        "-p",
        "127.0.0.1::80",
        "-v",
        &volume,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);

    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_listener(loopback);
    assert_eq!(
        http_get(loopback, "/index.html").unwrap(),
        "hello through the bridge\n"
    );
    if let Some(host) = host_address() {
        let addr = SocketAddr::new(host.into(), port);
        assert_eq!(
            http_get(addr, "/index.html").unwrap(),
            "hello through the bridge\n",
            "on {host}"
        );
    }
    // The container's own address, straight over the bridge.
    let info = net.inspect("web");
    let ip: Ipv4Addr = info["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ip.to_string().starts_with(&format!("{}.", net.prefix)),
        "{ip} in {}",
        net.subnet
    );
    assert_eq!(
        http_get(SocketAddr::new(ip.into(), 80), "/index.html").unwrap(),
        "hello through the bridge\n"
    );
    // The loopback-only publication answers on 127.0.0.1 only.
    let random = net.host_port("web", "80/tcp");
    let lines = net.ok(&["port", "web"]);
    assert!(
        lines.contains(&format!("80/tcp -> 0.0.0.0:{port}")),
        "{lines}"
    );
    let loopback_only = lines
        .lines()
        .find_map(|l| l.strip_prefix("80/tcp -> 127.0.0.1:"))
        .expect("the 127.0.0.1 publication")
        .trim()
        .parse::<u16>()
        .unwrap();
    assert!(random == port || random == loopback_only);
    assert_eq!(
        http_get(
            SocketAddr::from(([127, 0, 0, 1], loopback_only)),
            "/index.html"
        )
        .unwrap(),
        "hello through the bridge\n"
    );
    if let Some(host) = host_address() {
        let refused = http_get(SocketAddr::new(host.into(), loopback_only), "/");
        assert!(refused.is_err(), "a 127.0.0.1 publication is not on {host}");
    }
    // ps shows the ports, inspect the binding.
    let ps = net.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    assert!(
        ps.contains(&format!("127.0.0.1:{loopback_only}->80/tcp")),
        "{ps}"
    );
    assert_eq!(
        info["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    assert_eq!(info["Mounts"][0]["RW"], false);
    // Read-only means read-only.
    let write = net.run(&["exec", "web", "sh", "-c", "echo x > /www/new"]);
    assert!(!write.status.success());
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "{}",
        describe(&write)
    );
    assert!(!www.path().join("new").exists());

    net.ok(&["rm", "-f", "web"]);
    assert!(http_get(loopback, "/").is_err(), "unpublished after rm");
    net.assert_clean(&[&id]);
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name() {
    let net = Net::new();
    let subnet = format!("{}.0/24", free_prefix(225));
    net.create_network("backend", &subnet);
    let listed = net.ok(&["network", "ls"]);
    for name in ["backend", "bridge", "host", "none"] {
        assert!(listed.contains(name), "{listed}");
    }
    let web = net.detached(&[
        "--network",
        "backend",
        "--name",
        "web",
        "--network-alias",
        "www",
        "busybox",
        "sh",
        "-c",
        "echo served by name > /index.html; exec httpd -f -p 80 -h /",
    ]);
    let ip: Ipv4Addr = net.inspect("web")["NetworkSettings"]["Networks"]["backend"]["IPAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_for_listener(SocketAddr::new(ip.into(), 80));
    // A container started later finds the earlier one by name and alias...
    for host in ["web", "www"] {
        let url = format!("http://{host}/index.html");
        let out = net.ok(&[
            "run",
            "--rm",
            "--network",
            "backend",
            "--name",
            "client",
            "busybox",
            "wget",
            "-qO-",
            &url,
        ]);
        assert_eq!(out, "served by name\n");
    }
    // ...and the earlier one was told about a later one.
    let db = net.detached(&[
        "--network",
        "backend",
        "--name",
        "db",
        "busybox",
        "sleep",
        "1000",
    ]);
    let hosts = net.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(hosts.contains(" db\n") || hosts.contains(" db "), "{hosts}");
    let ping = net.run(&["exec", "web", "ping", "-c", "1", "-W", "2", "db"]);
    assert!(ping.status.success(), "{}", describe(&ping));
    // The default bridge offers no name resolution (as docker's): its
    // containers' /etc/hosts list no peers. (Checked in the file: a lookup
    // of a missing name would ask the host's DNS server, off this machine.)
    let hosts = net.ok(&["run", "--rm", "busybox", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("web") && !hosts.contains("www"), "{hosts}");
    // A network in use cannot be removed.
    let refused = net.run(&["network", "rm", "backend"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("has active endpoints"),
        "{}",
        describe(&refused)
    );
    let info: Value = serde_json::from_str(&net.ok(&["network", "inspect", "backend"])).unwrap();
    let bridge = info[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(info[0]["Containers"].as_object().unwrap().len(), 2);

    net.ok(&["rm", "-f", "web", "db"]);
    net.ok(&["network", "rm", "backend"]);
    net.networks.borrow_mut().clear();
    assert!(!Net::link_exists(&bridge), "the network's bridge is gone");
    net.assert_clean(&[&web, &db]);
}

#[test]
fn udp_ports_are_published() {
    let net = Net::new();
    let debian = fixture("debian/docker-archive.tar");
    net.ok(&["load", "-i", debian.to_str().unwrap()]);
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let publish = format!("127.0.0.1:{port}:5353/udp");
    let echo = r#"use IO::Socket::INET; $| = 1; my $s = IO::Socket::INET->new(LocalPort => 5353, Proto => "udp") or die "$!"; print "ready\n"; while ($s->recv(my $m, 1024)) { $s->send("echo:$m") }"#;
    let id = net.detached(&[
        "--name",
        "echo",
        "-u",
        "root",
        "-p",
        &publish,
        "debian:bookworm",
        "perl",
        "-e",
        echo,
    ]);
    // Wait for the server's "ready" line in its log (an event, not a guess).
    for _ in 0..200 {
        if net.ok(&["logs", "echo"]).contains("ready") {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 64];
    let n = client
        .recv(&mut buf)
        .expect("an answer through the published UDP port");
    assert_eq!(&buf[..n], b"echo:ping");
    assert!(net
        .ok(&["ps"])
        .contains(&format!("127.0.0.1:{port}->5353/udp")));
    net.ok(&["rm", "-f", "echo"]);
    net.assert_clean(&[&id]);
}

#[test]
fn a_port_in_use_is_a_clear_error_and_leaves_nothing_behind() {
    let net = Net::new();
    // Taken by another program on the host.
    let holder = TcpListener::bind("0.0.0.0:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let publish = format!("{taken}:80");
    let out = net.run(&[
        "run", "-d", "--name", "late", "-p", &publish, "busybox", "httpd", "-f", "-p", "80",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Bind for 0.0.0.0:{taken} failed: port is already allocated"
        )),
        "{stderr}"
    );
    let late = net.inspect("late");
    assert_eq!(late["State"]["Status"], "created");
    drop(holder);
    // Taken by another container.
    let port = free_port();
    let publish = format!("{port}:80");
    let first = net.detached(&[
        "--name", "first", "-p", &publish, "busybox", "httpd", "-f", "-p", "80",
    ]);
    let out = net.run(&[
        "run", "-d", "--name", "second", "-p", &publish, "busybox", "httpd", "-f", "-p", "80",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("port is already allocated"));
    let second = net.inspect("second")["Id"].as_str().unwrap().to_string();
    assert!(
        !Net::link_exists(&format!("vb{}", &second[..12])),
        "no veth for the loser"
    );
    assert_eq!(
        net.dnat_elements().len(),
        1,
        "only the first container's port"
    );
    assert_eq!(
        net.allocations().len(),
        1,
        "only the first container's address"
    );
    net.ok(&["rm", "-f", "first", "second", "late"]);
    net.assert_clean(&[&first, &second, late["Id"].as_str().unwrap()]);
}

#[test]
fn none_host_and_container_network_modes() {
    let net = Net::new();
    let links = net.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-works",
    ]);
    assert_eq!(links, "lo\nlo-works\n", "only a working loopback");
    let host_links = net.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    // The host's own interfaces are there (links of other tests come and
    // go meanwhile, so only stable ones are compared: lo and the device of
    // the host's default route).
    let theirs: BTreeSet<String> = host_links.split_whitespace().map(String::from).collect();
    let route = Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    let mut expected = vec!["lo".to_string()];
    expected.extend(
        route
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .map(String::from),
    );
    for link in &expected {
        assert!(theirs.contains(link), "{link} in {theirs:?}");
    }
    let hostname = net.ok(&["run", "--rm", "--network", "host", "busybox", "hostname"]);
    assert_eq!(
        hostname.trim(),
        nix::unistd::gethostname().unwrap().to_string_lossy()
    );
    // container:NAME shares the namespace: localhost is the other container.
    let web = net.detached(&[
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo shared > /index.html; exec httpd -f -p 80 -h /",
    ]);
    let out = net.ok(&["run", "--rm", "--network", "container:web", "busybox", "sh", "-c",
        "for i in $(seq 100); do wget -qO- http://127.0.0.1/index.html 2>/dev/null && exit 0; sleep 0.05; done; exit 1"]);
    assert_eq!(out, "shared\n");
    let conflict = net.run(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "-p",
        "80",
        "busybox",
        "true",
    ]);
    assert_eq!(conflict.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("conflicting options"));
    let missing = net.run(&["run", "--rm", "--network", "nonet", "busybox", "true"]);
    assert_eq!(missing.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("network nonet not found"),
        "{}",
        describe(&missing)
    );
    net.ok(&["rm", "-f", "web"]);
    net.assert_clean(&[&web]);
}

#[test]
fn the_userland_proxy_serves_loopback_and_goes_with_the_container() {
    let net = Net::with_env(&[("BERTH_USERLAND_PROXY", "1")]);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = net.detached(&[
        "--name",
        "web",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "echo proxied > /index.html; exec httpd -f -p 80 -h /",
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // The proxy accepts at once; the answer comes once httpd listens.
    let mut body = String::new();
    for _ in 0..200 {
        match http_get(addr, "/index.html") {
            Ok(text) if !text.is_empty() => {
                body = text;
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(25)),
        }
    }
    assert_eq!(body, "proxied\n");
    assert_eq!(
        net.dnat_elements(),
        Vec::<String>::new(),
        "a proxied publication has no DNAT element"
    );
    let route_localnet = std::fs::read_to_string(format!(
        "/proc/sys/net/ipv4/conf/{}/route_localnet",
        net.bridge
    ))
    .unwrap();
    assert_eq!(
        route_localnet.trim(),
        "0",
        "proxy mode leaves route_localnet off"
    );
    net.ok(&["rm", "-f", "web"]);
    TcpListener::bind(addr).expect("the proxy released the port");
    net.assert_clean(&[&id]);
}

#[test]
fn after_a_killed_monitor_the_next_command_cleans_up() {
    let net = Net::new();
    let port = free_port();
    let publish = format!("{port}:80");
    let id = net.detached(&[
        "--name", "web", "-p", &publish, "busybox", "httpd", "-f", "-p", "80",
    ]);
    assert_eq!(net.dnat_elements().len(), 1);
    let info = net.inspect("web");
    let monitor = info["State"]["MonitorPid"].as_i64().unwrap() as i32;
    let pid = info["State"]["Pid"].as_i64().unwrap() as i32;
    assert!(monitor > 0 && pid > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    // Wait (bounded) until both are gone from /proc.
    for _ in 0..400 {
        let gone = |p: i32| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        };
        if gone(monitor) && gone(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Any command that looks at the container reconciles it.
    let ps = net.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (255)"), "{ps}");
    assert_eq!(
        net.dnat_elements(),
        Vec::<String>::new(),
        "DNAT elements removed by reconcile"
    );
    assert_eq!(
        net.allocations(),
        Vec::<String>::new(),
        "address released by reconcile"
    );
    assert!(!Net::link_exists(&format!("vb{}", &id[..12])));
    // And the port can be published again.
    let again = net.detached(&[
        "--name", "again", "-p", &publish, "busybox", "httpd", "-f", "-p", "80",
    ]);
    net.ok(&["rm", "-f", "web", "again"]);
    net.assert_clean(&[&id, &again]);
}

#[test]
fn published_all_exposed_ports_with_capital_p() {
    let net = Net::new();
    let debian = fixture("debian/docker-archive.tar");
    net.ok(&["load", "-i", debian.to_str().unwrap()]);
    let id = net.detached(&[
        "--name",
        "exposed",
        "-P",
        "debian:bookworm",
        "sleep",
        "1000",
    ]);
    let lines = net.ok(&["port", "exposed"]);
    assert!(lines.contains("8080/tcp -> 0.0.0.0:"), "{lines}");
    assert!(lines.contains("5353/udp -> 0.0.0.0:"), "{lines}");
    net.ok(&["rm", "-f", "exposed"]);
    net.assert_clean(&[&id]);
}

/// Our first user's case: a Python notebook server publishing a read-only
/// host directory on 127.0.0.1, fetched with curl, stopped gracefully.
#[test]
fn the_notebook_server_case() {
    let net = Net::new();
    let python = fixture("debian-python/docker-archive.tar");
    net.ok(&["load", "-i", python.to_str().unwrap()]);
    let work = tempfile::tempdir().unwrap();
    let notebooks = work.path().join("notebooks");
    std::fs::create_dir(&notebooks).unwrap();
    let notebook = r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
    std::fs::write(notebooks.join("analysis.ipynb"), notebook).unwrap();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8000");
    let volume = format!("{}:/srv/notebooks:ro", notebooks.display());
    let id = net.detached(&[
        "--name",
        "notebook",
        "-p",
        &publish,
        "-v",
        &volume,
        "debian-python:bookworm",
        "python3",
        "-m",
        "http.server",
        "8000",
        "--directory",
        "/srv/notebooks",
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_listener(addr);
    let url = format!("http://127.0.0.1:{port}/analysis.ipynb");
    let curl = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", &url])
        .output();
    let body = match curl {
        Ok(out) => {
            assert!(out.status.success(), "curl: {}", describe(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        Err(_) => http_get(addr, "/analysis.ipynb").unwrap(), // no curl on this machine
    };
    assert_eq!(body, notebook);
    // Graceful stop: python's default SIGTERM handling ends it at once
    // (the image's STOPSIGNAL is SIGINT, which raises KeyboardInterrupt).
    let started = std::time::Instant::now();
    net.ok(&["stop", "notebook"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stopped before the kill timeout"
    );
    let state = net.inspect("notebook");
    assert_eq!(state["State"]["Status"], "exited");
    assert_ne!(state["State"]["ExitCode"], 137, "not killed");
    assert!(http_get(addr, "/").is_err(), "unpublished after stop");
    net.ok(&["rm", "notebook"]);
    net.assert_clean(&[&id]);
}

#[test]
fn a_stopped_containers_port_is_free_at_once_and_start_publishes_it_again() {
    let net = Net::new();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let script = "echo $HOSTNAME > /index.html; trap 'exit 0' TERM; httpd -f -p 80 -h / & wait";
    let first = net.detached(&[
        "--name", "first", "-p", &publish, "busybox", "sh", "-c", script,
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_listener(addr);
    net.ok(&["stop", "first"]);
    // No wait: `stop` returned, so the port is free.
    let second = net.detached(&[
        "--name", "second", "-p", &publish, "busybox", "sh", "-c", script,
    ]);
    wait_for_listener(addr);
    assert_eq!(http_get(addr, "/index.html").unwrap().trim(), &second[..12]);
    net.ok(&["stop", "second"]);
    net.ok(&["start", "first"]);
    wait_for_listener(addr);
    assert_eq!(
        http_get(addr, "/index.html").unwrap().trim(),
        &first[..12],
        "start publishes again"
    );
    assert_eq!(
        net.ok(&["port", "first"]),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    net.ok(&["rm", "-f", "first", "second"]);
    net.assert_clean(&[&first, &second]);
}

#[test]
fn an_ipv6_host_address_is_served_by_the_proxy() {
    let net = Net::new();
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("this host has no IPv6 loopback; nothing to test");
        return;
    }
    let port = free_port();
    let publish = format!("[::1]:{port}:80");
    let id = net.detached(&[
        "--name",
        "web6",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "echo over v6 > /index.html; exec httpd -f -p 80 -h /",
    ]);
    let addr: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mut body = String::new();
    for _ in 0..200 {
        match http_get(addr, "/index.html") {
            Ok(text) if !text.is_empty() => {
                body = text;
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(25)),
        }
    }
    assert_eq!(
        body, "over v6\n",
        "an IPv6 connection reaches the IPv4 container"
    );
    assert!(net.ok(&["ps"]).contains(&format!("[::1]:{port}->80/tcp")));
    assert_eq!(
        net.dnat_elements(),
        Vec::<String>::new(),
        "no DNAT for an IPv6 publication"
    );
    net.ok(&["rm", "-f", "web6"]);
    TcpListener::bind(addr).expect("the proxy released the port");
    net.assert_clean(&[&id]);
}

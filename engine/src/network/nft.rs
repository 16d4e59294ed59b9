//! NAT and port publishing with nftables: one berth table per `--root`.
//!
//! Mechanism: the `nft` command, which turns its input into one nf_tables
//! netlink transaction: all of it applies or none. The table is written
//! once (in nft's own language, `nft -f -`), with fixed rules that look
//! things up in sets and maps; per network and per container berth only adds
//! and deletes *elements*, by key (no rule handles to remember), as JSON
//! batches (`nft -j -f -`, libnftables-json(5)) built with serde_json, and
//! reads the table back as JSON (`nft -j list table`):
//!
//! ```text
//! table ip berth {
//!   set bridges  { type ifname }                     # berth's bridges
//!   set bridge_pairs { type ifname . ifname }        # "B . B" for each bridge B
//!   set subnets  { type ipv4_addr; flags interval }  # their subnets
//!   map hostports_ip       { ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//!   map hostports_any      { inet_proto . inet_service : ipv4_addr . inet_service }
//!   map hostports_external { inet_proto . inet_service : ipv4_addr . inet_service }
//!   chain prerouting  { nat hook prerouting: fib daddr type local jump publish }
//!   chain output      { nat hook output:     fib daddr type local jump publish }
//!   chain publish     { dnat to the container by host ip . proto . port, or by proto . port }
//!   chain postrouting { nat hook postrouting:
//!       ip saddr @subnets oifname != @bridges masquerade     # containers -> outside
//!       oifname @bridges ip saddr 127.0.0.0/8 masquerade      # 127.0.0.1:PORT -> container
//!       oifname @bridges ct status dnat ip saddr @subnets masquerade }  # hairpin
//!   chain guard { filter hook prerouting priority raw:
//!       iifname @bridges ip daddr 127.0.0.0/8 drop }          # see route_localnet
//!   chain isolate { filter hook forward:
//!       ct status dnat accept                                 # published ports
//!       iifname @bridges oifname @bridges iifname . oifname != @bridge_pairs drop }
//! }
//! ```
//!
//! `isolate` keeps networks apart, as docker's DOCKER-ISOLATION chains do: a
//! packet routed from one berth bridge to *another* is dropped, so a
//! container reaches only the containers of its own networks by address.
//! Published ports stay reachable from every network (the connection was
//! DNATed: its publisher opened it to everyone). Traffic within one bridge
//! is switched, not routed; with br_netfilter loaded it does pass the
//! forward hook, as `B . B`, which the pair set lets through.
//!
//! Why nft and not iptables: one table holds everything berth does, so
//! `nft list table ip berth` shows it and `nft delete table ip berth` undoes
//! it; sets and maps make a container's rules plain elements; and on current
//! distributions `iptables` is itself `iptables-nft`, a front end to the
//! same kernel API. Why the `nft` binary rather than a netlink library: the
//! JSON schema is nft's stable, documented interface (netavark's nftables
//! driver takes the same road), and there is no maintained pure-Rust
//! nf_tables crate to rely on. It costs one process spawn (about 4 ms) per
//! container start *with published ports*; a start without `-p` runs no nft.
//!
//! Publishing to 127.0.0.1 by DNAT needs `route_localnet` on the *bridge*
//! (the kernel otherwise drops a packet with a loopback source routed out of
//! a real interface); berth sets it on its bridges only, never host-wide,
//! and the `guard` chain drops anything arriving *from* a bridge for
//! 127.0.0.0/8, so containers cannot reach the host's loopback services
//! through it (the hole CVE-2020-8558 describes). With
//! `BERTH_USERLAND_PROXY=1` loopback publishes go through the user-space
//! proxy instead (see [`super::proxy`]) and `hostports_external` skips 127/8.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::ports::Protocol;
use super::subnet::Subnet;
use crate::paths::{Roots, DEFAULT_ROOT};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables' `nft` command is needed for NAT and port publishing but could not be run ({0}): install the nftables package")]
    Missing(std::io::Error),
    #[error("nft: {what}: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("nft: {what}: unreadable output: {message}")]
    BadOutput { what: String, message: String },
}

type Result<T> = std::result::Result<T, NftError>;

/// Which wildcard map a container port goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every local address, loopback included (kernel DNAT for everything).
    AllLocal,
    /// Every local address but 127.0.0.0/8 (the proxy serves loopback).
    External,
}

/// The forward-hook chain that keeps networks apart (see the module doc).
const ISOLATE_CHAIN: &str = r#"    chain isolate {
        type filter hook forward priority filter; policy accept;
        ct status dnat accept
        iifname @bridges oifname @bridges iifname . oifname != @bridge_pairs drop
    }
"#;

/// One published port as nftables sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// A specific host address, or None for every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub reach: Reach,
    pub protocol: Protocol,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

impl PortRule {
    fn map(&self) -> &'static str {
        match (self.host_ip, self.reach) {
            (Some(_), _) => "hostports_ip",
            (None, Reach::AllLocal) => "hostports_any",
            (None, Reach::External) => "hostports_external",
        }
    }

    fn key(&self) -> Value {
        match self.host_ip {
            Some(ip) => {
                json!({"concat": [ip.to_string(), self.protocol.as_str(), self.host_port]})
            }
            None => json!({"concat": [self.protocol.as_str(), self.host_port]}),
        }
    }

    fn value(&self) -> Value {
        json!({"concat": [self.container_ip.to_string(), self.container_port]})
    }
}

/// The berth table of one `--root`.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
}

impl Firewall {
    /// `berth` for the default root; `berth_<hash>` for any other, so that
    /// test roots (and a second installation) never touch each other's rules.
    pub fn for_root(roots: &Roots) -> Firewall {
        let table = if roots.root == std::path::Path::new(DEFAULT_ROOT) {
            "berth".to_string()
        } else {
            let digest = Sha256::digest(roots.root.as_os_str().as_encoded_bytes());
            format!("berth_{}", &hex::encode(digest)[..10])
        };
        Firewall { table }
    }

    /// A firewall on an explicitly named table (tests).
    pub fn named(table: &str) -> Firewall {
        Firewall {
            table: table.to_string(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Whether the table exists.
    pub fn exists(&self) -> Result<bool> {
        match run_nft_args(&["list", "table", "ip", &self.table]) {
            Ok(_) => Ok(true),
            Err(NftError::Failed { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Create the table with its chains, sets and rules unless it exists.
    /// Callers hold the network lock, so two berth commands never both create it.
    pub fn ensure_table(&self) -> Result<()> {
        if self.exists()? {
            return self.add_isolation_if_missing(&self.list()?);
        }
        tracing::debug!(table = %self.table, "creating the nftables table");
        run_nft_stdin("create table", &["-f", "-"], &self.table_definition())
    }

    /// `nft delete table ip NAME`; a missing table is fine.
    pub fn delete_table(&self) -> Result<()> {
        if !self.exists()? {
            return Ok(());
        }
        run_nft_args(&["delete", "table", "ip", &self.table]).map(drop)
    }

    /// The table in nft's own language: the same text a learner reads in
    /// `nft list table ip berth`. (Written as text rather than JSON because
    /// nft 1.0.6, Debian 12's, crashes parsing a JSON `dnat` whose address
    /// comes from a concatenated map.)
    fn table_definition(&self) -> String {
        format!(
            r#"table ip {t} {{
    set bridges {{ type ifname; }}
    set bridge_pairs {{ type ifname . ifname; }}
    set subnets {{ type ipv4_addr; flags interval; }}
    map hostports_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
    map hostports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
    map hostports_external {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
    chain publish {{
        dnat ip to ip daddr . meta l4proto . th dport map @hostports_ip
        dnat ip to meta l4proto . th dport map @hostports_any
        ip daddr != 127.0.0.0/8 dnat ip to meta l4proto . th dport map @hostports_external
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local jump publish
    }}
    chain output {{
        type nat hook output priority -100; policy accept;
        fib daddr type local jump publish
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr @subnets oifname != @bridges masquerade
        oifname @bridges ip saddr 127.0.0.0/8 masquerade
        oifname @bridges ct status dnat ip saddr @subnets masquerade
    }}
    chain guard {{
        type filter hook prerouting priority raw; policy accept;
        iifname @bridges ip daddr 127.0.0.0/8 drop
    }}
{isolate}}}
"#,
            t = self.table,
            isolate = ISOLATE_CHAIN
        )
    }

    /// A table made by a berth from before network isolation has no
    /// `isolate` chain: add it, with the set it consults filled for the
    /// bridges already there (`nft -f` text with `add` commands).
    fn add_isolation_if_missing(&self, state: &Value) -> Result<()> {
        if objects(state, "chain", "isolate").is_some() {
            return Ok(());
        }
        let t = &self.table;
        let mut text = format!("add set ip {t} bridge_pairs {{ type ifname . ifname; }}\n");
        for bridge in set_elements(state, "bridges") {
            if let Some(b) = bridge.as_str() {
                text.push_str(&format!(
                    "add element ip {t} bridge_pairs {{ \"{b}\" . \"{b}\" }}\n"
                ));
            }
        }
        text.push_str(&format!("table ip {t} {{\n{ISOLATE_CHAIN}}}\n"));
        tracing::debug!(table = %t, "adding the network isolation chain to an older table");
        run_nft_stdin("add network isolation", &["-f", "-"], &text)
    }

    fn element(&self, verb: &str, set: &str, elem: Vec<Value>) -> Value {
        json!({verb: {"element": {"family": "ip", "table": self.table, "name": set, "elem": elem}}})
    }

    /// Add a network's bridge and subnet to the sets the rules consult.
    pub fn add_network(&self, bridge: &str, subnet: Subnet) -> Result<()> {
        self.ensure_table()?;
        let commands = json!({"nftables": [
            self.element("add", "bridges", vec![json!(bridge)]),
            self.element("add", "bridge_pairs", vec![pair_value(bridge)]),
            self.element("add", "subnets", vec![subnet_value(subnet)]),
        ]});
        run_nft_json(&format!("add network {bridge} {subnet}"), &commands)
    }

    /// Remove a network's elements (those still present).
    pub fn remove_network(&self, bridge: &str, subnet: Subnet) -> Result<()> {
        if !self.exists()? {
            return Ok(());
        }
        let state = self.list()?;
        let mut commands = Vec::new();
        if set_elements(&state, "bridges").contains(&json!(bridge)) {
            commands.push(self.element("delete", "bridges", vec![json!(bridge)]));
        }
        if set_elements(&state, "bridge_pairs").contains(&pair_value(bridge)) {
            commands.push(self.element("delete", "bridge_pairs", vec![pair_value(bridge)]));
        }
        if set_elements(&state, "subnets").contains(&subnet_value(subnet)) {
            commands.push(self.element("delete", "subnets", vec![subnet_value(subnet)]));
        }
        if commands.is_empty() {
            return Ok(());
        }
        run_nft_json(
            &format!("remove network {bridge} {subnet}"),
            &json!({ "nftables": commands }),
        )
    }

    /// Add the DNAT elements of a container's published ports, all or none.
    /// The caller holds the host ports (bound sockets), so an element that
    /// already has one of these keys is stale — left by a container whose
    /// monitor was killed — and is replaced.
    pub fn add_ports(&self, rules: &[PortRule]) -> Result<()> {
        if rules.is_empty() {
            return Ok(());
        }
        for r in rules {
            let host = r.host_ip.map(|ip| format!("{ip} . ")).unwrap_or_default();
            tracing::debug!(step = "nft", table = %self.table, map = r.map(),
                "nft add element ip {} {} {{ {host}{} . {} : {} . {} }}: DNAT of host port {} to {}:{}",
                self.table, r.map(), r.protocol.as_str(), r.host_port, r.container_ip, r.container_port,
                r.host_port, r.container_ip, r.container_port);
        }
        let add = || {
            let commands: Vec<Value> = rules
                .iter()
                .map(|r| self.element("add", r.map(), vec![json!([r.key(), r.value()])]))
                .collect();
            run_nft_json(
                &format!("publish {} port(s)", rules.len()),
                &json!({ "nftables": commands }),
            )
        };
        let Err(first) = add() else {
            return Ok(());
        };
        if !self.exists()? {
            // The table was deleted behind berth's back (`nft flush ruleset`).
            self.ensure_table()?;
            return add();
        }
        let state = self.list()?;
        let stale: Vec<Value> = rules
            .iter()
            .filter(|r| {
                map_elements(&state, r.map())
                    .iter()
                    .any(|(key, _)| *key == r.key())
            })
            .map(|r| self.element("delete", r.map(), vec![r.key()]))
            .collect();
        if stale.is_empty() {
            return Err(first);
        }
        tracing::debug!(count = stale.len(), "replacing stale DNAT elements");
        run_nft_json("remove stale DNAT elements", &json!({ "nftables": stale }))?;
        add()
    }

    /// Delete a container's DNAT elements, as their owner (the monitor that
    /// holds the ports): one nft call. If it fails, fall back to
    /// [`Firewall::remove_stale_ports`].
    pub fn remove_ports(&self, rules: &[PortRule]) -> Result<()> {
        if rules.is_empty() {
            return Ok(());
        }
        let commands: Vec<Value> = rules
            .iter()
            .map(|r| self.element("delete", r.map(), vec![r.key()]))
            .collect();
        match run_nft_json(
            &format!("unpublish {} port(s)", commands.len()),
            &json!({ "nftables": commands }),
        ) {
            Ok(()) => Ok(()),
            Err(_) => self.remove_stale_ports(rules),
        }
    }

    /// Delete those of `rules` whose element is still present *with the
    /// same target*: the cleanup after a crash must not remove the element
    /// of another container that has published the same port since.
    pub fn remove_stale_ports(&self, rules: &[PortRule]) -> Result<()> {
        if rules.is_empty() || !self.exists()? {
            return Ok(());
        }
        let state = self.list()?;
        let commands: Vec<Value> = rules
            .iter()
            .filter(|r| {
                map_elements(&state, r.map())
                    .iter()
                    .any(|(key, value)| *key == r.key() && *value == r.value())
            })
            .map(|r| self.element("delete", r.map(), vec![r.key()]))
            .collect();
        if commands.is_empty() {
            return Ok(());
        }
        run_nft_json(
            &format!("remove {} stale DNAT element(s)", commands.len()),
            &json!({ "nftables": commands }),
        )
    }

    /// The table as nft's JSON (`nft -j list table ip NAME`).
    pub fn list(&self) -> Result<Value> {
        let what = format!("list table {}", self.table);
        let out = run_nft_args(&["-j", "list", "table", "ip", &self.table])?;
        serde_json::from_str(&out).map_err(|e| NftError::BadOutput {
            what,
            message: e.to_string(),
        })
    }

    /// Every element of every port map: (map, key, value), for `inspect`
    /// and for the tests' leak checks.
    pub fn port_elements(&self) -> Result<Vec<(String, Value, Value)>> {
        if !self.exists()? {
            return Ok(Vec::new());
        }
        let state = self.list()?;
        let mut all = Vec::new();
        for map in ["hostports_ip", "hostports_any", "hostports_external"] {
            for (key, value) in map_elements(&state, map) {
                all.push((map.to_string(), key, value));
            }
        }
        Ok(all)
    }
}

/// The `bridge . bridge` element: traffic within one network.
fn pair_value(bridge: &str) -> Value {
    json!({"concat": [bridge, bridge]})
}

fn subnet_value(subnet: Subnet) -> Value {
    json!({"prefix": {"addr": subnet.network().to_string(), "len": subnet.prefix()}})
}

/// The elements of set `name` in a `list table` answer.
fn set_elements(state: &Value, name: &str) -> Vec<Value> {
    objects(state, "set", name)
        .and_then(|s| s.get("elem").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// The (key, value) pairs of map `name` in a `list table` answer.
fn map_elements(state: &Value, name: &str) -> Vec<(Value, Value)> {
    objects(state, "map", name)
        .and_then(|m| m.get("elem").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pair| {
            let pair = pair.as_array()?;
            Some((pair.first()?.clone(), pair.get(1)?.clone()))
        })
        .collect()
}

fn objects<'a>(state: &'a Value, kind: &str, name: &str) -> Option<&'a Value> {
    state
        .get("nftables")?
        .as_array()?
        .iter()
        .filter_map(|item| item.get(kind))
        .find(|obj| obj.get("name").and_then(Value::as_str) == Some(name))
}

/// The nft binary: `$BERTH_NFT`, else `nft` on PATH, else /usr/sbin/nft.
fn nft_command() -> Command {
    if let Some(path) = std::env::var_os("BERTH_NFT") {
        return Command::new(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("nft").is_file()))
        .unwrap_or(false);
    Command::new(if on_path { "nft" } else { "/usr/sbin/nft" })
}

fn run_nft_args(args: &[&str]) -> Result<String> {
    let what = args.join(" ");
    tracing::trace!(command = %what, "nft");
    let out = nft_command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(NftError::Missing)?;
    if !out.status.success() {
        return Err(NftError::Failed {
            what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Apply a JSON batch (`{"nftables": [...]}`) as one transaction.
fn run_nft_json(what: &str, commands: &Value) -> Result<()> {
    tracing::debug!(what, commands = %commands, "nft -j -f -");
    run_nft_stdin(what, &["-j", "-f", "-"], &commands.to_string())
}

/// Run nft with `args`, feeding it `text` on stdin.
fn run_nft_stdin(what: &str, args: &[&str], text: &str) -> Result<()> {
    let mut child = nft_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Missing)?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(NftError::Missing)?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = format!("nft failed without a message ({})", out.status);
        }
        return Err(NftError::Failed {
            what: what.to_string(),
            stderr,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_root_has_its_own_table() {
        let default = Firewall::for_root(&Roots::new(DEFAULT_ROOT, "/run/berth"));
        assert_eq!(default.table(), "berth");
        let a = Firewall::for_root(&Roots::new("/tmp/a/root", "/tmp/a/state"));
        let b = Firewall::for_root(&Roots::new("/tmp/b/root", "/tmp/b/state"));
        assert!(a.table().starts_with("berth_") && a.table().len() == 16);
        assert_ne!(a.table(), b.table());
    }

    #[test]
    fn port_rules_pick_their_map_and_key() {
        let mut rule = PortRule {
            host_ip: None,
            reach: Reach::AllLocal,
            protocol: Protocol::Tcp,
            host_port: 8080,
            container_ip: "10.89.0.2".parse().unwrap(),
            container_port: 80,
        };
        assert_eq!(rule.map(), "hostports_any");
        assert_eq!(rule.key(), json!({"concat": ["tcp", 8080]}));
        assert_eq!(rule.value(), json!({"concat": ["10.89.0.2", 80]}));
        rule.reach = Reach::External;
        assert_eq!(rule.map(), "hostports_external");
        rule.host_ip = Some(Ipv4Addr::LOCALHOST);
        rule.protocol = Protocol::Udp;
        assert_eq!(rule.map(), "hostports_ip");
        assert_eq!(rule.key(), json!({"concat": ["127.0.0.1", "udp", 8080]}));
    }

    #[test]
    fn elements_are_read_back_from_nfts_json() {
        let state = json!({"nftables": [
            {"metainfo": {}},
            {"set": {"name": "bridges", "elem": ["berth0"]}},
            {"map": {"name": "hostports_any", "elem": [[{"concat": ["tcp", 8888]}, {"concat": ["10.1.0.2", 80]}]]}},
        ]});
        assert_eq!(set_elements(&state, "bridges"), vec![json!("berth0")]);
        assert_eq!(set_elements(&state, "subnets"), Vec::<Value>::new());
        let pairs = map_elements(&state, "hostports_any");
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0, json!({"concat": ["tcp", 8888]}));
    }
}

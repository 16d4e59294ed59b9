//! `berth network create|ls|inspect|rm|prune`, `berth port`, and the
//! `NetworkSettings` of `berth inspect CONTAINER`, with docker's output.

use std::collections::BTreeMap;

use anyhow::bail;
use berth_engine::container::{lifecycle, ContainerRecord};
use berth_engine::network::manage::{create_network, prune_networks, remove_network};
use berth_engine::network::nft::Firewall;
use berth_engine::network::{NetworkOptions, NetworkRecord, NetworkStore, PortSpec, Protocol};
use chrono::SecondsFormat;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::run_flags::parse_labels;
use super::Context;
use crate::format::table;

/// `berth network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network on which containers find each other by name
    #[command(
        after_help = "Example:\n  berth network create --subnet 10.90.7.0/24 backend\n  berth run -d --network backend --name db busybox httpd -f\n  berth run --rm --network backend busybox wget -qO- http://db/"
    )]
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list", after_help = "Example:\n  berth network ls")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    #[command(after_help = "Example:\n  berth network inspect -f '{{json .IPAM}}' bridge")]
    Inspect(InspectArgs),
    /// Remove one or more networks (refused while a container is attached)
    #[command(
        visible_alias = "remove",
        after_help = "Example:\n  berth network rm backend"
    )]
    Rm(RmArgs),
    /// Remove all networks no container is attached to
    #[command(after_help = "Example:\n  berth network prune -f")]
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Subnet in CIDR format (a free /24 of BERTH_NETWORK_POOL when omitted).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Driver to manage the network (only "bridge").
    #[arg(short = 'd', long = "driver", default_value = "bridge")]
    pub driver: String,
    /// Set metadata on a network (KEY=VALUE).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display network IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output: json or a template ('{{.Name}}').
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format the output using a template.
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NETWORK")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true, value_name = "NETWORK")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`
#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// A container port (`80` or `80/tcp`): print only its host addresses.
    pub private_port: Option<String>,
}

pub fn run(command: NetworkCommand, ctx: &Context) -> anyhow::Result<u8> {
    let options = NetworkOptions::from_env()?;
    match command {
        NetworkCommand::Create(args) => {
            if args.driver != "bridge" {
                bail!(
                    "network driver {:?} is not available: berth has only \"bridge\"",
                    args.driver
                );
            }
            let subnet = args
                .subnet
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let network = create_network(
                &ctx.roots,
                &options,
                &args.name,
                subnet,
                parse_labels(&args.labels)?,
            )?;
            println!("{}", network.id);
            Ok(0)
        }
        NetworkCommand::Ls(args) => list(ctx, &options, args),
        NetworkCommand::Inspect(args) => inspect(ctx, &options, args),
        NetworkCommand::Rm(args) => {
            let mut failed = false;
            for name in &args.names {
                match remove_network(&ctx.roots, &options, name) {
                    Ok(_) => println!("{name}"),
                    Err(err) => {
                        eprintln!("berth: {err}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        NetworkCommand::Prune(args) => {
            if !args.force {
                eprint!("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(0);
                }
            }
            let removed = prune_networks(&ctx.roots, &options)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for name in removed {
                    println!("{name}");
                }
            }
            Ok(0)
        }
    }
}

/// One row of `network ls`: a record, or one of the pseudo-networks.
struct Listed {
    id: String,
    name: String,
    driver: &'static str,
}

/// The driver docker shows for the pseudo-networks.
fn pseudo_driver(name: &str) -> Option<&'static str> {
    match name {
        "host" => Some("host"),
        "none" => Some("null"),
        _ => None,
    }
}

/// `host` and `none` have no record; their ids are fixed: the name in hex,
/// padded to 64 digits.
fn pseudo_id(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0<64}")
}

fn list(ctx: &Context, options: &NetworkOptions, args: LsArgs) -> anyhow::Result<u8> {
    let store = NetworkStore::open(&ctx.roots, options)?;
    store.default_network()?;
    let mut rows: Vec<Listed> = store
        .list()?
        .into_iter()
        .map(|n| Listed {
            id: n.id,
            name: n.name,
            driver: "bridge",
        })
        .collect();
    rows.push(Listed {
        id: pseudo_id("host"),
        name: "host".into(),
        driver: "host",
    });
    rows.push(Listed {
        id: pseudo_id("none"),
        name: "none".into(),
        driver: "null",
    });
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let id_of = |r: &Listed| {
        if args.no_trunc {
            r.id.clone()
        } else {
            r.id[..12].to_string()
        }
    };
    if args.quiet {
        for r in &rows {
            println!("{}", id_of(r));
        }
        return Ok(0);
    }
    match args.format.as_deref() {
        Some(format) => {
            for r in &rows {
                let data =
                    json!({"ID": id_of(r), "Name": r.name, "Driver": r.driver, "Scope": "local"});
                if format == "json" {
                    println!("{data}");
                } else {
                    println!("{}", crate::template::render(format, &data)?);
                }
            }
        }
        None => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        id_of(r),
                        r.name.clone(),
                        r.driver.to_string(),
                        "local".into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &cells)
            );
        }
    }
    Ok(0)
}

fn network_json(ctx: &Context, store: &NetworkStore, network: &NetworkRecord) -> Value {
    let mut containers = Map::new();
    for (ip, holder) in store.ipam(network).endpoints().unwrap_or_default() {
        containers.insert(
            holder.container_id.clone(),
            json!({
                "Name": holder.name,
                "MacAddress": berth_engine::network::endpoint::mac_for(ip)
                    .iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
                "IPv4Address": format!("{ip}/{}", network.subnet.prefix()),
                "IPv6Address": "",
            }),
        );
    }
    json!({
        "Name": network.name,
        "Id": network.id,
        "Created": network.created.to_rfc3339_opts(SecondsFormat::Nanos, true),
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{"Subnet": network.subnet.to_string(), "Gateway": network.gateway.to_string()}],
        },
        "Internal": false,
        "Attachable": false,
        "Containers": containers,
        "Options": {
            "com.docker.network.bridge.name": network.bridge,
            // berth's additions: where its NAT and DNAT elements live, and
            // whether members find each other by name (/etc/hosts entries).
            "berth.nftables.table": Firewall::for_root(&ctx.roots).table(),
            "berth.name_resolution": network.name_resolution.to_string(),
        },
        "Labels": network.labels,
    })
}

fn inspect(ctx: &Context, options: &NetworkOptions, args: InspectArgs) -> anyhow::Result<u8> {
    let store = NetworkStore::open(&ctx.roots, options)?;
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.names {
        if let Some(driver) = pseudo_driver(name) {
            found.push(json!({
                "Name": name, "Id": pseudo_id(name), "Scope": "local", "Driver": driver,
                "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": {}, "Config": []},
                "Internal": false, "Attachable": false, "Containers": {}, "Options": {}, "Labels": {},
            }));
            continue;
        }
        match store.find(name) {
            Ok(network) => found.push(network_json(ctx, &store, &network)),
            Err(err) => {
                eprintln!("berth: {err}");
                failed = true;
            }
        }
    }
    match &args.format {
        Some(template) => {
            for network in &found {
                println!("{}", crate::template::render(template, network)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(found))?),
    }
    Ok(if failed { 1 } else { 0 })
}

/// `berth port`: `80/tcp -> 0.0.0.0:8080`, one line per host binding.
pub fn port(args: PortArgs, ctx: &Context) -> anyhow::Result<u8> {
    let record = lifecycle::find(&ctx.roots, &args.container)?;
    let wanted = match &args.private_port {
        Some(text) => {
            let (port, proto) = text.split_once('/').unwrap_or((text.as_str(), "tcp"));
            let port: u16 = port
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid port {text:?}: use PORT or PORT/PROTO"))?;
            let proto: Protocol = proto.parse().map_err(anyhow::Error::msg)?;
            Some((port, proto))
        }
        None => None,
    };
    let mut ports = record.state.network.ports.clone();
    ports.sort_by_key(|p| (p.container_port, p.protocol, p.host_port));
    let mut printed = false;
    for p in ports {
        let host = match p.host_ip {
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", p.host_port),
            std::net::IpAddr::V4(ip) => format!("{ip}:{}", p.host_port),
        };
        match wanted {
            Some((port, proto)) if (p.container_port, p.protocol) == (port, proto) => {
                println!("{host}")
            }
            Some(_) => continue,
            None => println!("{}/{} -> {host}", p.container_port, p.protocol.as_str()),
        }
        printed = true;
    }
    if !printed {
        if let Some(text) = &args.private_port {
            bail!("No public port '{text}' published for {}", args.container);
        }
    }
    Ok(0)
}

fn bindings_json(bindings: &[PortSpec]) -> Value {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for b in bindings {
        let host_port = match (b.host_port_start, b.host_port_end) {
            (0, _) => String::new(),
            (a, z) if a == z => a.to_string(),
            (a, z) => format!("{a}-{z}"),
        };
        map.entry(b.container_key()).or_default().push(json!({
            "HostIp": b.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            "HostPort": host_port,
        }));
    }
    json!(map)
}

/// `HostConfig.PortBindings` of `inspect CONTAINER`.
pub fn port_bindings_json(record: &ContainerRecord) -> Value {
    bindings_json(&record.host.port_bindings)
}

/// The `NetworkSettings` of `inspect CONTAINER`, in docker's shape.
pub fn network_settings_json(record: &ContainerRecord) -> Value {
    let settings = &record.state.network;
    let mut ports = Map::new();
    for exposed in &record.config.exposed_ports {
        ports.insert(exposed.clone(), Value::Null);
    }
    for p in &settings.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let entry = json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()});
        match ports.get_mut(&key) {
            Some(Value::Array(list)) => list.push(entry),
            _ => {
                ports.insert(key, json!([entry]));
            }
        }
    }
    let mut networks = Map::new();
    let (mut ip, mut prefix, mut gateway, mut mac) =
        (String::new(), 0, String::new(), String::new());
    if let Some(e) = &settings.endpoint {
        ip = e.ip.to_string();
        prefix = e.prefix_len;
        gateway = e.gateway.to_string();
        mac = e.mac.clone();
        networks.insert(
            e.network.clone(),
            json!({
                "Aliases": e.aliases,
                "NetworkID": e.network_id,
                "Gateway": gateway,
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "MacAddress": mac,
            }),
        );
    }
    json!({
        "Bridge": settings.endpoint.as_ref().map(|e| e.bridge.clone()).unwrap_or_default(),
        "SandboxKey": settings.sandbox_key,
        "Ports": ports,
        "Gateway": gateway,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "MacAddress": mac,
        "Networks": networks,
    })
}

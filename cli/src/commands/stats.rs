//! `berth stats`: a live table of the running containers' resource use,
//! docker's columns (CPU %, MEM USAGE / LIMIT, MEM %, NET I/O, BLOCK I/O,
//! PIDS). The counters come from the kernel through
//! `berth_engine::container::stats`; a CPU percentage is the CPU time used
//! between two samples a second apart. `--no-stream` prints one table
//! (after that second); otherwise the table is redrawn every second until
//! interrupted, with the containers running at that moment.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use berth_engine::container::lifecycle;
use berth_engine::container::record::ContainerRecord;
use berth_engine::container::stats::{self, Sample};
use clap::Args;
use serde_json::{json, Value};

use super::Context;

/// Time between the two samples a CPU percentage is taken from.
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: table, json, or a template such as '{{.Name}} {{.CPUPerc}}'
    #[arg(long)]
    format: Option<String>,
    #[arg(value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn run(args: StatsArgs, ctx: &Context) -> anyhow::Result<u8> {
    // The previous sample of each container, by id; the list of containers
    // is read again at every tick, so a container started (or restarted)
    // meanwhile shows up with its new process.
    let mut before: HashMap<String, Sample> = samples(&chosen(&args, ctx)?);
    let tty = std::io::stdout().is_terminal();
    loop {
        std::thread::sleep(INTERVAL);
        let records = chosen(&args, ctx)?;
        let now = samples(&records);
        let rows: Vec<Value> = records
            .iter()
            .map(|r| row(r, before.get(&r.id), now.get(&r.id), args.no_trunc))
            .collect();
        let mut out = std::io::stdout().lock();
        if tty && !args.no_stream {
            write!(out, "\x1b[2J\x1b[H")?; // clear the screen, cursor home
        }
        print_rows(&mut out, &rows, args.format.as_deref())?;
        out.flush()?;
        if args.no_stream {
            return Ok(0);
        }
        before = now;
    }
}

fn samples(records: &[ContainerRecord]) -> HashMap<String, Sample> {
    records
        .iter()
        .filter_map(|r| Some((r.id.clone(), stats::sample(r)?)))
        .collect()
}

/// The containers named, else the running ones (all with `-a`).
fn chosen(args: &StatsArgs, ctx: &Context) -> anyhow::Result<Vec<ContainerRecord>> {
    if !args.containers.is_empty() {
        let mut records = Vec::new();
        for name in &args.containers {
            records.push(lifecycle::find(&ctx.roots, name)?);
        }
        return Ok(records);
    }
    let mut records: Vec<ContainerRecord> = lifecycle::list(&ctx.roots)?
        .into_iter()
        .filter(|r| args.all || r.state.status.is_active())
        .collect();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(records)
}

/// One row, its fields named as docker's `--format` names them.
fn row(
    record: &ContainerRecord,
    before: Option<&Sample>,
    now: Option<&Sample>,
    no_trunc: bool,
) -> Value {
    let id = if no_trunc {
        record.id.clone()
    } else {
        record.id[..12].to_string()
    };
    let pair = |a: u64, b: u64, size: fn(u64) -> String| format!("{} / {}", size(a), size(b));
    let (cpu, mem_usage, mem_perc, net, block, pids) = match (before, now) {
        // A container first seen in this sample has no CPU percentage yet.
        (b, Some(n)) => (
            format!("{:.2}%", b.map_or(0.0, |b| n.cpu_percent_since(b))),
            pair(n.memory_used, n.memory_limit, crate::format::binary_size),
            format!("{:.2}%", n.memory_percent()),
            pair(n.net_rx, n.net_tx, crate::format::human_size),
            pair(n.block_read, n.block_write, crate::format::human_size),
            n.pids.to_string(),
        ),
        _ => (
            "0.00%".into(),
            "0B / 0B".into(),
            "0.00%".into(),
            "0B / 0B".into(),
            "0B / 0B".into(),
            "0".into(),
        ),
    };
    json!({
        "Container": id,
        "ID": id,
        "Name": record.name,
        "CPUPerc": cpu,
        "MemUsage": mem_usage,
        "MemPerc": mem_perc,
        "NetIO": net,
        "BlockIO": block,
        "PIDs": pids,
    })
}

fn print_rows(out: &mut impl Write, rows: &[Value], format: Option<&str>) -> anyhow::Result<()> {
    let field = |row: &Value, k: &str| row[k].as_str().unwrap_or_default().to_string();
    match format.unwrap_or("table") {
        "json" => {
            for row in rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
        }
        "table" => {
            let header = [
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS",
            ];
            let keys = [
                "ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs",
            ];
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| keys.iter().map(|k| field(r, k)).collect())
                .collect();
            write!(out, "{}", crate::format::table(&header, &cells))?;
        }
        template => {
            let template = template.strip_prefix("table ").unwrap_or(template);
            for row in rows {
                writeln!(out, "{}", crate::template::render(template, row)?)?;
            }
        }
    }
    Ok(())
}

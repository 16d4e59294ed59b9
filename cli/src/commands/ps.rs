//! `berth ps`: docker's columns (CONTAINER ID, IMAGE, COMMAND, CREATED,
//! STATUS, PORTS, NAMES), filters, and `--format json|TEMPLATE`.

use std::collections::BTreeMap;

use anyhow::bail;
use berth_engine::container::lifecycle;
use berth_engine::container::{ContainerRecord, Status};
use chrono::Utc;
use clap::Args;
use serde_json::json;

use crate::commands::Context;
use crate::format::{ago, ellipsis, human_duration, table};
use crate::template::render;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long = "last", allow_hyphen_values = true)]
    pub last: Option<i64>,
    /// Show the latest created container (includes all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Display total file sizes.
    #[arg(short, long)]
    pub size: bool,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided (status=, name=, label=, ancestor=, id=).
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output: json, table, or a template like '{{.ID}} {{.Names}}'.
    #[arg(long)]
    pub format: Option<String>,
}

pub fn run(args: PsArgs, ctx: &Context) -> anyhow::Result<u8> {
    let filters = parse_filters(&args.filter)?;
    let mut records = lifecycle::list(&ctx.roots)?;
    let limit = if args.latest {
        Some(1)
    } else {
        args.last.filter(|n| *n > 0)
    };
    let show_all = args.all || limit.is_some() || filters.iter().any(|(k, _)| k == "status");
    records.retain(|r| show_all || r.state.status.is_active());
    records.retain(|r| filters.iter().all(|(key, value)| matches(r, key, value)));
    if let Some(n) = limit {
        records.truncate(n as usize);
    }
    let rows: Vec<Row> = records.iter().map(|r| Row::of(r, &args, ctx)).collect();
    let out = match args.format.as_deref() {
        _ if args.quiet => rows.iter().map(|r| format!("{}\n", r.id)).collect(),
        Some("json") | Some("{{json .}}") => {
            rows.iter().map(|r| format!("{}\n", r.to_json())).collect()
        }
        Some(template) if !template.is_empty() && template != "table" => {
            let (header, body) = match template.strip_prefix("table ") {
                Some(body) => (true, body),
                None => (false, template),
            };
            let mut out = String::new();
            if header {
                out.push_str(&render(body, &Row::headers())?);
                out.push('\n');
            }
            for row in &rows {
                out.push_str(&render(body, &row.to_json())?);
                out.push('\n');
            }
            out
        }
        _ => render_table(&rows, args.size),
    };
    print!("{out}");
    Ok(0)
}

/// One container as ps shows it.
struct Row {
    id: String,
    image: String,
    command: String,
    created: String,
    created_at: String,
    status: String,
    state: &'static str,
    ports: String,
    names: String,
    size: String,
    labels: BTreeMap<String, String>,
    running_for: String,
}

impl Row {
    fn of(record: &ContainerRecord, args: &PsArgs, ctx: &Context) -> Row {
        let command = format!("\"{}\"", record.command_line());
        let id = if args.no_trunc {
            record.id.clone()
        } else {
            record.short_id().to_string()
        };
        Row {
            id,
            image: record.image.clone(),
            command: if args.no_trunc {
                command
            } else {
                ellipsis(&command, 20)
            },
            created: ago(record.created),
            created_at: record
                .created
                .format("%Y-%m-%d %H:%M:%S %z UTC")
                .to_string(),
            status: status_text(record),
            state: record.state.status.as_str(),
            ports: if record.state.status.is_active() {
                record
                    .state
                    .network
                    .ports_column(&record.config.exposed_ports)
            } else {
                String::new()
            },
            names: record.name.clone(),
            size: if args.size {
                size_text(record, ctx)
            } else {
                String::new()
            },
            labels: record.config.labels.clone(),
            running_for: human_duration(Utc::now() - record.created),
        }
    }

    /// The column titles docker prints for each field in `table` formats.
    fn headers() -> serde_json::Value {
        json!({
            "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
            "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Status": "STATUS",
            "State": "STATE", "Ports": "PORTS", "Names": "NAMES", "Size": "SIZE",
            "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
            "LocalVolumes": "LOCAL VOLUMES",
        })
    }

    fn fields(&self) -> BTreeMap<&'static str, String> {
        let labels = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        [
            ("ID", self.id.clone()),
            ("Image", self.image.clone()),
            ("Command", self.command.clone()),
            ("CreatedAt", self.created_at.clone()),
            ("RunningFor", self.created.clone()),
            ("Status", self.status.clone()),
            ("State", self.state.to_string()),
            ("Ports", self.ports.clone()),
            ("Names", self.names.clone()),
            ("Size", self.size.clone()),
            ("Labels", labels),
        ]
        .into_iter()
        .collect()
    }

    /// docker's `--format json` object (one per line).
    fn to_json(&self) -> serde_json::Value {
        let f = self.fields();
        json!({
            "Command": f["Command"], "CreatedAt": f["CreatedAt"], "ID": f["ID"],
            "Image": f["Image"], "Labels": f["Labels"], "LocalVolumes": "0",
            "Mounts": "", "Names": f["Names"], "Networks": "", "Ports": f["Ports"],
            "RunningFor": self.running_for.clone() + " ago", "Size": f["Size"],
            "State": f["State"], "Status": f["Status"],
        })
    }
}

fn render_table(rows: &[Row], with_size: bool) -> String {
    let mut headers = vec![
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    if with_size {
        headers.push("SIZE");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.id.clone(),
                r.image.clone(),
                r.command.clone(),
                r.created.clone(),
                r.status.clone(),
                r.ports.clone(),
                r.names.clone(),
            ];
            if with_size {
                row.push(r.size.clone());
            }
            row
        })
        .collect();
    table(&headers, &cells)
}

/// docker's STATUS column.
pub fn status_text(record: &ContainerRecord) -> String {
    let state = &record.state;
    let since =
        |t: Option<chrono::DateTime<Utc>>| human_duration(Utc::now() - t.unwrap_or(record.created));
    match state.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}{}", since(state.started_at), health_suffix(record)),
        Status::Paused => format!("Up {} (Paused)", since(state.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            state.exit_code,
            since(state.finished_at)
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            state.exit_code,
            since(state.finished_at)
        ),
        Status::Dead => "Dead".into(),
    }
}

/// docker's health note after "Up ...": ` (healthy)`, ` (unhealthy)`,
/// ` (health: starting)`; nothing without a healthcheck.
fn health_suffix(record: &ContainerRecord) -> String {
    use berth_engine::container::health::HealthStatus;
    match record.state.health.as_ref().map(|h| h.status) {
        Some(HealthStatus::Starting) => " (health: starting)".into(),
        Some(status) => format!(" ({})", status.as_str()),
        None => String::new(),
    }
}

/// SIZE: what the container wrote (its overlay upper dir), as docker shows it.
fn size_text(record: &ContainerRecord, ctx: &Context) -> String {
    let upper = ctx.roots.containers().join(&record.id).join("upper");
    crate::format::human_size(dir_size(&upper))
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

fn parse_filters(filters: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    filters
        .iter()
        .map(|f| {
            let Some((key, value)) = f.split_once('=') else {
                bail!("bad format of filter {f:?} (expected name=value)");
            };
            if !matches!(key, "status" | "name" | "label" | "ancestor" | "id") {
                bail!("invalid filter {key:?}: use status, name, label, ancestor or id");
            }
            if key == "status"
                && !matches!(
                    value,
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                )
            {
                bail!("invalid filter 'status={value}'");
            }
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

fn matches(record: &ContainerRecord, key: &str, value: &str) -> bool {
    match key {
        "status" => record.state.status.as_str() == value,
        "name" => record.name.contains(value),
        "id" => record.id.starts_with(value),
        "ancestor" => {
            let normal = |s: &str| s.strip_suffix(":latest").unwrap_or(s).to_string();
            normal(&record.image) == normal(value) || record.image_id.contains(value)
        }
        "label" => match value.split_once('=') {
            Some((k, v)) => record.config.labels.get(k).is_some_and(|have| have == v),
            None => record.config.labels.contains_key(value),
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_filters_and_statuses_are_refused() {
        assert!(parse_filters(&["status=running".into()]).is_ok());
        assert!(parse_filters(&["status=sleeping".into()]).is_err());
        assert!(parse_filters(&["color=red".into()]).is_err());
        assert!(parse_filters(&["name".into()]).is_err());
    }
}

//! Image commands: `load`, `save`, `images`, `tag`, `rmi`, and the `image`
//! group (`image ls|inspect|rm|tag|load|save`), with docker's flags, output
//! and exit status (1 when the command fails, like docker's image commands).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use berth_engine::image::inspect::docker_inspect;
use berth_engine::image::layout::TarSink;
use berth_engine::image::{Image, ImageStore, LoadSource, Reference, Removal, SaveFormat};
use berth_engine::progress::Progress;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::Context;

/// The image commands, flattened into berth's top-level command list.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load images from a tar archive or an OCI layout (docker save, OCI)
    #[command(after_help = "Example:\n  berth load -i busybox.tar\n  berth load < busybox.tar")]
    Load(LoadArgs),
    /// Save images to a tar archive (docker format by default)
    #[command(after_help = "Example:\n  berth save -o busybox.tar busybox:latest")]
    Save(SaveArgs),
    /// List images
    #[command(after_help = "Example:\n  berth images --format '{{.Repository}}:{{.Tag}}'")]
    Images(ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    #[command(after_help = "Example:\n  berth tag busybox:latest mybox:v1")]
    Tag(TagArgs),
    /// Remove one or more images
    #[command(after_help = "Example:\n  berth rmi busybox:latest")]
    Rmi(RmiArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageGroup),
}

/// `berth image ...`
#[derive(Debug, Subcommand)]
pub enum ImageGroup {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    #[command(after_help = "Example:\n  berth image inspect -f '{{.Config.Env}}' busybox")]
    Inspect(InspectArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Load images from a tar archive or an OCI layout
    Load(LoadArgs),
    /// Save images to a tar archive
    Save(SaveArgs),
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from a tar archive file (or an OCI layout directory), instead of STDIN
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ArchiveFormat {
    /// What docker save writes (also read by podman and skopeo)
    #[value(name = "docker-archive", alias = "docker")]
    DockerArchive,
    /// An OCI image layout in a tar, blobs as stored
    #[value(name = "oci-archive", alias = "oci")]
    OciArchive,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value = "docker-archive")]
    format: ArchiveFormat,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Show all images (berth keeps no intermediate images: same as default)
    #[arg(short, long)]
    all: bool,
    /// Format output: table, json, or a template such as '{{.Repository}}:{{.Tag}}'
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (and tag)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output with a template ('{{.Id}}', '{{json .Config}}') or 'json'
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Force removal of the image (untag it even while a container uses it)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

/// Run an image command; failures print one line and exit 1, as docker's do.
pub fn run(command: ImageCommand, ctx: &Context) -> anyhow::Result<u8> {
    let result = match command {
        ImageCommand::Load(args) | ImageCommand::Image(ImageGroup::Load(args)) => load(args, ctx),
        ImageCommand::Save(args) | ImageCommand::Image(ImageGroup::Save(args)) => save(args, ctx),
        ImageCommand::Images(args) | ImageCommand::Image(ImageGroup::Ls(args)) => images(args, ctx),
        ImageCommand::Tag(args) | ImageCommand::Image(ImageGroup::Tag(args)) => tag(args, ctx),
        ImageCommand::Rmi(args) | ImageCommand::Image(ImageGroup::Rm(args)) => rmi(args, ctx),
        ImageCommand::Image(ImageGroup::Inspect(args)) => inspect(args, ctx),
    };
    match result {
        Ok(status) => Ok(status),
        Err(err) => {
            eprintln!("berth: {err:#}");
            Ok(1)
        }
    }
}

fn open_store(ctx: &Context) -> anyhow::Result<ImageStore> {
    ImageStore::open(&ctx.roots)
        .with_context(|| format!("opening the image store in {}", ctx.roots.root.display()))
}

fn progress(quiet: bool) -> Progress {
    Progress::new(!quiet && io::stderr().is_terminal())
}

fn load(args: LoadArgs, ctx: &Context) -> anyhow::Result<u8> {
    let source = match args.input {
        Some(path) => LoadSource::Path(path),
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty: use -i FILE or redirect an archive");
            }
            LoadSource::Reader(Box::new(io::stdin()))
        }
    };
    let store = open_store(ctx)?;
    let loaded = store.load(source, &progress(args.quiet))?;
    if !args.quiet {
        let mut out = io::stdout().lock();
        for image in loaded {
            if image.tags.is_empty() {
                writeln!(out, "Loaded image ID: {}", image.id)?;
            }
            for tag in image.tags {
                writeln!(out, "Loaded image: {tag}")?;
            }
        }
    }
    Ok(0)
}

fn save(args: SaveArgs, ctx: &Context) -> anyhow::Result<u8> {
    let format = match args.format {
        ArchiveFormat::DockerArchive => SaveFormat::Docker,
        ArchiveFormat::OciArchive => SaveFormat::Oci,
    };
    let store = open_store(ctx)?;
    let items = store.save_items(&args.images)?;
    let progress = progress(false);
    match args.output {
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let out = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
            let sink = store.save(&items, format, TarSink::new(out), &progress)?;
            sink.finish()?.flush()?;
        }
        Some(path) if fs::metadata(&path).is_ok_and(|m| !m.is_file()) => {
            // A device or a pipe (`-o /dev/null`): written straight to it.
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let out = io::BufWriter::with_capacity(1 << 20, file);
            let sink = store.save(&items, format, TarSink::new(out), &progress)?;
            sink.finish()?.flush()?;
        }
        Some(path) => {
            // Written beside the target and renamed: never a half archive.
            let tmp = berth_engine::fsutil::temp_sibling(&path);
            let result = (|| -> anyhow::Result<()> {
                let file = fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                let out = io::BufWriter::with_capacity(1 << 20, file);
                let sink = store.save(&items, format, TarSink::new(out), &progress)?;
                let file = sink.finish()?.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
                Ok(())
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result?;
        }
    }
    Ok(0)
}

fn tag(args: TagArgs, ctx: &Context) -> anyhow::Result<u8> {
    open_store(ctx)?.tag(&args.source, &args.target)?;
    Ok(0)
}

fn rmi(args: RmiArgs, ctx: &Context) -> anyhow::Result<u8> {
    let store = open_store(ctx)?;
    let mut status = 0;
    for name in &args.images {
        match store.remove(name, args.force) {
            Ok(events) => {
                let mut out = io::stdout().lock();
                for event in events {
                    match event {
                        Removal::Untagged(tag) => writeln!(out, "Untagged: {tag}")?,
                        Removal::Deleted(id) => writeln!(out, "Deleted: {id}")?,
                    }
                }
            }
            Err(err) => {
                eprintln!("berth: {err}");
                status = 1;
            }
        }
    }
    Ok(status)
}

fn inspect(args: InspectArgs, ctx: &Context) -> anyhow::Result<u8> {
    let store = open_store(ctx)?;
    let mut found = Vec::new();
    let mut status = 0;
    for name in &args.images {
        match store.resolve(name) {
            Ok(image) => found.push(docker_inspect(&image)),
            Err(err) => {
                eprintln!("berth: {err}");
                status = 1;
            }
        }
    }
    let mut out = io::stdout().lock();
    match args.format.as_deref() {
        None | Some("json") => writeln!(out, "{}", pretty_json(&Value::Array(found))?)?,
        Some(template) => {
            for value in &found {
                writeln!(out, "{}", render_template(template, value)?)?;
            }
        }
    }
    Ok(status)
}

/// JSON indented with four spaces, as docker prints it.
fn pretty_json(value: &Value) -> anyhow::Result<String> {
    use serde::Serialize;
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8(buf)?)
}

// ---- berth images -----------------------------------------------------------

/// One row of `berth images`.
struct Row<'a> {
    image: &'a Image,
    repository: String,
    tag: String,
    digest: String,
}

fn images(args: ImagesArgs, ctx: &Context) -> anyhow::Result<u8> {
    let _ = args.all;
    let store = open_store(ctx)?;
    let mut all = store.list()?;
    all.sort_by(|a, b| {
        b.config
            .created_time()
            .cmp(&a.config.created_time())
            .then_with(|| a.repo_tags.cmp(&b.repo_tags))
    });
    let filter = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let mut rows = Vec::new();
    for image in &all {
        for (repository, tag) in names_of(image) {
            if let Some(filter) = &filter {
                let Ok(this) = Reference::parse(&format!("{repository}:{tag}")) else {
                    continue;
                };
                let tag_ok = filter.tag.as_deref().is_none_or(|t| t == tag);
                if this.repository() != filter.repository() || !tag_ok {
                    continue;
                }
            }
            let digest = image
                .repo_digests
                .iter()
                .find(|d| d.split_once('@').is_some_and(|(r, _)| r == repository))
                .and_then(|d| d.split_once('@'))
                .map_or_else(|| "<none>".to_string(), |(_, digest)| digest.to_string());
            rows.push(Row {
                image,
                repository,
                tag,
                digest,
            });
        }
    }
    let mut out = io::stdout().lock();
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            let id = if args.no_trunc {
                row.image.id.to_string()
            } else {
                row.image.short_id().to_string()
            };
            if seen.insert(id.clone()) {
                writeln!(out, "{id}")?;
            }
        }
        return Ok(0);
    }
    let format = args.format.as_deref().unwrap_or("table");
    if format == "json" {
        for row in &rows {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&row_json(row, args.no_trunc))?
            )?;
        }
        return Ok(0);
    }
    if format != "table" && !format.starts_with("table ") {
        for row in &rows {
            writeln!(
                out,
                "{}",
                render_template(format, &row_json(row, args.no_trunc))?
            )?;
        }
        return Ok(0);
    }
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    table.push(header.iter().map(|s| s.to_string()).collect());
    for row in &rows {
        let json = row_json(row, args.no_trunc);
        let field = |k: &str| json[k].as_str().unwrap_or_default().to_string();
        let mut cells = vec![field("Repository"), field("Tag")];
        if args.digests {
            cells.push(field("Digest"));
        }
        cells.extend([field("ID"), field("CreatedSince"), field("Size")]);
        table.push(cells);
    }
    write!(out, "{}", tabulate(&table))?;
    Ok(0)
}

/// (repository, tag) pairs of an image; `<none>` twice when untagged.
fn names_of(image: &Image) -> Vec<(String, String)> {
    if image.repo_tags.is_empty() {
        return vec![("<none>".to_string(), "<none>".to_string())];
    }
    image
        .repo_tags
        .iter()
        .map(|t| match t.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
            _ => (t.clone(), "<none>".to_string()),
        })
        .collect()
}

/// The fields of one row, named as docker's `--format` names them.
fn row_json(row: &Row<'_>, no_trunc: bool) -> Value {
    let image = row.image;
    let created = image.config.created_time();
    let id = if no_trunc {
        image.id.to_string()
    } else {
        image.short_id().to_string()
    };
    json!({
        "Containers": "N/A",
        "CreatedAt": created.map(|t| t.format("%Y-%m-%d %H:%M:%S %z %Z").to_string()).unwrap_or_default(),
        "CreatedSince": created.map(|t| format!("{} ago", human_duration(chrono::Utc::now() - t))).unwrap_or_else(|| "N/A".to_string()),
        "Digest": row.digest,
        "ID": id,
        "Repository": row.repository,
        "SharedSize": "N/A",
        "Size": human_size(image.size()),
        "Tag": row.tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size(image.size()),
    })
}

/// docker's `units.HumanDuration`: "Less than a second", "About a minute",
/// "3 hours", "2 weeks", "45 years".
pub(crate) fn human_duration(elapsed: chrono::TimeDelta) -> String {
    let seconds = elapsed.num_seconds();
    let minutes = elapsed.num_minutes();
    let hours = (elapsed.num_seconds() as f64 / 3600.0).round() as i64;
    match () {
        _ if seconds < 1 => "Less than a second".to_string(),
        _ if seconds == 1 => "1 second".to_string(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", elapsed.num_hours() / 24 / 365),
    }
}

/// docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, three
/// significant digits: "4.26MB", "124MB", "728kB".
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", three_significant(size), UNITS[unit])
}

/// `%.3g` for 0 <= x < 1000, trailing zeros dropped.
fn three_significant(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    let digits_before = (x.abs().log10().floor() as i32 + 1).max(1);
    let decimals = (3 - digits_before).max(0) as usize;
    let text = format!("{x:.decimals$}");
    let rounded: f64 = text.parse().unwrap_or(x);
    if rounded >= 1000.0 {
        return format!("{:.2e}", rounded).replace("e", "e+0");
    }
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Columns padded like Go's tabwriter in docker (min width 10, padding 3).
pub(crate) fn tabulate(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let widest = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0);
            (widest + 3).max(10)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A small subset of Go templates, enough for docker-style `--format`:
/// `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{json .A}}`, and `\t`/`\n`.
pub(crate) fn render_template(template: &str, value: &Value) -> anyhow::Result<String> {
    let template = template.strip_prefix("table ").unwrap_or(template);
    let template = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow!("template {template:?}: unclosed '{{{{'"))?;
        let action = after[..end].trim();
        let (as_json, path) = match action.strip_prefix("json ") {
            Some(path) => (true, path.trim()),
            None => (false, action),
        };
        let selected = select(value, path).ok_or_else(|| {
            anyhow!("template {template:?}: unsupported action {{{{{action}}}}} (berth supports {{{{.Field}}}} and {{{{json .Field}}}})")
        })?;
        if as_json {
            out.push_str(&serde_json::to_string(selected)?);
        } else {
            out.push_str(&go_print(selected));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn select<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path == "." {
        return Some(value);
    }
    let mut current = value;
    for key in path.strip_prefix('.')?.split('.') {
        current = current.get(key)?;
    }
    Some(current)
}

/// Print a value the way Go's text/template prints it.
fn go_print(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_print).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => {
            let sorted: BTreeMap<_, _> = map.iter().collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_print(v)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_550), "4.26MB");
        assert_eq!(human_size(124_000_000), "124MB");
        assert_eq!(human_size(728_000), "728kB");
        assert_eq!(human_size(1_230_000_000), "1.23GB");
        assert_eq!(human_size(10_500_000), "10.5MB");
    }

    #[test]
    fn durations_like_docker() {
        let d = chrono::TimeDelta::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(59)), "59 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(5 * 3600)), "5 hours");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
        assert_eq!(human_duration(d(21 * 86400)), "3 weeks");
        assert_eq!(human_duration(d(100 * 86400)), "3 months");
        assert_eq!(human_duration(d(3 * 365 * 86400)), "3 years");
    }

    #[test]
    fn tables_pad_like_tabwriter() {
        let rows = vec![
            vec![
                "REPOSITORY".to_string(),
                "TAG".to_string(),
                "SIZE".to_string(),
            ],
            vec![
                "busybox".to_string(),
                "latest".to_string(),
                "4.26MB".to_string(),
            ],
        ];
        assert_eq!(
            tabulate(&rows),
            "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n"
        );
    }

    #[test]
    fn templates() {
        let v = json!({"Id": "sha256:x", "Config": {"Env": ["A=1", "B=2"], "Labels": {"b": "2", "a": "1"}}});
        assert_eq!(render_template("{{.Id}}", &v).unwrap(), "sha256:x");
        assert_eq!(render_template("{{.Config.Env}}", &v).unwrap(), "[A=1 B=2]");
        assert_eq!(
            render_template("{{json .Config.Env}}", &v).unwrap(),
            r#"["A=1","B=2"]"#
        );
        assert_eq!(
            render_template("{{.Config.Labels}}", &v).unwrap(),
            "map[a:1 b:2]"
        );
        assert!(render_template("{{range .}}", &v).is_err());
    }
}

//! Image commands: `load`, `save`, `images`, `tag`, `rmi`, `history`, and
//! the `image` group (`image ls|inspect|rm|tag|load|save|history`), with
//! docker's flags, output and exit status (1 when the command fails, like
//! docker's image commands).

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
    /// Show the history of an image: its build steps and the layer each made
    #[command(
        after_help = "Example:\n  berth history busybox\n  berth history --no-trunc --format '{{.CreatedBy}}: {{.Size}}' busybox"
    )]
    History(HistoryArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageGroup),
}

/// `berth image ...`
#[derive(Debug, Subcommand)]
pub enum ImageGroup {
    /// List images
    #[command(visible_alias = "list", after_help = "Example:\n  berth image ls -q")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    #[command(after_help = "Example:\n  berth image inspect -f '{{.Config.Env}}' busybox")]
    Inspect(InspectArgs),
    /// Remove one or more images
    #[command(
        visible_alias = "remove",
        after_help = "Example:\n  berth image rm mybox:v1"
    )]
    Rm(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    #[command(after_help = "Example:\n  berth image tag busybox:latest mybox:v1")]
    Tag(TagArgs),
    /// Load images from a tar archive or an OCI layout
    #[command(after_help = "Example:\n  berth image load -i busybox.tar")]
    Load(LoadArgs),
    /// Save images to a tar archive
    #[command(after_help = "Example:\n  berth image save -o busybox.tar busybox:latest")]
    Save(SaveArgs),
    /// Show the history of an image
    #[command(after_help = "Example:\n  berth image history busybox")]
    History(HistoryArgs),
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
pub struct HistoryArgs {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Format output: table, json, or a template such as '{{.CreatedBy}}'
    #[arg(long)]
    format: Option<String>,
    #[arg(value_name = "IMAGE")]
    image: String,
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
        ImageCommand::History(args) | ImageCommand::Image(ImageGroup::History(args)) => {
            history(args, ctx)
        }
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
                writeln!(out, "{}", crate::template::render(template, value)?)?;
            }
        }
    }
    Ok(status)
}

/// `docker history`: newest step first; the image's id on the top line and
/// `<missing>` below it (berth keeps no intermediate images, like an image
/// pulled with docker); CREATED BY cut to 45 characters unless --no-trunc.
fn history(args: HistoryArgs, ctx: &Context) -> anyhow::Result<u8> {
    let store = open_store(ctx)?;
    let image = store.resolve(&args.image)?;
    let id = if args.no_trunc {
        image.id.to_string()
    } else {
        image.short_id().to_string()
    };
    let rows: Vec<Value> = image
        .history()
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let created_by = if args.no_trunc {
                step.created_by.clone()
            } else {
                crate::format::ellipsis(&step.created_by, 45)
            };
            let (created, size) = if args.human {
                (
                    step.created
                        .map_or_else(|| "N/A".to_string(), crate::format::ago),
                    crate::format::human_size(step.size),
                )
            } else {
                (
                    step.created.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    step.size.to_string(),
                )
            };
            json!({
                "ID": if i == 0 { id.clone() } else { "<missing>".to_string() },
                "CreatedAt": step.created.map(|t| t.to_rfc3339()).unwrap_or_default(),
                "CreatedSince": created,
                "CreatedBy": created_by,
                "Size": size,
                "Comment": step.comment,
            })
        })
        .collect();
    let mut out = io::stdout().lock();
    let field = |row: &Value, k: &str| row[k].as_str().unwrap_or_default().to_string();
    if args.quiet {
        for row in &rows {
            writeln!(out, "{}", field(row, "ID"))?;
        }
        return Ok(0);
    }
    match args.format.as_deref().unwrap_or("table") {
        "json" => {
            for row in &rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
        }
        "table" => {
            let header = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"];
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
                        .iter()
                        .map(|k| field(r, k))
                        .collect()
                })
                .collect();
            write!(out, "{}", crate::format::table(&header, &cells))?;
        }
        template => {
            for row in &rows {
                let template = template.strip_prefix("table ").unwrap_or(template);
                writeln!(out, "{}", crate::template::render(template, row)?)?;
            }
        }
    }
    Ok(0)
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
                crate::template::render(
                    format.strip_prefix("table ").unwrap_or(format),
                    &row_json(row, args.no_trunc)
                )?
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
    write!(out, "{}", crate::format::table(&header, &table))?;
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
        "CreatedSince": created.map(|t| format!("{} ago", crate::format::human_duration(chrono::Utc::now() - t))).unwrap_or_else(|| "N/A".to_string()),
        "Digest": row.digest,
        "ID": id,
        "Repository": row.repository,
        "SharedSize": "N/A",
        "Size": crate::format::human_size(image.size()),
        "Tag": row.tag,
        "UniqueSize": "N/A",
        "VirtualSize": crate::format::human_size(image.size()),
    })
}

//! berth-fixtures: turns layer directories into image archives.
//!
//! ```text
//! berth-fixtures image --out DIR --tag NAME:TAG --config CONFIG.json \
//!     --layer DIR [--layer DIR ...]
//! ```
//!
//! Each `--layer` is a directory in overlayfs form (whiteouts as character
//! devices 0/0, opaque directories marked `trusted.overlay.opaque=y`), lowest
//! first — exactly what an overlayfs upper directory looks like after a
//! Dockerfile step. CONFIG.json is the image config without `rootfs` (which
//! is filled in). The outputs (see rootfs-fixtures/README.md) are written
//! with berth-engine's own writers (`layer::pack`, `image::layout`), the same
//! code `berth save` and `berth build` use:
//!
//! ```text
//! DIR/oci/  oci-zstd/  oci-plain/       OCI layouts: gzip, zstd, uncompressed layers
//! DIR/oci-archive.tar                   the gzip layout as a tar
//! DIR/docker-archive.tar                docker save format of Docker 25+
//! DIR/docker-archive-classic.tar        docker save format of docker <= 24
//! DIR/config.json  DIR/image-id         the config blob and its digest
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Seek};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_engine::image::digest::{chain_ids, Digest, HashingWriter};
use berth_engine::image::layout::{DirSink, DockerManifestEntry, LayoutWriter, Sink, TarSink};
use berth_engine::image::manifest::{
    host_architecture, Descriptor, Index, Manifest, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
    OCI_CONFIG, OCI_MANIFEST,
};
use berth_engine::image::{ImageConfig, Reference};
use berth_engine::layer::pack::write_layer_tar;
use berth_engine::layer::Compression;
use serde_json::json;

struct Options {
    out: PathBuf,
    tag: Reference,
    config: PathBuf,
    layers: Vec<PathBuf>,
}

/// One layer, packed: the uncompressed tar on disk and its digest.
struct PackedLayer {
    tar: PathBuf,
    diff_id: Digest,
    size: u64,
}

/// A compressed form of a layer.
struct Blob {
    path: PathBuf,
    digest: Digest,
    size: u64,
}

fn main() {
    if let Err(err) = run() {
        eprintln!("berth-fixtures: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let options = parse_args(std::env::args().skip(1).collect())?;
    let work = options.out.join(format!(".work-{}", std::process::id()));
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = build(&options, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

fn parse_args(args: Vec<String>) -> Result<Options> {
    let usage = "usage: berth-fixtures image --out DIR --tag NAME:TAG --config CONFIG.json --layer DIR [--layer DIR...]";
    let mut args = args.into_iter();
    if args.next().as_deref() != Some("image") {
        bail!("{usage}");
    }
    let (mut out, mut tag, mut config, mut layers) = (None, None, None, Vec::new());
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{usage}"))?;
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value)),
            "--tag" => tag = Some(Reference::parse(&value)?.with_default_tag()),
            "--config" => config = Some(PathBuf::from(value)),
            "--layer" => layers.push(PathBuf::from(value)),
            other => bail!("unknown flag {other}\n{usage}"),
        }
    }
    match (out, tag, config) {
        (Some(out), Some(tag), Some(config)) if !layers.is_empty() => Ok(Options {
            out,
            tag,
            config,
            layers,
        }),
        _ => bail!("{usage}"),
    }
}

fn build(options: &Options, work: &Path) -> Result<()> {
    let products = [
        "oci",
        "oci-zstd",
        "oci-plain",
        "oci-archive.tar",
        "docker-archive.tar",
        "docker-archive-classic.tar",
        "config.json",
        "image-id",
    ];
    for product in products {
        if options.out.join(product).exists() {
            bail!(
                "{} exists already: remove the old outputs first",
                options.out.join(product).display()
            );
        }
    }
    let mut packed = Vec::new();
    for (i, dir) in options.layers.iter().enumerate() {
        eprintln!(
            "berth-fixtures: packing layer {} from {}",
            i + 1,
            dir.display()
        );
        packed.push(pack_layer(dir, &work.join(format!("layer{i}.tar")))?);
    }
    let config_bytes = config_blob(options, &packed)?;
    let id = Digest::of(&config_bytes);
    let gzip: Vec<Blob> = packed
        .iter()
        .map(|l| compress(l, Compression::Gzip))
        .collect::<Result<_>>()?;
    let zstd: Vec<Blob> = packed
        .iter()
        .map(|l| compress(l, Compression::Zstd))
        .collect::<Result<_>>()?;
    let plain: Vec<Blob> = packed
        .iter()
        .map(|l| Blob {
            path: l.tar.clone(),
            digest: l.diff_id.clone(),
            size: l.size,
        })
        .collect();
    let staged = work.join("out");
    fs::create_dir_all(&staged)?;
    for (name, blobs, compression) in [
        ("oci", &gzip, Compression::Gzip),
        ("oci-zstd", &zstd, Compression::Zstd),
        ("oci-plain", &plain, Compression::None),
    ] {
        let sink = DirSink::new(&staged.join(name))?;
        write_oci(sink, options, &config_bytes, blobs, compression)?;
    }
    let archive = BufWriter::new(File::create(staged.join("oci-archive.tar"))?);
    finish_tar(write_oci(
        TarSink::new(archive),
        options,
        &config_bytes,
        &gzip,
        Compression::Gzip,
    )?)?;
    let archive = BufWriter::new(File::create(staged.join("docker-archive.tar"))?);
    finish_tar(write_docker(
        TarSink::new(archive),
        options,
        &config_bytes,
        &packed,
    )?)?;
    let archive = BufWriter::new(File::create(staged.join("docker-archive-classic.tar"))?);
    finish_tar(write_docker_classic(
        TarSink::new(archive),
        options,
        &config_bytes,
        &packed,
    )?)?;
    fs::write(staged.join("config.json"), &config_bytes)?;
    fs::write(staged.join("image-id"), format!("{id}\n"))?;
    for product in products {
        fs::rename(staged.join(product), options.out.join(product))
            .with_context(|| format!("moving {product} into {}", options.out.display()))?;
    }
    eprintln!("berth-fixtures: {} is {id}", options.tag.familiar());
    Ok(())
}

fn finish_tar(sink: TarSink<BufWriter<File>>) -> Result<()> {
    let file = sink.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

/// Pack a layer directory into an uncompressed tar, hashing it.
fn pack_layer(dir: &Path, tar: &Path) -> Result<PackedLayer> {
    let file = BufWriter::new(File::create(tar)?);
    let hashing = write_layer_tar(dir, HashingWriter::new(file))?;
    let (file, diff_id, size) = hashing.finish();
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(PackedLayer {
        tar: tar.to_path_buf(),
        diff_id,
        size,
    })
}

fn compress(layer: &PackedLayer, compression: Compression) -> Result<Blob> {
    let ext = match compression {
        Compression::Gzip => "gz",
        Compression::Zstd => "zst",
        Compression::None => {
            return Ok(Blob {
                path: layer.tar.clone(),
                digest: layer.diff_id.clone(),
                size: layer.size,
            })
        }
    };
    let path = layer.tar.with_extension(format!("tar.{ext}"));
    let out = HashingWriter::new(BufWriter::new(File::create(&path)?));
    let mut input = BufReader::new(File::open(&layer.tar)?);
    let out = match compression {
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            io::copy(&mut input, &mut encoder)?;
            encoder.finish()?
        }
        _ => {
            let mut encoder = zstd::stream::write::Encoder::new(out, 3)?;
            io::copy(&mut input, &mut encoder)?;
            encoder.finish()?
        }
    };
    let (file, digest, size) = out.finish();
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(Blob { path, digest, size })
}

/// The config: the given one with platform, creation time, history and
/// `rootfs.diff_ids` filled in.
fn config_blob(options: &Options, layers: &[PackedLayer]) -> Result<Vec<u8>> {
    let text = fs::read(&options.config)
        .with_context(|| format!("reading {}", options.config.display()))?;
    let mut value: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("parsing {}", options.config.display()))?;
    let object = value
        .as_object_mut()
        .context("the config must be a JSON object")?;
    object
        .entry("architecture")
        .or_insert(json!(host_architecture()));
    object.entry("os").or_insert(json!("linux"));
    let created = object
        .entry("created")
        .or_insert(json!(
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
        .clone();
    if !object.contains_key("history") {
        let history: Vec<_> = options
            .layers
            .iter()
            .map(|dir| json!({ "created_by": format!("berth-fixtures: layer {}", dir.display()) }))
            .collect();
        object.insert("history".into(), json!(history));
    }
    // A history entry without a time shows as "292 years ago" in `docker
    // history`: each gets the image's.
    if let Some(entries) = object.get_mut("history").and_then(|h| h.as_array_mut()) {
        for entry in entries.iter_mut().filter_map(|e| e.as_object_mut()) {
            entry.entry("created").or_insert(created.clone());
        }
    }
    let diff_ids: Vec<&Digest> = layers.iter().map(|l| &l.diff_id).collect();
    object.insert(
        "rootfs".into(),
        json!({ "type": "layers", "diff_ids": diff_ids }),
    );
    let bytes = serde_json::to_vec(&value)?;
    ImageConfig::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("the resulting config is invalid: {e}"))?;
    Ok(bytes)
}

fn annotated(manifest: Descriptor, tag: &Reference) -> Descriptor {
    let mut entry = manifest;
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_IMAGE_NAME.to_string(), tag.full());
    annotations.insert(
        ANNOTATION_REF_NAME.to_string(),
        tag.tag.clone().unwrap_or_default(),
    );
    entry.annotations = Some(annotations);
    entry
}

fn manifest_blob(config: &[u8], layers: Vec<Descriptor>) -> Result<(Vec<u8>, Descriptor)> {
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor::new(OCI_CONFIG, Digest::of(config), config.len() as u64),
        layers,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&manifest)?;
    let descriptor = Descriptor::new(OCI_MANIFEST, Digest::of(&bytes), bytes.len() as u64);
    Ok((bytes, descriptor))
}

fn write_oci<S: Sink>(
    sink: S,
    options: &Options,
    config: &[u8],
    blobs: &[Blob],
    compression: Compression,
) -> Result<S> {
    let mut writer = LayoutWriter::new(sink);
    writer.blob_bytes(&Digest::of(config), config)?;
    let mut descriptors = Vec::new();
    for blob in blobs {
        let mut file = File::open(&blob.path)?;
        writer.blob_stream(&blob.digest, blob.size, &mut file)?;
        descriptors.push(Descriptor::new(
            compression.oci_media_type(),
            blob.digest.clone(),
            blob.size,
        ));
    }
    let (bytes, descriptor) = manifest_blob(config, descriptors)?;
    writer.blob_bytes(&descriptor.digest, &bytes)?;
    Ok(writer.finish_oci(&Index::new(vec![annotated(descriptor, &options.tag)]))?)
}

/// Docker 25+'s `docker save`: OCI layout + manifest.json, layers uncompressed.
fn write_docker<S: Sink>(
    sink: S,
    options: &Options,
    config: &[u8],
    layers: &[PackedLayer],
) -> Result<S> {
    let mut writer = LayoutWriter::new(sink);
    let id = Digest::of(config);
    writer.blob_bytes(&id, config)?;
    let mut descriptors = Vec::new();
    for layer in layers {
        let mut file = File::open(&layer.tar)?;
        writer.blob_stream(&layer.diff_id, layer.size, &mut file)?;
        descriptors.push(Descriptor::new(
            Compression::None.oci_media_type(),
            layer.diff_id.clone(),
            layer.size,
        ));
    }
    let (bytes, descriptor) = manifest_blob(config, descriptors)?;
    writer.blob_bytes(&descriptor.digest, &bytes)?;
    let entry = DockerManifestEntry {
        config: LayoutWriter::<S>::blob_path(&id),
        repo_tags: vec![options.tag.familiar()],
        layers: layers
            .iter()
            .map(|l| LayoutWriter::<S>::blob_path(&l.diff_id))
            .collect(),
    };
    Ok(writer.finish_docker(
        &Index::new(vec![annotated(descriptor, &options.tag)]),
        &[entry],
    )?)
}

/// docker <= 24's `docker save`: `<id>/layer.tar`, `<id>/json`,
/// `<id>/VERSION`, `<config>.json`, `manifest.json`, `repositories`.
fn write_docker_classic<S: Sink>(
    mut sink: S,
    options: &Options,
    config: &[u8],
    layers: &[PackedLayer],
) -> Result<S> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chains = chain_ids(&diff_ids);
    let mut layer_paths = Vec::new();
    let mut parent: Option<&str> = None;
    for (layer, chain) in layers.iter().zip(&chains) {
        let v1_id = chain.hex();
        sink.dir(v1_id)?;
        let mut file = File::open(&layer.tar)?;
        file.rewind()?;
        sink.file(&format!("{v1_id}/layer.tar"), layer.size, &mut file)?;
        let json = serde_json::to_vec(&json!({ "id": v1_id, "parent": parent }))?;
        sink.file(&format!("{v1_id}/json"), json.len() as u64, &mut &json[..])?;
        sink.file(&format!("{v1_id}/VERSION"), 3, &mut &b"1.0"[..])?;
        layer_paths.push(format!("{v1_id}/layer.tar"));
        parent = Some(v1_id);
    }
    let config_name = format!("{}.json", Digest::of(config).hex());
    sink.file(&config_name, config.len() as u64, &mut &config[..])?;
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": [options.tag.familiar()],
        "Layers": layer_paths,
    }]))?;
    sink.file("manifest.json", manifest.len() as u64, &mut &manifest[..])?;
    let tag = options.tag.tag.clone().unwrap_or_default();
    let top = chains
        .last()
        .map(|c| c.hex().to_string())
        .unwrap_or_default();
    let repositories =
        serde_json::to_vec(&json!({ options.tag.familiar_repository(): { tag: top } }))?;
    sink.file(
        "repositories",
        repositories.len() as u64,
        &mut repositories.as_slice(),
    )?;
    Ok(sink)
}

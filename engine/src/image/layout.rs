//! Writers for the two archive formats, shared by `berth save` and the
//! fixture builder: OCI image layouts (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) and docker archives (the same plus `manifest.json`, as
//! Docker 25+ writes them), into a tar stream or a directory.
//!
//! Mechanism: a [`Sink`] receives directories and files (size known up
//! front, as tar headers need it); [`LayoutWriter`] writes each blob once,
//! named by its digest, and the top-level JSON files last.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::digest::Digest;
use super::manifest::{Index, OCI_LAYOUT_VERSION};

/// Where an archive's members go.
pub trait Sink {
    fn dir(&mut self, path: &str) -> io::Result<()>;
    /// A file of exactly `size` bytes read from `data`.
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> io::Result<()>;
}

/// Members as entries of a tar stream (owner root, fixed time, so the same
/// images always give the same archive).
pub struct TarSink<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarSink<W> {
    pub fn new(out: W) -> TarSink<W> {
        TarSink {
            builder: tar::Builder::new(out),
        }
    }

    /// Write the end-of-archive marker and return the stream.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

fn member_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

impl<W: Write> Sink for TarSink<W> {
    fn dir(&mut self, path: &str) -> io::Result<()> {
        let mut header = member_header(tar::EntryType::Directory, 0o755, 0);
        self.builder
            .append_data(&mut header, format!("{path}/"), io::empty())
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
        let mut header = member_header(tar::EntryType::Regular, 0o644, size);
        let mut counted = CountingReader {
            inner: data,
            count: 0,
        };
        self.builder.append_data(&mut header, path, &mut counted)?;
        if counted.count != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes, got {}", counted.count),
            ));
        }
        Ok(())
    }
}

struct CountingReader<'a> {
    inner: &'a mut dyn Read,
    count: u64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Members as files under a directory (which must be new or empty).
pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    pub fn new(root: &Path) -> io::Result<DirSink> {
        fs::create_dir_all(root)?;
        Ok(DirSink {
            root: root.to_path_buf(),
        })
    }
}

impl Sink for DirSink {
    fn dir(&mut self, path: &str) -> io::Result<()> {
        fs::create_dir_all(self.root.join(path))
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
        let target = self.root.join(path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&target)?;
        let written = io::copy(data, &mut file)?;
        if written != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes, got {written}"),
            ));
        }
        file.sync_all()
    }
}

/// One entry of a docker archive's `manifest.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    pub config: String,
    pub repo_tags: Vec<String>,
    pub layers: Vec<String>,
}

/// Writes blobs once each, then the layout's top-level files.
pub struct LayoutWriter<S: Sink> {
    sink: S,
    written: HashSet<Digest>,
    started: bool,
}

impl<S: Sink> LayoutWriter<S> {
    pub fn new(sink: S) -> LayoutWriter<S> {
        LayoutWriter {
            sink,
            written: HashSet::new(),
            started: false,
        }
    }

    /// The member name of a blob.
    pub fn blob_path(digest: &Digest) -> String {
        format!("blobs/sha256/{}", digest.hex())
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.sink.dir("blobs")?;
            self.sink.dir("blobs/sha256")?;
            self.started = true;
        }
        Ok(())
    }

    /// True if the blob was already written.
    pub fn has(&self, digest: &Digest) -> bool {
        self.written.contains(digest)
    }

    pub fn blob_bytes(&mut self, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        self.blob_stream(digest, bytes.len() as u64, &mut &bytes[..])
    }

    /// A blob of `size` bytes from `data` (skipped if already written).
    pub fn blob_stream(
        &mut self,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        self.start()?;
        if self.written.insert(digest.clone()) {
            self.sink.file(&Self::blob_path(digest), size, data)?;
        }
        Ok(())
    }

    pub fn json<T: Serialize>(&mut self, path: &str, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
        self.sink.file(path, bytes.len() as u64, &mut &bytes[..])
    }

    /// `oci-layout` and `index.json`; returns the sink.
    pub fn finish_oci(mut self, index: &Index) -> io::Result<S> {
        self.start()?;
        self.json(
            "oci-layout",
            &serde_json::json!({ "imageLayoutVersion": OCI_LAYOUT_VERSION }),
        )?;
        self.json("index.json", index)?;
        Ok(self.sink)
    }

    /// A docker archive: the OCI files plus `manifest.json`.
    pub fn finish_docker(
        mut self,
        index: &Index,
        entries: &[DockerManifestEntry],
    ) -> io::Result<S> {
        self.json("manifest.json", &entries)?;
        self.finish_oci(index)
    }
}

/// Open a blob file of the store for reading, with a clear error.
pub(crate) fn open_blob(path: &Path) -> io::Result<File> {
    File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

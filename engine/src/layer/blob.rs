//! From a layer blob to a verified, unpacked layer directory in one pass.
//!
//! Mechanism: two threads joined by a bounded channel of 256 KiB buffers.
//! The *reader* thread reads the blob (optionally copying it into the store
//! as it goes), hashes it (the blob digest), decompresses it (gzip through
//! zlib-rs, or zstd) and hashes the result (the diff_id). The *unpacker*
//! thread parses the tar and makes the files. Decompression and file
//! creation thus overlap, as `tar -xzf` overlaps them with a gzip process.
//! Digests are compared at the end; the caller unpacks into a staging
//! directory, so a mismatch leaves nothing behind once staging is removed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::image::digest::{Digest, HashingReader};

use super::compression::{self, Compression};
use super::unpack::{self, LayerError, UnpackSummary, Whiteouts};

const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 8;

/// What reading a layer blob found.
#[derive(Debug, Clone)]
pub struct BlobReport {
    /// Digest and length of the blob as stored (compressed or not).
    pub blob_digest: Digest,
    pub blob_size: u64,
    /// Digest and length of the uncompressed tar.
    pub diff_id: Digest,
    pub tar_size: u64,
    pub compression: Compression,
    /// `None` when the blob was only verified, not unpacked.
    pub unpacked: Option<UnpackSummary>,
}

/// Why a blob could not be read, verified or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("reading blob: {0}")]
    Read(io::Error),
    #[error("decompressing: {0}")]
    Decompress(io::Error),
    #[error(
        "blob digest mismatch: expected {expected}, found {actual} (corrupted or tampered file)"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(transparent)]
    Unpack(#[from] LayerError),
}

/// Read `blob` to its end: hash it, decompress it, hash the tar, and unpack
/// it into `dest` (or only verify it when `dest` is `None`). Each chunk of
/// the blob read is also written to `copy_to` when given and reported to
/// `progress` (bytes of blob read so far). When the blob's digest is known
/// (`expected_blob`) and differs, that is the error reported, whatever else
/// went wrong: a corrupted blob is named as such, not by its symptoms.
pub fn read_layer_blob(
    blob: impl Read + Send,
    expected_blob: Option<&Digest>,
    copy_to: Option<&mut File>,
    dest: Option<&Path>,
    mode: Whiteouts,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BlobReport, BlobError> {
    let (full_tx, full_rx) = sync_channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 2);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || decode_side(blob, copy_to, full_tx, empty_rx, progress));
        let tar_stream = ChannelReader {
            full: full_rx,
            empty: empty_tx,
            current: Vec::new(),
            pos: 0,
        };
        let unpacked = match dest {
            Some(dest) => unpack::unpack(tar_stream, dest, mode).map(Some),
            None => drain(tar_stream).map(|_| None),
        };
        let (blob_digest, blob_size, decoded) =
            reader.join().expect("layer reader thread panicked")?;
        if let Some(expected) = expected_blob.filter(|e| **e != blob_digest) {
            return Err(BlobError::DigestMismatch {
                expected: expected.clone(),
                actual: blob_digest,
            });
        }
        // The reader's error explains an unpack failure (a truncated gzip
        // shows up to the tar parser as a short read), so it comes first.
        let (compression, diff_id, tar_size) = decoded?;
        let unpacked = unpacked?;
        Ok(BlobReport {
            blob_digest,
            blob_size,
            diff_id,
            tar_size,
            compression,
            unpacked,
        })
    })
}

/// The blob's digest and size (read to its end even when decoding failed),
/// and the decoding outcome: compression, diff_id, tar size.
type Decoded = (Digest, u64, Result<(Compression, Digest, u64), BlobError>);

/// The reader thread: blob -> hash -> [copy] -> decompress -> hash -> chunks.
fn decode_side(
    blob: impl Read + Send,
    copy_to: Option<&mut File>,
    full: SyncSender<io::Result<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Decoded, BlobError> {
    let mut hashed_blob = HashingReader::new(Tee {
        inner: blob,
        copy: copy_to,
    });
    let outcome = (|| -> Result<(Compression, Digest, u64), BlobError> {
        let reporting = Reporting {
            inner: &mut hashed_blob,
            progress,
        };
        let (compression, decoder) = compression::decompress(reporting).map_err(BlobError::Read)?;
        let mut tar = HashingReader::new(decoder);
        loop {
            let mut buf = empty.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
            buf.resize(CHUNK, 0);
            let n = match read_full(&mut tar, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = full.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(BlobError::Decompress(e));
                }
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if full.send(Ok(buf)).is_err() {
                break; // the unpacker stopped (it reports why)
            }
        }
        let (diff_id, tar_size) = tar.finish();
        Ok((compression, diff_id, tar_size))
    })();
    drop(full);
    // Whatever follows the compressed stream is part of the blob too; and
    // after a decoding error the whole blob is still hashed, to tell a
    // corrupted file from a well-formed but bad one.
    io::copy(&mut hashed_blob, &mut io::sink()).map_err(BlobError::Read)?;
    let (blob_digest, blob_size) = hashed_blob.finish();
    Ok((blob_digest, blob_size, outcome))
}

/// Fill `buf` as far as the stream allows (fewer bytes only at its end).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn drain(mut reader: impl Read) -> Result<(), LayerError> {
    io::copy(&mut reader, &mut io::sink())
        .map(|_| ())
        .map_err(LayerError::Tar)
}

/// Copies everything read through it into `copy` (the store's blob file).
struct Tee<'a, R> {
    inner: R,
    copy: Option<&'a mut File>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(copy) = &mut self.copy {
            // A write error becomes a read error: the load must fail.
            copy.write_all(&buf[..n]).map_err(|e| {
                io::Error::new(e.kind(), format!("copying blob into the store: {e}"))
            })?;
        }
        Ok(n)
    }
}

/// Reports how much of the blob has been read.
struct Reporting<'a, R> {
    inner: R,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// The unpacker's side of the channel, as a `Read`.
struct ChannelReader {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.full.recv() {
                Ok(Ok(next)) => {
                    let used = std::mem::replace(&mut self.current, next);
                    let _ = self.empty.try_send(used);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the reader finished
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

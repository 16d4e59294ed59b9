//! Content digests (`sha256:<64 hex>`), the names of everything in the store.
//!
//! Mechanism: SHA-256 over the exact bytes (the `sha2` crate, which uses the
//! CPU's SHA extensions when present). A [`HashingReader`] hashes a stream as
//! it is read, so a blob is verified in the same pass that copies or unpacks
//! it, never read twice. Layer identity follows the OCI image spec: a layer's
//! `diff_id` is the digest of its *uncompressed* tar, and its `chain_id`
//! (which also names the parent layers) is
//! `sha256(parent_chain_id + " " + diff_id)`.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a string is not a digest berth can use.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    Malformed(String),
    #[error("unsupported digest algorithm in {0:?}: berth verifies sha256 only")]
    UnsupportedAlgorithm(String),
}

impl Digest {
    /// Parse `sha256:<hex>`; other algorithms are refused with a clear error.
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(DigestError::Malformed(text.to_string()));
        };
        if algorithm != "sha256" {
            let known = matches!(algorithm, "sha384" | "sha512" | "blake3");
            return Err(if known {
                DigestError::UnsupportedAlgorithm(text.to_string())
            } else {
                DigestError::Malformed(text.to_string())
            });
        }
        if !is_full_hex(hex) {
            return Err(DigestError::Malformed(text.to_string()));
        }
        Ok(Digest(text.to_string()))
    }

    /// The digest whose hex part is `hex` (64 lowercase hex digits).
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        Digest::parse(&format!("sha256:{hex}"))
    }

    /// The SHA-256 digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The first 12 hex digits, as docker shows ids.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

/// True for exactly 64 lowercase hex digits.
pub fn is_full_hex(text: &str) -> bool {
    text.len() == 64 && is_lower_hex(text)
}

/// True for a non-empty string of lowercase hex digits.
pub fn is_lower_hex(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The chain id of a layer: its own diff_id at the bottom, else
/// `sha256(parent_chain + " " + diff_id)`, so it names the whole stack below.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
    }
}

/// The chain ids of a stack of layers, given their diff_ids lowest first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chains: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = chain_id(chains.last(), diff_id);
        chains.push(next);
    }
    chains
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A reader that hashes (SHA-256) and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest and length of everything read.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: io::Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The writer, the digest and the length of everything written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }
}

impl<W: io::Write> io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_bytes() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn malformed_and_foreign_digests_are_refused() {
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        let err = Digest::parse(&format!("sha512:{}", "a".repeat(128))).unwrap_err();
        assert!(err.to_string().contains("sha256 only"), "{err}");
    }

    #[test]
    fn chain_id_matches_the_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        assert_eq!(chains[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn hashing_reader_sees_every_byte() {
        let mut reader = HashingReader::new(&b"hello world"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        let (digest, len) = reader.finish();
        assert_eq!(len, 11);
        assert_eq!(digest, Digest::of(b"hello world"));
    }
}

//! Layer compression: recognised by the first bytes, never trusted from a
//! media type (skopeo, for one, labels plain tar as gzip).
//!
//! Mechanism: magic numbers — gzip `1f 8b`, zstd `28 b5 2f fd`; anything else
//! is taken as an uncompressed tar (the tar parser then decides). gzip is
//! decoded by flate2 with the zlib-rs backend (multi-member streams too, as
//! pigz and some registries produce), zstd by the reference C library.

use std::io::{self, Chain, Cursor, Read};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => crate::image::manifest::OCI_LAYER_TAR,
            Compression::Gzip => crate::image::manifest::OCI_LAYER_GZIP,
            Compression::Zstd => crate::image::manifest::OCI_LAYER_ZSTD,
        }
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// A reader whose first bytes were already read to sniff the format.
pub type Peeked<R> = Chain<Cursor<Vec<u8>>, R>;

/// Read up to 6 bytes of `reader` to recognise the compression, and return a
/// reader that yields the whole stream again.
pub fn sniff<R: Read>(mut reader: R) -> io::Result<(Compression, Peeked<R>)> {
    let mut head = Vec::with_capacity(6);
    (&mut reader).take(6).read_to_end(&mut head)?;
    let compression = detect(&head)?;
    Ok((compression, Cursor::new(head).chain(reader)))
}

/// Recognise the compression from the first bytes of a stream.
pub fn detect(head: &[u8]) -> io::Result<Compression> {
    if head.starts_with(GZIP_MAGIC) {
        Ok(Compression::Gzip)
    } else if head.starts_with(ZSTD_MAGIC) {
        Ok(Compression::Zstd)
    } else if head.starts_with(XZ_MAGIC) || head.starts_with(BZIP2_MAGIC) {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "xz and bzip2 compressed layers are not supported (only gzip, zstd and plain tar)",
        ))
    } else {
        Ok(Compression::None)
    }
}

/// A reader of the decompressed bytes of `reader`, compression detected.
pub fn decompress<'a, R: Read + Send + 'a>(
    reader: R,
) -> io::Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let (compression, peeked) = sniff(reader)?;
    let decoded: Box<dyn Read + Send + 'a> = match compression {
        Compression::None => Box::new(peeked),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(peeked)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(peeked)?),
    };
    Ok((compression, decoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(compressed: Vec<u8>, expected: Compression) {
        let (kind, mut reader) = decompress(&compressed[..]).unwrap();
        assert_eq!(kind, expected);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"layer bytes");
    }

    #[test]
    fn detects_by_content() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"layer bytes").unwrap();
        roundtrip(gz.finish().unwrap(), Compression::Gzip);
        roundtrip(
            zstd::encode_all(&b"layer bytes"[..], 3).unwrap(),
            Compression::Zstd,
        );
        roundtrip(b"layer bytes".to_vec(), Compression::None);
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[7u8; 100_000]).unwrap();
        let mut bytes = gz.finish().unwrap();
        bytes.truncate(bytes.len() / 2);
        let (_, mut reader) = decompress(&bytes[..]).unwrap();
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).is_err());
    }

    #[test]
    fn xz_is_refused_clearly() {
        let err = detect(XZ_MAGIC).unwrap_err();
        assert!(err.to_string().contains("not supported"));
    }
}

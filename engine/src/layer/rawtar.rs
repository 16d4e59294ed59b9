//! A minimal tar *writer* that writes whatever it is told — `../` names,
//! absolute names, links anywhere, sizes that lie — for tests and fuzzing of
//! the unpacker. (The `tar` crate's builder, rightly, refuses such names.)
//!
//! Format: POSIX ustar headers of 512 bytes (name, mode, uid, gid, size,
//! mtime, checksum, type, link name, `ustar\0` magic, device numbers), data
//! padded to 512 bytes, and PAX extended headers (type `x`) for xattrs.

use std::io::Write;

/// An in-memory tar archive under construction.
#[derive(Default)]
pub struct RawTar {
    bytes: Vec<u8>,
}

/// One entry; build with [`Entry::file`] etc. and adjust the public fields.
#[derive(Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    /// The size written in the header (normally `data.len()`).
    pub declared_size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn new(name: &str, kind: u8, mode: u32) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            link: Vec::new(),
            data: Vec::new(),
            declared_size: 0,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
        }
    }

    pub fn file(name: &str, data: &[u8]) -> Entry {
        let mut entry = Entry::new(name, b'0', 0o644);
        entry.data = data.to_vec();
        entry.declared_size = data.len() as u64;
        entry
    }

    pub fn dir(name: &str) -> Entry {
        Entry::new(name, b'5', 0o755)
    }

    pub fn symlink(name: &str, target: &str) -> Entry {
        let mut entry = Entry::new(name, b'2', 0o777);
        entry.link = target.as_bytes().to_vec();
        entry
    }

    pub fn hardlink(name: &str, target: &str) -> Entry {
        let mut entry = Entry::new(name, b'1', 0o644);
        entry.link = target.as_bytes().to_vec();
        entry
    }

    pub fn char_device(name: &str, major: u32, minor: u32) -> Entry {
        let mut entry = Entry::new(name, b'3', 0o666);
        entry.dev_major = major;
        entry.dev_minor = minor;
        entry
    }

    pub fn block_device(name: &str, major: u32, minor: u32) -> Entry {
        let mut entry = Entry::char_device(name, major, minor);
        entry.kind = b'4';
        entry
    }

    pub fn fifo(name: &str) -> Entry {
        Entry::new(name, b'6', 0o644)
    }

    pub fn with_mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    pub fn with_owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn with_xattr(mut self, name: &str, value: &[u8]) -> Entry {
        self.xattrs.push((name.to_string(), value.to_vec()));
        self
    }
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    pub fn add(&mut self, entry: Entry) -> &mut RawTar {
        if !entry.xattrs.is_empty() {
            let mut records = Vec::new();
            for (name, value) in &entry.xattrs {
                records.extend(pax_record(&format!("SCHILY.xattr.{name}"), value));
            }
            let mut pax = Entry::new("PaxHeaders/x", b'x', 0o644);
            pax.declared_size = records.len() as u64;
            pax.data = records;
            self.write(&pax);
        }
        self.write(&entry);
        self
    }

    fn write(&mut self, entry: &Entry) {
        let mut header = [0u8; 512];
        let name = &entry.name[..entry.name.len().min(100)];
        header[..name.len()].copy_from_slice(name);
        octal(&mut header[100..108], entry.mode as u64);
        octal(&mut header[108..116], entry.uid);
        octal(&mut header[116..124], entry.gid);
        octal(&mut header[124..136], entry.declared_size);
        octal(&mut header[136..148], entry.mtime);
        header[156] = entry.kind;
        let link = &entry.link[..entry.link.len().min(100)];
        header[157..157 + link.len()].copy_from_slice(link);
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        octal(&mut header[329..337], entry.dev_major as u64);
        octal(&mut header[337..345], entry.dev_minor as u64);
        header[148..156].copy_from_slice(b"        ");
        let sum: u64 = header.iter().map(|&b| b as u64).sum();
        let checksum = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(checksum.as_bytes());
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(&entry.data);
        let pad = (512 - entry.data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    /// The archive with its end marker (two zero blocks).
    pub fn finish(&self) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        bytes.extend(std::iter::repeat_n(0u8, 1024));
        bytes
    }

    /// The archive without an end marker, cut after `len` bytes.
    pub fn truncated(&self, len: usize) -> Vec<u8> {
        self.bytes[..len.min(self.bytes.len())].to_vec()
    }
}

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{:0width$o}\0", value, width = field.len() - 1);
    field.copy_from_slice(&text.as_bytes()[text.len() - field.len()..]);
}

/// A PAX record: `<len> <key>=<value>\n`, where len counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// gzip-compress `bytes` (for building test layers).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// zstd-compress `bytes`.
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).expect("zstd into memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tar_crate_reads_what_it_writes() {
        let mut tar = RawTar::new();
        tar.add(Entry::dir("a/"))
            .add(Entry::file("a/b", b"hello").with_xattr("user.x", b"1"))
            .add(Entry::symlink("a/c", "b"));
        let bytes = tar.finish();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().to_str() == Some("a/b") {
                let pax: Vec<_> = entry
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|e| e.unwrap().key().unwrap().to_string())
                    .collect();
                assert_eq!(pax, ["SCHILY.xattr.user.x"]);
            }
            names.push(entry.path().unwrap().display().to_string());
        }
        assert_eq!(names, ["a/", "a/b", "a/c"]);
    }
}

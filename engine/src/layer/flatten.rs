//! Flattening: a stack of layer blobs applied into one plain directory.
//!
//! Where overlayfs is unavailable (an old kernel, a filesystem that cannot
//! be an overlayfs upper, a nested container without the permission), a
//! container's root filesystem can still be made, at the cost of a full copy:
//! each layer tar is unpacked over the previous ones in order, with whiteouts
//! *applied* (the file below is deleted; an opaque directory is emptied of what
//! the lower layers put there). Mechanism: the same confined unpacker as the
//! overlay form ([`super::unpack`] with [`Whiteouts::Apply`]), reading the
//! stored blobs again (gzip/zstd detected by content).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::blob::{read_layer_blob, BlobError, BlobReport};
use super::unpack::Whiteouts;

/// Unpack `blobs` (lowest layer first) one over another into `dest`, which
/// must exist (normally empty). Returns what each blob was found to be, so
/// the caller can check the diff_ids it expected.
pub fn flatten_blobs(
    blobs: &[PathBuf],
    dest: &Path,
) -> Result<Vec<BlobReport>, (PathBuf, BlobError)> {
    let mut reports = Vec::with_capacity(blobs.len());
    for blob in blobs {
        let file = File::open(blob).map_err(|e| (blob.clone(), BlobError::Read(e)))?;
        let report = read_layer_blob(file, None, None, Some(dest), Whiteouts::Apply, &|_| {})
            .map_err(|e| (blob.clone(), e))?;
        reports.push(report);
    }
    Ok(reports)
}

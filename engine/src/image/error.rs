//! The errors of the image store: one line each, naming the image, file or
//! blob at fault (and, where docker has a wording, docker's wording).

use std::io;

use super::digest::Digest;
use super::reference::ReferenceError;
use crate::layer::blob::BlobError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// docker's wording, so scripts matching it keep working.
    #[error("No such image: {0}")]
    NotFound(String),
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error("image id prefix {0:?} is ambiguous: it matches several images; give more digits")]
    Ambiguous(String),
    /// `rmi` refusals, in docker's words (`conflict: unable to delete ...`).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(
        "{what}: digest mismatch: expected {expected}, found {actual} (corrupted or tampered file)"
    )]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what}: size mismatch: expected {expected} bytes, found {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} needs {blob}, which is missing from {input}")]
    MissingBlob {
        what: String,
        blob: String,
        input: String,
    },
    /// Malformed JSON, unsupported media type, inconsistent manifest, ...
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("layer {layer}: {cause}")]
    Layer { layer: String, cause: BlobError },
    #[error("{context}: {cause}")]
    Io { context: String, cause: io::Error },
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
        let context = context.into();
        move |cause| ImageError::Io { context, cause }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> ImageError {
        ImageError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// True for "the image does not exist" (docker's `No such image`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ImageError::NotFound(_))
    }
}

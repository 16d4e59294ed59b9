//! Layers: the filesystem changes an image is made of.
//!
//! A layer travels as a tar (gzip, zstd or plain) in which deletions are
//! `.wh.NAME` entries and "replace this directory" is a `.wh..wh..opq` entry.
//! On disk berth keeps each layer once, unpacked into its own directory in
//! overlayfs form (whiteout = character device 0/0, opaque directory =
//! `trusted.overlay.opaque=y`), so the directories of an image's layers can be
//! stacked directly as overlayfs `lowerdir`s.
//!
//! - [`compression`]: recognise and undo gzip/zstd by content;
//! - [`unpack`]: tar -> directory, every path confined (`openat2`);
//! - [`lower`]: hardlinks to lower layers' files (copy-up), lookups through a stack;
//! - [`blob`]: read + verify digests + unpack in one pipelined pass;
//! - [`pack`]: directory -> tar, the reverse (for `berth build` and fixtures);
//! - [`flatten`]: apply a stack of layers into one plain directory, for
//!   hosts where overlayfs is unavailable;
//! - [`rawtar`]: a tar writer that writes anything (hostile archives for
//!   tests and fuzzing).

pub mod blob;
pub mod compression;
pub mod flatten;
pub mod lower;
pub mod pack;
pub mod rawtar;
pub mod unpack;

#[cfg(test)]
mod tests;

pub use compression::Compression;
pub use unpack::{LayerError, UnpackSummary, Whiteouts};

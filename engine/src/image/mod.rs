//! Images: a content-addressed store of Docker/OCI images on disk.
//!
//! What the rest of berth calls (all on [`ImageStore`]):
//!
//! ```text
//! ImageStore::open(&roots) -> Result<ImageStore, ImageError>
//! store.resolve("busybox" | "busybox:latest" | "docker.io/library/busybox"
//!               | "name@sha256:<manifest>" | "sha256:<id>" | "<id prefix>")
//!     -> Result<Image, ImageError>      // missing: "No such image: busybox:latest"
//! store.list() -> Vec<Image>
//! store.hold() -> StoreHold             // keeps rmi's GC away (shared gc.lock)
//! store.load(LoadSource::Path(p) | LoadSource::Reader(r), &progress) -> Vec<LoadedImage>
//! store.save_items(&names) + store.save(&items, SaveFormat::Docker|Oci, sink, &progress)
//! store.tag(source, target) / store.remove(reference, force) -> Vec<Removal>
//! store.import_layer_tar(tar_reader, &below_diff_ids) -> LayerDescriptor   // for build
//! store.add_image(config, &layers, &tags) -> Image                          // for build
//! ```
//!
//! An [`Image`] has `id` (`sha256:<hex>` of its config blob), `config`
//! ([`ImageConfig`]; `config.config` holds Env, Entrypoint, Cmd, WorkingDir,
//! User, ExposedPorts, StopSignal, Labels, Volumes, Healthcheck, OnBuild,
//! Shell), `repo_tags`, `repo_digests`, `layers`, and
//! [`Image::layer_dirs`]: the unpacked layer directories, lowest first, each
//! usable directly as an overlayfs lowerdir (give them to overlayfs in
//! reverse: `lowerdir=top:…:bottom`). [`inspect::docker_inspect`] renders
//! docker's `image inspect` JSON.
//!
//! Module map: [`digest`] (sha256 names, chain ids), [`reference`] (docker's
//! name normalization), [`config`] and [`manifest`] (the JSON formats),
//! [`store`] (layout on disk, locks, resolve, tag, rmi, GC), [`source`] and
//! [`load`] (archives in), [`save`] and [`layout`] (archives out),
//! [`import`] (images from parts), [`inspect`]. Layers themselves — unpacking,
//! whiteouts, packing — live in [`crate::layer`].

pub mod config;
pub mod digest;
pub mod error;
pub mod import;
pub mod inspect;
pub mod layout;
pub mod load;
pub mod manifest;
pub mod reference;
pub mod save;
pub mod source;
pub mod store;

pub use config::{ContainerConfig, ImageConfig};
pub use digest::Digest;
pub use error::ImageError;
pub use import::LayerDescriptor;
pub use load::LoadedImage;
pub use reference::Reference;
pub use save::{SaveFormat, SaveItem};
pub use source::LoadSource;
pub use store::{HistoryStep, Image, ImageLayer, ImageStore, Removal, StoreHold};

#[cfg(test)]
mod tests;

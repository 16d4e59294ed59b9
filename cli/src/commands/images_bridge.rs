//! What the container commands need from the image store: an image's id and
//! its run defaults (ENTRYPOINT, CMD, ENV, ...).

use berth_engine::container::spec::ImageDefaults;
use berth_engine::image::{Image, ImageError, ImageStore, StoreHold};

use crate::commands::Context;

/// An image found in the store, as `run`/`create` use it. While `hold` lives
/// the store's garbage collection waits, so a concurrent `rmi` cannot delete
/// the image before the container's record (which protects it) exists.
#[derive(Debug)]
pub struct ResolvedImage {
    pub id: String,
    pub defaults: ImageDefaults,
    pub hold: StoreHold,
}

/// Find `reference` in the image store. berth cannot pull implicitly (no
/// registry is assumed), so a missing image is an error that says what to do.
pub fn resolve(ctx: &Context, reference: &str) -> anyhow::Result<ResolvedImage> {
    let store = ImageStore::open(&ctx.roots)?;
    let hold = store.hold()?;
    let image = match store.resolve(reference) {
        Ok(image) => image,
        Err(ImageError::NotFound(_)) => anyhow::bail!(
            "Unable to find image '{reference}' locally: load it with `berth load -i FILE` or pull it with `berth pull {reference}`"
        ),
        Err(err) => return Err(err.into()),
    };
    tracing::debug!(step = "image", image = %image.id, layers = image.layers.len(),
        "image {reference} is {}: {} layer(s), each unpacked once in the image store and shared by every container",
        image.id, image.layers.len());
    Ok(ResolvedImage {
        id: image.id.to_string(),
        defaults: defaults_of(&image),
        hold,
    })
}

/// The `config` part of an image config, as the container spec merges it.
pub fn defaults_of(image: &Image) -> ImageDefaults {
    ImageDefaults::of(image)
}

/// `inspect IMAGE` as docker's JSON.
pub fn inspect_json(ctx: &Context, reference: &str) -> anyhow::Result<serde_json::Value> {
    let store = ImageStore::open(&ctx.roots)?;
    let image = store.resolve(reference)?;
    Ok(berth_engine::image::inspect::docker_inspect(&image))
}

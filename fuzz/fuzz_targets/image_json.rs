//! The JSON documents of an image: manifest, index, config, and the
//! media-type sniffing that decides which one a blob is.
#![no_main]

use berth_engine::image::manifest::{self, Index, Manifest};
use berth_engine::image::ImageConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = manifest::manifest_kind(None, data);
    let _ = manifest::manifest_kind(Some(manifest::OCI_MANIFEST), data);
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        let _ = manifest::check_config_media_type(m.config.media_type());
        for layer in &m.layers {
            let _ = manifest::check_layer_media_type(layer.media_type());
        }
    }
    if let Ok(index) = serde_json::from_slice::<Index>(data) {
        let _ = manifest::choose_platform(&index.manifests);
    }
    if let Ok(config) = ImageConfig::parse(data) {
        let _ = config.created_time();
    }
});

//! Containers: records on disk, the lifecycle, and the monitor process.
//!
//! A container's record lives in `<root>/containers/<id>/container.json`.
//! This module is being built; today it offers what the image store needs to
//! know about containers: which ones use an image.

use std::io;
use std::path::Path;

use crate::paths::Roots;

/// The name of the record file inside a container's directory.
pub const RECORD_FILE: &str = "container.json";

/// The ids of the containers whose record names `image_id` (`sha256:<hex>`).
/// `rmi` refuses to remove an image while this is not empty.
pub fn users_of_image(roots: &Roots, image_id: &str) -> io::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct ImageOnly {
        image_id: String,
    }
    let mut users = Vec::new();
    let dir = roots.containers();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(users),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let record = entry.path().join(RECORD_FILE);
        let Some(text) = read_if_exists(&record)? else {
            continue;
        };
        let parsed: ImageOnly = serde_json::from_str(&text)
            .map_err(|e| io::Error::other(format!("{}: {e}", record.display())))?;
        if parsed.image_id == image_id {
            users.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    users.sort();
    Ok(users)
}

fn read_if_exists(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

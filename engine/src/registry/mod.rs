//! Registries: `pull`, `push`, `login`, `logout` and `search` over the
//! Registry HTTP API v2 (the OCI distribution spec), which Docker Hub and
//! every private registry speak.
//!
//! - [`http`]: the HTTP client (ureq + rustls);
//! - [`auth`]: `WWW-Authenticate` challenges, Bearer tokens, Basic auth, and
//!   the credentials in docker's `config.json`;
//! - [`client`]: one registry: ping, authentication, requests, errors;
//! - [`pull`]: manifest negotiation (docker schema2, OCI, manifest lists and
//!   OCI indexes by platform), parallel verified blob downloads that resume,
//!   and the hand-over to the image store;
//! - [`push`]: blobs (skipping those present, mounting across repositories),
//!   then the manifest;
//! - [`search`]: `/v2/_catalog`, filtered.
//!
//! What is on the wire is verified before it is used: every blob and
//! manifest is hashed as it arrives and compared with its digest; a
//! mismatch fails the pull and leaves the store as it was.

pub mod auth;
pub mod client;
pub mod http;
pub mod pull;
pub mod push;
pub mod search;

use std::io;

pub use auth::{CredentialStore, Credentials};
pub use pull::{pull, PullOptions, PullResult};
pub use push::{push, PushOptions, PushResult};
pub use search::{search, SearchOptions};

use crate::image::Digest;

/// Why a registry operation failed: one line, saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{}", unauthorized_message(registry, detail, *logged_in))]
    Unauthorized {
        registry: String,
        detail: String,
        logged_in: bool,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{what}: digest mismatch: expected {expected}, got {actual} (the registry sent corrupted data; nothing was stored)")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Credentials(#[from] auth::CredentialError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("{context}: {error}")]
    Io { context: String, error: io::Error },
}

fn unauthorized_message(registry: &str, detail: &str, logged_in: bool) -> String {
    if detail == "incorrect username or password" {
        format!("unauthorized: {detail} ({registry} refused the login)")
    } else if logged_in {
        format!("unauthorized: {detail} ({registry} refused the stored credentials: check them with `berth login {registry}`)")
    } else {
        format!("unauthorized: {detail} ({registry} needs credentials: run `berth login {registry}` first)")
    }
}

/// `berth login`: check the credentials against the registry, then store them.
pub fn login(
    domain: &str,
    credentials: &Credentials,
    insecure: bool,
    store: &CredentialStore,
) -> Result<(), RegistryError> {
    let scratch = tempfile_store(credentials, domain)?;
    // Connecting with the new credentials makes the registry (or its token
    // service) check them.
    let refused = |e: RegistryError| match e {
        RegistryError::Unauthorized { registry, .. } => RegistryError::Unauthorized {
            registry,
            detail: "incorrect username or password".into(),
            logged_in: false,
        },
        other => other,
    };
    let client = client::Client::connect(domain, "", insecure, &scratch.store).map_err(refused)?;
    let response = client
        .request("GET", "/v2/", &[], &client::Payload::Empty)
        .map_err(refused)?;
    if !response.status().is_success() {
        return Err(client.error_from(&format!("login to {domain}"), response));
    }
    store.set(&auth::auth_key(domain), credentials)?;
    Ok(())
}

/// A throw-away credential file holding only the credentials being checked.
struct ScratchStore {
    store: CredentialStore,
    dir: std::path::PathBuf,
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tempfile_store(credentials: &Credentials, domain: &str) -> Result<ScratchStore, RegistryError> {
    let dir = std::env::temp_dir().join(format!("berth-login-{:016x}", rand::random::<u64>()));
    std::fs::create_dir(&dir).map_err(|e| RegistryError::Io {
        context: format!("creating {}", dir.display()),
        error: e,
    })?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let store = CredentialStore::at(dir.join("config.json"));
    let scratch = ScratchStore { store, dir };
    scratch.store.set(&auth::auth_key(domain), credentials)?;
    Ok(scratch)
}

/// `berth logout`: forget the credentials of `domain`; false if there were none.
pub fn logout(domain: &str, store: &CredentialStore) -> Result<bool, RegistryError> {
    Ok(store.remove(&auth::auth_key(domain))?)
}

/// The registry a `login`/`logout` argument names (docker's default: Docker Hub).
pub fn registry_of_server(server: Option<&str>) -> String {
    match server {
        None | Some("") => crate::image::reference::DEFAULT_DOMAIN.to_string(),
        Some(s) => {
            let s = s
                .strip_prefix("https://")
                .or_else(|| s.strip_prefix("http://"))
                .unwrap_or(s);
            let host = s.split('/').next().unwrap_or(s);
            match host {
                "index.docker.io" | "registry-1.docker.io" | "docker.io" => {
                    crate::image::reference::DEFAULT_DOMAIN.to_string()
                }
                other => other.to_string(),
            }
        }
    }
}

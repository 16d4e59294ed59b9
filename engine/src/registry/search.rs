//! `berth search`: repository names from a registry's catalog.
//!
//! Mechanism: `GET /v2/_catalog?n=<page>`, following the `Link: <...>;
//! rel="next"` header page by page, and keeping the names that contain the
//! search term. Limits, which are the catalog API's own: it lists only
//! names (no description, stars or official flag); many registries disable
//! it or restrict it to administrators (Docker Hub does not offer it at all:
//! docker's search there uses a Hub-only API berth does not speak); and it
//! is a full listing filtered on the client, so at most
//! [`MAX_CATALOG_ENTRIES`] names are read.

use super::client::{header, read_body, Client, Payload};
use super::{CredentialStore, RegistryError};

/// Names read from a catalog at most, whatever `--limit` says.
pub const MAX_CATALOG_ENTRIES: usize = 10_000;
const PAGE: usize = 100;

/// `--limit` and `--insecure`.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub limit: usize,
    pub insecure: bool,
}

/// Repositories (`registry/name`) of `registry` whose name contains `term`.
pub fn search(
    registry: &str,
    term: &str,
    options: &SearchOptions,
    credentials: &CredentialStore,
) -> Result<Vec<String>, RegistryError> {
    if registry == crate::image::reference::DEFAULT_DOMAIN {
        return Err(RegistryError::Invalid(
            "Docker Hub has no /v2/_catalog: berth search works with registries that offer the catalog API (name one: berth search localhost:5000/TERM)".into(),
        ));
    }
    let client = Client::connect(
        registry,
        "registry:catalog:*",
        options.insecure,
        credentials,
    )?;
    let mut found = Vec::new();
    let mut seen = 0;
    let mut next = Some(format!("/v2/_catalog?n={PAGE}"));
    while let Some(url) = next.take() {
        let response = client.request("GET", &url, &[], &Payload::Empty)?;
        if !response.status().is_success() {
            let err = client.error_from(&format!("the catalog of {registry}"), response);
            return Err(match err {
                RegistryError::NotFound(m) => RegistryError::NotFound(format!(
                    "{m} ({registry} does not offer the catalog API)"
                )),
                other => other,
            });
        }
        let link = header(&response, "link");
        #[derive(serde::Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let catalog: Catalog = read_body(response, 16 << 20, &format!("the catalog of {registry}"))
            .and_then(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| RegistryError::Protocol(format!("the catalog of {registry}: {e}")))
            })?;
        seen += catalog.repositories.len();
        for name in catalog.repositories {
            if name.contains(term) && found.len() < options.limit {
                found.push(format!("{registry}/{name}"));
            }
        }
        if found.len() >= options.limit || seen >= MAX_CATALOG_ENTRIES {
            break;
        }
        next = next_link(&link);
    }
    Ok(found)
}

/// The target of `Link: </v2/_catalog?last=x&n=100>; rel="next"`.
fn next_link(link: &str) -> Option<String> {
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    link[end..]
        .contains("rel=\"next\"")
        .then(|| link[start..end].to_string())
}

/// Split a search argument into (registry, term): `localhost:5000/app` ->
/// (`localhost:5000`, `app`); a bare term means Docker Hub.
pub fn split_term(argument: &str) -> (String, String) {
    match argument.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_string(), rest.to_string())
        }
        _ => (
            crate::image::reference::DEFAULT_DOMAIN.to_string(),
            argument.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_and_terms() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=100>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=100")
        );
        assert_eq!(next_link(""), None);
        assert_eq!(
            split_term("localhost:5000/app"),
            ("localhost:5000".into(), "app".into())
        );
        assert_eq!(
            split_term("busybox"),
            ("docker.io".into(), "busybox".into())
        );
    }
}

//! Image references: `name[:tag][@digest]`, normalized exactly as docker does.
//!
//! Mechanism: pure string parsing (no I/O), following the grammar of the
//! distribution project's `reference` package: `busybox` means
//! `docker.io/library/busybox:latest`, `user/app` means `docker.io/user/app`,
//! and a first component with a `.` or `:` (or `localhost`) is a registry.
//! The store keys tags by the full form; users see the familiar one.

use std::fmt;

use super::digest::{is_full_hex, Digest};

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// A parsed, normalized reference.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    /// Registry host (and port), `docker.io` by default.
    pub domain: String,
    /// Repository path, `library/busybox` for official images.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Why a string is not a valid reference (docker's wording where it has one).
#[derive(Debug, thiserror::Error)]
#[error("invalid reference format: {reason}: {input:?}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

fn invalid(input: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

impl Reference {
    /// Parse and normalize `input` (`busybox`, `busybox:1.36`,
    /// `localhost:5000/app@sha256:…`, `docker.io/library/busybox`). No tag
    /// and no digest stays "no tag": see [`Reference::with_default_tag`].
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(invalid(input, "empty reference"));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = Digest::parse(digest).map_err(|e| invalid(input, e.to_string()))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        let (name, tag) = split_tag(name_and_tag);
        if let Some(tag) = tag {
            check_tag(input, tag)?;
        }
        if is_full_hex(name) {
            return Err(invalid(
                input,
                "repository name cannot be a 64-byte hexadecimal string (use it as an image id)",
            ));
        }
        let (domain, path) = split_domain(name);
        check_domain(input, &domain)?;
        check_path(input, &path)?;
        let full_len = domain.len() + 1 + path.len();
        if full_len > MAX_NAME_LEN {
            return Err(invalid(
                input,
                "repository name is longer than 255 characters",
            ));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The same reference with `:latest` when it has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// The repository: `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as users write it: `busybox`, `user/app`, `quay.io/x/y`.
    pub fn familiar_repository(&self) -> String {
        familiar_repository(&self.domain, &self.path)
    }

    /// The full normalized form: `docker.io/library/busybox:latest`.
    pub fn full(&self) -> String {
        self.render(self.repository())
    }

    /// The familiar form: `busybox:latest`, `busybox@sha256:…`.
    pub fn familiar(&self) -> String {
        self.render(self.familiar_repository())
    }

    fn render(&self, repository: String) -> String {
        let mut text = repository;
        if let Some(tag) = &self.tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            text.push('@');
            text.push_str(digest.as_str());
        }
        text
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar())
    }
}

/// `busybox` for `docker.io` + `library/busybox`, else `domain/path`.
pub fn familiar_repository(domain: &str, path: &str) -> String {
    if domain == DEFAULT_DOMAIN {
        match path.strip_prefix(OFFICIAL_PREFIX) {
            Some(short) if !short.contains('/') => short.to_string(),
            _ => path.to_string(),
        }
    } else {
        format!("{domain}/{path}")
    }
}

/// Split `name[:tag]`: a `:` after the last `/` starts a tag (a `:` before
/// it belongs to a registry port, as in `localhost:5000/app`).
fn split_tag(name_and_tag: &str) -> (&str, Option<&str>) {
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    match name_and_tag[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
        }
        None => (name_and_tag, None),
    }
}

/// Docker's rule: the first component is a registry when it contains `.` or
/// `:`, is `localhost`, or has upper case; official images get `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        path = format!("{OFFICIAL_PREFIX}{path}");
    }
    (domain, path)
}

fn check_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            input,
            format!("tag {tag:?} must be 1-128 of [A-Za-z0-9_.-], not starting with . or -"),
        ))
    }
}

fn check_domain(input: &str, domain: &str) -> Result<(), ReferenceError> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || domain.starts_with('[') => (host, Some(port)),
        _ => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                input,
                format!("registry port {port:?} is not a number"),
            ));
        }
    }
    let ipv6 = host.starts_with('[') && host.ends_with(']');
    let valid_host = ipv6
        || (!host.is_empty()
            && host.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            }));
    if valid_host {
        Ok(())
    } else {
        Err(invalid(
            input,
            format!("registry {domain:?} is not a valid host"),
        ))
    }
}

fn check_path(input: &str, path: &str) -> Result<(), ReferenceError> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid(input, "repository name must be lowercase"));
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(invalid(
                input,
                format!(
                    "repository name component {component:?} must be lowercase letters and \
                     digits, separated by '.', '_', '__' or '-'"
                ),
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(input: &str) -> String {
        Reference::parse(input).unwrap().with_default_tag().full()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(
            full("docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(full("quay.io/x/y"), "quay.io/x/y:latest");
    }

    #[test]
    fn familiar_forms() {
        let r = Reference::parse("docker.io/library/busybox:latest").unwrap();
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("docker.io/user/app").unwrap();
        assert_eq!(r.familiar_repository(), "user/app");
        let r = Reference::parse("localhost:5000/app:1").unwrap();
        assert_eq!(r.familiar(), "localhost:5000/app:1");
    }

    #[test]
    fn digests_keep_no_default_tag() {
        let hex = "a".repeat(64);
        let r = Reference::parse(&format!("busybox@sha256:{hex}"))
            .unwrap()
            .with_default_tag();
        assert_eq!(r.tag, None);
        assert_eq!(r.familiar(), format!("busybox@sha256:{hex}"));
    }

    #[test]
    fn invalid_references_are_refused() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/-b",
            "busybox@sha256:abc",
            &"a".repeat(64),
            "host:port/x",
            "bad__-name",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let err = Reference::parse("Busybox").unwrap_err();
        assert!(
            err.to_string().contains("invalid reference format"),
            "{err}"
        );
    }

    #[test]
    fn separators() {
        assert!(valid_path_component("a.b_c__d---e"));
        assert!(!valid_path_component("a..b"));
        assert!(!valid_path_component("a___b"));
        assert!(!valid_path_component("a-"));
    }
}

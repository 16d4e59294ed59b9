//! Registry authentication: challenges, tokens, and stored credentials.
//!
//! Mechanism (the distribution "token authentication" spec): a registry
//! answers an unauthenticated request with `401` and a `WWW-Authenticate`
//! header naming the scheme:
//! - `Basic realm="..."`: send `Authorization: Basic base64(user:password)`;
//! - `Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"`:
//!   GET the realm with `service` and `scope` as query parameters (with
//!   Basic credentials when the user logged in; anonymously otherwise), read
//!   `token` (or `access_token`) from the JSON answer, and send
//!   `Authorization: Bearer <token>`.
//!
//! Credentials live where docker keeps them, in `config.json` under
//! `"auths": {"<registry>": {"auth": "base64(user:password)"}}` (see
//! [`CredentialStore`]); the file is written atomically with mode 0600 and
//! every other key in it is kept.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

/// The key docker uses for Docker Hub in config.json.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercase).
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parse `Scheme k="v", k2=v2` (RFC 7235; quoted strings with `\` escapes).
/// Only the first challenge of the header is used.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = match header.find(char::is_whitespace) {
        Some(i) => (&header[..i], header[i..].trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            out.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if !key.is_empty() {
            params.insert(key, value);
        }
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// A username and password (or identity token used as a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// `Basic base64(user:password)`.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Why credentials could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path}: not a valid docker config.json: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// docker's `config.json`, where `login` stores credentials.
///
/// Location, first match: `$REGISTRY_AUTH_FILE` (podman's variable, a file),
/// `$DOCKER_CONFIG/config.json`, `$HOME/.docker/config.json`. So
/// `berth login` and `docker login` share credentials. Credential helpers
/// (`credsStore`, `credHelpers`) are not run: entries they manage are
/// invisible to berth.
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    /// The store at the default location (see the type's docs).
    pub fn default_location() -> CredentialStore {
        let path =
            if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
                PathBuf::from(file)
            } else if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
                PathBuf::from(dir).join("config.json")
            } else {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/root"));
                home.join(".docker").join("config.json")
            };
        CredentialStore { path }
    }

    pub fn at(path: impl Into<PathBuf>) -> CredentialStore {
        CredentialStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Map<String, Value>, CredentialError> {
        match fs::read(&self.path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err(CredentialError::Invalid {
                    path: self.path.clone(),
                    reason: "the top level is not an object".into(),
                }),
                Err(e) => Err(CredentialError::Invalid {
                    path: self.path.clone(),
                    reason: e.to_string(),
                }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Map::new()),
            Err(error) => Err(CredentialError::Io {
                path: self.path.clone(),
                error,
            }),
        }
    }

    fn write(&self, config: &Map<String, Value>) -> Result<(), CredentialError> {
        let io_err = |error| CredentialError::Io {
            path: self.path.clone(),
            error,
        };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        let bytes = serde_json::to_vec_pretty(config).map_err(|e| io_err(io::Error::other(e)))?;
        let tmp = crate::fsutil::temp_sibling(&self.path);
        let result = (|| -> io::Result<()> {
            use io::Write;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.write_all(b"\n")?;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io_err)
    }

    /// The credentials stored for `registry` (a config.json key), if any.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, CredentialError> {
        let config = self.read()?;
        let Some(auths) = config.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let entry = auths.get(registry).or_else(|| {
            // docker also matches keys written as URLs (`https://host/v1/`).
            auths
                .iter()
                .find(|(k, _)| strip_url(k) == registry)
                .map(|(_, v)| v)
        });
        let Some(entry) = entry else { return Ok(None) };
        if let (Some(user), Some(password)) = (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            return Ok(Some(Credentials {
                username: user.to_string(),
                password: password.to_string(),
            }));
        }
        let Some(auth) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            return Ok(None);
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| CredentialError::Invalid {
                path: self.path.clone(),
                reason: format!("the auth entry of {registry} is not base64 of user:password"),
            })?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| CredentialError::Invalid {
                path: self.path.clone(),
                reason: format!("the auth entry of {registry} is not user:password"),
            })?;
        Ok(Some(Credentials {
            username: user.to_string(),
            password: password.to_string(),
        }))
    }

    /// Store credentials for `registry` (mode 0600, other keys kept).
    pub fn set(&self, registry: &str, credentials: &Credentials) -> Result<(), CredentialError> {
        let mut config = self.read()?;
        let auths = config
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let raw = format!("{}:{}", credentials.username, credentials.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        if let Some(map) = auths.as_object_mut() {
            map.insert(registry.to_string(), serde_json::json!({ "auth": encoded }));
        }
        self.write(&config)
    }

    /// Forget `registry`; false when nothing was stored.
    pub fn remove(&self, registry: &str) -> Result<bool, CredentialError> {
        let mut config = self.read()?;
        let removed = config
            .get_mut("auths")
            .and_then(Value::as_object_mut)
            .map(|auths| {
                let keys: Vec<String> = auths
                    .keys()
                    .filter(|k| k.as_str() == registry || strip_url(k) == registry)
                    .cloned()
                    .collect();
                for k in &keys {
                    auths.remove(k);
                }
                !keys.is_empty()
            })
            .unwrap_or(false);
        if removed {
            self.write(&config)?;
        }
        Ok(removed)
    }
}

/// `https://host:5000/v1/` -> `host:5000`.
fn strip_url(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// The config.json key for a registry domain (`docker.io` is docker's URL).
pub fn auth_key(domain: &str) -> String {
    if domain == crate::image::reference::DEFAULT_DOMAIN
        || domain == "index.docker.io"
        || domain == "registry-1.docker.io"
    {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        domain.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_like_the_spec() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull"));
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("Registry Realm"));
        let c =
            parse_challenge(r#"Bearer realm=http://x/t, error="insufficient \"scope\"""#).unwrap();
        assert_eq!(c.param("realm"), Some("http://x/t"));
        assert_eq!(c.param("error"), Some("insufficient \"scope\""));
        assert!(parse_challenge("").is_none());
        let _ = parse_challenge("Bearer realm=\"unterminated");
        let _ = parse_challenge("Bearer ===,,,\"");
    }

    #[test]
    fn credentials_round_trip_with_mode_0600_and_other_keys_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, r#"{"psFormat": "table {{.ID}}", "auths": {"https://old.example/v1/": {"auth": "dTpw"}}}"#).unwrap();
        let store = CredentialStore::at(&path);
        let creds = Credentials {
            username: "alice".into(),
            password: "s3cr:et".into(),
        };
        store.set("localhost:5000", &creds).unwrap();
        assert_eq!(store.get("localhost:5000").unwrap(), Some(creds));
        assert_eq!(store.get("old.example").unwrap().unwrap().username, "u");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("psFormat"), "other keys are kept: {text}");
        assert!(
            !text.contains("s3cr:et"),
            "the password is not stored in clear"
        );
        assert!(store.remove("localhost:5000").unwrap());
        assert!(!store.remove("localhost:5000").unwrap());
        assert_eq!(store.get("localhost:5000").unwrap(), None);
    }

    #[test]
    fn basic_header_and_hub_key() {
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(creds.basic_header(), "Basic dTpw");
        assert_eq!(auth_key("docker.io"), DOCKER_HUB_AUTH_KEY);
        assert_eq!(auth_key("localhost:5000"), "localhost:5000");
    }
}

//! A client for one registry (Registry HTTP API v2, the OCI distribution spec).
//!
//! Mechanism: plain HTTP requests under `/v2/`. On creation the client
//! *pings* `GET /v2/`: `200` means anonymous access; `401` carries the
//! `WWW-Authenticate` challenge that says how to authenticate (see
//! [`super::auth`]), which is done once, up front, for the scope the
//! operation needs (`repository:NAME:pull` or `pull,push`). A later `401`
//! (an expired token) re-authenticates with that response's challenge and
//! retries once. HTTPS is used unless the registry is on the loopback
//! interface (`localhost`, `127.0.0.0/8`, `::1`) or named with
//! `--insecure`: then plain HTTP is tried when HTTPS fails, as docker does
//! for insecure registries.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;
use ureq::http::{Request, Response};
use ureq::Agent;

use super::auth::{self, parse_challenge, Challenge, CredentialStore, Credentials};
use super::http::{self, describe};
use super::RegistryError;

/// Docker Hub's API endpoint (the `docker.io` domain is only a name).
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// What to send as a request body.
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A file, reopened on a retry.
    File(&'a Path),
}

/// A connection to one registry, authenticated for one scope.
pub struct Client {
    agent: Agent,
    /// `https://host[:port]` or `http://...`.
    base: String,
    /// The registry as references name it (`docker.io`, `localhost:5000`).
    pub domain: String,
    credentials: Option<Credentials>,
    /// The Authorization header value in use.
    authorization: Mutex<Option<String>>,
    scope: String,
}

/// Registry error bodies: `{"errors": [{"code": "...", "message": "..."}]}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// True for registries on the loopback interface, which docker treats as insecure.
pub fn is_loopback(domain: &str) -> bool {
    let host = match domain.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') => {
            host
        }
        _ => domain,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    /// Connect to `domain` and authenticate for `scope` (space-separated
    /// scopes allowed). `insecure`: allow plain HTTP and unverified TLS.
    pub fn connect(
        domain: &str,
        scope: &str,
        insecure: bool,
        credentials: &CredentialStore,
    ) -> Result<Client, RegistryError> {
        let host = if domain == crate::image::reference::DEFAULT_DOMAIN {
            DOCKER_HUB_ENDPOINT
        } else {
            domain
        };
        let credentials = credentials.get(&auth::auth_key(domain))?;
        let allow_http = insecure || is_loopback(domain);
        let agent = http::agent(insecure);
        let mut client = Client {
            agent,
            base: format!("https://{host}"),
            domain: domain.to_string(),
            credentials,
            authorization: Mutex::new(None),
            scope: scope.to_string(),
        };
        let ping = match client.raw("GET", &format!("{}/v2/", client.base), &[], &Payload::Empty) {
            Ok(response) => response,
            Err(err) if allow_http => {
                tracing::debug!(registry = domain, error = %err, "HTTPS failed; trying plain HTTP (insecure registry)");
                client.base = format!("http://{host}");
                client.raw("GET", &format!("{}/v2/", client.base), &[], &Payload::Empty)?
            }
            Err(err) => return Err(err),
        };
        tracing::debug!(registry = domain, base = %client.base, status = ping.status().as_u16(), "pinged /v2/");
        match ping.status().as_u16() {
            200..=299 => {}
            401 => {
                let challenge = challenge_of(&ping).ok_or_else(|| {
                    RegistryError::Protocol(format!(
                        "{domain}: 401 without a WWW-Authenticate challenge"
                    ))
                })?;
                client.authenticate(&challenge)?;
            }
            404 => {
                return Err(RegistryError::Protocol(format!(
                    "{domain} does not speak the Registry HTTP API v2 (GET /v2/ answered 404)"
                )))
            }
            status => {
                return Err(RegistryError::Protocol(format!(
                    "{domain}: GET /v2/ answered HTTP {status}"
                )));
            }
        }
        Ok(client)
    }

    /// The endpoint in use (`http://127.0.0.1:5000`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Get an Authorization for the challenge (Basic: the stored
    /// credentials; Bearer: a token from the realm).
    fn authenticate(&self, challenge: &Challenge) -> Result<(), RegistryError> {
        let header = match challenge.scheme.as_str() {
            "basic" => match &self.credentials {
                Some(creds) => creds.basic_header(),
                None => return Err(self.unauthorized("authentication required")),
            },
            "bearer" => format!("Bearer {}", self.fetch_token(challenge)?),
            other => {
                return Err(RegistryError::Protocol(format!(
                "{}: unsupported authentication scheme {other:?} (berth speaks Basic and Bearer)",
                self.domain
            )))
            }
        };
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(header);
        Ok(())
    }

    fn unauthorized(&self, detail: &str) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.domain.clone(),
            detail: detail.to_string(),
            logged_in: self.credentials.is_some(),
        }
    }

    /// The token service round trip.
    fn fetch_token(&self, challenge: &Challenge) -> Result<String, RegistryError> {
        let realm = challenge.param("realm").ok_or_else(|| {
            RegistryError::Protocol(format!("{}: Bearer challenge without a realm", self.domain))
        })?;
        let mut url = realm.to_string();
        let mut query: Vec<(String, String)> = Vec::new();
        if let Some(service) = challenge.param("service") {
            query.push(("service".into(), service.to_string()));
        }
        let scopes: Vec<&str> = match challenge.param("scope") {
            Some(s) if !self.scope.contains(s) => {
                s.split(' ').chain(self.scope.split(' ')).collect()
            }
            _ => self.scope.split(' ').collect(),
        };
        for scope in scopes.into_iter().filter(|s| !s.is_empty()) {
            query.push(("scope".into(), scope.to_string()));
        }
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 && !realm.contains('?') {
                '?'
            } else {
                '&'
            });
            url.push_str(&format!("{}={}", percent_encode(k), percent_encode(v)));
        }
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(creds) = &self.credentials {
            headers.push(("Authorization", creds.basic_header()));
        }
        tracing::debug!(realm, "fetching a bearer token");
        let response = self.raw("GET", &url, &headers, &Payload::Empty)?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(self.unauthorized("the token service refused the credentials"));
        }
        if !(200..300).contains(&status) {
            return Err(RegistryError::Protocol(format!(
                "token service {realm} answered HTTP {status}"
            )));
        }
        #[derive(Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let token: Token = read_body(response, 1 << 20, &format!("token service {realm}"))
            .and_then(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| RegistryError::Protocol(format!("token service {realm}: {e}")))
            })?;
        let token = if token.token.is_empty() {
            token.access_token
        } else {
            token.token
        };
        if token.is_empty() {
            return Err(RegistryError::Protocol(format!(
                "token service {realm} returned no token"
            )));
        }
        Ok(token)
    }

    /// One request without authentication handling.
    fn raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        payload: &Payload<'_>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        let transport = |e: ureq::Error| RegistryError::Transport {
            url: url.to_string(),
            message: describe(&e),
        };
        let bad = |e: ureq::http::Error| RegistryError::Protocol(format!("{url}: {e}"));
        match payload {
            Payload::Empty => self
                .agent
                .run(builder.body(()).map_err(bad)?)
                .map_err(transport),
            Payload::Bytes(bytes) => self
                .agent
                .run(builder.body(*bytes).map_err(bad)?)
                .map_err(transport),
            Payload::File(path) => {
                let file = File::open(path).map_err(|e| RegistryError::Io {
                    context: format!("opening {}", path.display()),
                    error: e,
                })?;
                self.agent
                    .run(builder.body(file).map_err(bad)?)
                    .map_err(transport)
            }
        }
    }

    /// A request to `path` (under the base URL, or an absolute URL as a
    /// registry's `Location` gives), authenticated; a 401 re-authenticates
    /// once with that response's challenge.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        payload: &Payload<'_>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let url = self.url(path);
        for attempt in 0..2 {
            let mut all: Vec<(&str, String)> = headers.to_vec();
            if let Some(authorization) = self
                .authorization
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                all.push(("Authorization", authorization));
            }
            let response = self.raw(method, &url, &all, payload)?;
            tracing::debug!(method, url = %url, status = response.status().as_u16(), "registry request");
            if response.status().as_u16() == 401 && attempt == 0 {
                match challenge_of(&response) {
                    Some(challenge) => {
                        self.authenticate(&challenge)?;
                        continue;
                    }
                    None => return Err(self.unauthorized("authentication required")),
                }
            }
            if response.status().as_u16() == 401 {
                return Err(self.unauthorized("authentication required"));
            }
            return Ok(response);
        }
        Err(self.unauthorized("authentication required"))
    }

    /// An absolute URL for a path or a `Location` header value.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/{path}", self.base)
        }
    }

    /// A registry error for an unexpected response, with the registry's message.
    pub fn error_from(&self, what: &str, response: Response<ureq::Body>) -> RegistryError {
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .with_config()
            .limit(64 << 10)
            .read_to_string()
            .unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&body)
            .ok()
            .map(|b| {
                b.errors
                    .iter()
                    .map(|e| {
                        if e.message.is_empty() {
                            e.code.to_lowercase()
                        } else {
                            e.message.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            404 => RegistryError::NotFound(format!("{what}: {message}")),
            401 | 403 => RegistryError::Unauthorized {
                registry: self.domain.clone(),
                detail: format!("{what}: {message}"),
                logged_in: self.credentials.is_some(),
            },
            _ => RegistryError::Protocol(format!("{what}: {message} (HTTP {status})")),
        }
    }
}

fn challenge_of(response: &Response<ureq::Body>) -> Option<Challenge> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(parse_challenge)
        .find(|c| c.scheme == "bearer" || c.scheme == "basic")
}

/// Percent-encoding for query values (RFC 3986 unreserved characters kept).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Header value as text ("" when absent or not text).
/// The body of `response`, at most `limit` bytes; the error names `what`.
pub fn read_body(
    response: Response<ureq::Body>,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    response
        .into_body()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| RegistryError::Protocol(format!("{what}: {}", describe(&e))))
}

pub fn header(response: &Response<ureq::Body>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for local in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "x.localhost",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "docker.io",
            "quay.io",
            "10.0.0.1:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }

    /// A registry that wants a Bearer token from its token service (both
    /// on one loopback port): the whole challenge -> token -> retry dance.
    #[test]
    fn bearer_tokens_are_fetched_from_the_realm_with_the_scope_and_credentials() {
        use std::io::{BufRead, BufReader, Write};
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(20) {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut raw = Vec::new();
                let _ = reader.read_until(b'\n', &mut raw);
                let request_line = String::from_utf8_lossy(&raw).into_owned();
                if !request_line.starts_with("GET ") {
                    continue; // berth tries TLS first: not for this server
                }
                let mut authorization = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        break;
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line
                        .strip_prefix("authorization: ")
                        .or_else(|| line.strip_prefix("Authorization: "))
                    {
                        authorization = v.trim().to_string();
                    }
                }
                let path = request_line
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                log.lock()
                    .unwrap()
                    .push(format!("{path} [{authorization}]"));
                let (status, extra, body) = if path.starts_with("/token?") {
                    if authorization == "Basic dTpw" {
                        ("200 OK", String::new(), r#"{"token":"t0k3n"}"#.to_string())
                    } else {
                        ("401 Unauthorized", String::new(), "{}".to_string())
                    }
                } else if authorization == "Bearer t0k3n" {
                    ("200 OK", String::new(), "{}".to_string())
                } else {
                    (
                        "401 Unauthorized",
                        format!(
                            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:x:pull\"\r\n"
                        ),
                        "{}".to_string(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::at(dir.path().join("config.json"));
        let domain = format!("127.0.0.1:{port}");
        store
            .set(
                &domain,
                &Credentials {
                    username: "u".into(),
                    password: "p".into(),
                },
            )
            .unwrap();
        let client = Client::connect(&domain, "repository:x:pull", false, &store).unwrap();
        let response = client
            .request("GET", "/v2/x/tags/list", &[], &Payload::Empty)
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.iter().any(
                |s| s.starts_with("/token?service=fake&scope=repository%3Ax%3Apull")
                    && s.ends_with("[Basic dTpw]")
            ),
            "{seen:?}"
        );
        assert!(seen.last().unwrap().ends_with("[Bearer t0k3n]"), "{seen:?}");

        // Without credentials the token service refuses: a clear error.
        let anonymous = CredentialStore::at(dir.path().join("none.json"));
        let err = Client::connect(&domain, "repository:x:pull", false, &anonymous)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains(&format!("run `berth login {domain}`")),
            "{err}"
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            percent_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}

//! The HTTP transport: one blocking client for registries and `ADD <url>`.
//!
//! Mechanism: `ureq` (HTTP/1.1 over `std::net::TcpStream`, TLS by rustls
//! with the Mozilla root certificates bundled in `webpki-roots`). Status
//! codes are returned, not turned into errors: the registry protocol speaks
//! through them (401 asks for credentials, 404 means "no such blob", 206
//! answers a Range request). Redirects (registries send blob downloads to a
//! CDN) are followed for GET and HEAD, without the Authorization header.
//! `--insecure` disables certificate verification for that registry only.

use std::io::Read;
use std::time::Duration;

use ureq::tls::TlsConfig;
use ureq::Agent;

/// The User-Agent berth sends.
pub const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));

/// An HTTP client; `insecure` skips TLS certificate verification.
pub fn agent(insecure: bool) -> Agent {
    let tls = TlsConfig::builder().disable_verification(insecure).build();
    Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .max_redirects(10)
        .build()
        .new_agent()
}

/// A short, readable form of a transport error.
pub fn describe(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Io(e) => e.to_string(),
        ureq::Error::HostNotFound => "host not found (DNS lookup failed)".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t:?})"),
        other => other.to_string(),
    }
}

/// GET `url` and return its body, for `ADD <url>` (any non-2xx is an error).
pub fn fetch_url(url: &str) -> Result<Box<dyn Read + Send>, String> {
    let response = agent(false).get(url).call().map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(format!("the server answered HTTP {status}"));
    }
    Ok(Box::new(response.into_body().into_reader()))
}

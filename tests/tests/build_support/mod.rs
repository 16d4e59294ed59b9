//! Helpers shared by the build and registry tests: the debian fixture's base
//! layer as an image of its own (what the test Dockerfile builds on), a real
//! docker-registry on 127.0.0.1 stopped by PID on drop, and a tiny HTTP proxy
//! in front of it that corrupts or cuts blob downloads.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_engine::image::manifest::{Index, Manifest};
use berth_tests::{describe, fixture, TestRoot};
use serde_json::{json, Value};

/// Run `berth ARGS` in `root` with credentials kept in `docker_config`.
pub fn berth_with(root: &TestRoot, docker_config: &Path, args: &[&str]) -> Output {
    root.berth(args)
        .env("DOCKER_CONFIG", docker_config)
        .env_remove("REGISTRY_AUTH_FILE")
        .output()
        .expect("spawn berth")
}

pub fn ok_with(root: &TestRoot, docker_config: &Path, args: &[&str]) -> String {
    let out = berth_with(root, docker_config, args);
    assert!(out.status.success(), "berth {args:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Load `debian-base:test`: the debian fixture's first layer (debootstrap
/// minbase) alone, with a plain config, as an OCI layout made from the
/// fixture's own blobs. The test Dockerfile rebuilds the other three layers.
pub fn load_debian_base(root: &TestRoot) {
    let layout_src = fixture("debian/oci");
    let index: Index =
        serde_json::from_slice(&fs::read(layout_src.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        layout_src
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: Manifest =
        serde_json::from_slice(&fs::read(blob(index.manifests[0].digest.as_str())).unwrap())
            .unwrap();
    let config: Value =
        serde_json::from_slice(&fs::read(blob(manifest.config.digest.as_str())).unwrap()).unwrap();
    let base_layer = manifest.layers[0].clone();
    let new_config = json!({
        "architecture": config["architecture"],
        "os": "linux",
        "created": config["created"],
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["bash"]
        },
        "rootfs": {"type": "layers", "diff_ids": [config["rootfs"]["diff_ids"][0]]},
        "history": [config["history"][0]]
    });
    let config_bytes = serde_json::to_vec(&new_config).unwrap();
    let config_digest = berth_engine::image::Digest::of(&config_bytes);
    let new_manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config_bytes.len()},
        "layers": [base_layer],
    });
    let manifest_bytes = serde_json::to_vec(&new_manifest).unwrap();
    let manifest_digest = berth_engine::image::Digest::of(&manifest_bytes);
    let dir = root.path().join("debian-base-layout");
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(blobs.join(config_digest.hex()), &config_bytes).unwrap();
    fs::write(blobs.join(manifest_digest.hex()), &manifest_bytes).unwrap();
    let layer_target = blobs.join(base_layer.digest.hex());
    if fs::hard_link(blob(base_layer.digest.as_str()), &layer_target).is_err() {
        fs::copy(blob(base_layer.digest.as_str()), &layer_target).unwrap();
    }
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.as_str(),
            "size": manifest_bytes.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/debian-base:test"}
        }]
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    root.ok(["load", "-i", dir.to_str().unwrap()]);
    fs::remove_dir_all(&dir).unwrap();
}

/// The Dockerfile that remakes the debian fixture's three upper layers (see
/// rootfs-fixtures/debian-layers.sh) and its config, plus a COPY --chown.
pub const DEBIAN_DOCKERFILE: &str = r#"# The debian fixture's upper layers, as a Dockerfile.
FROM debian-base:test
RUN useradd --uid 1000 --user-group --create-home --shell /bin/bash app \
 && mkdir -p /srv/app/empty /srv/app/cache /usr/local/bin \
 && printf "hello from layer 1\n" > /srv/app/hello.txt \
 && printf "owned by app\n" > /srv/app/owned-by-app \
 && chown -R 1000:1000 /srv/app \
 && ln /srv/app/hello.txt /srv/app/hello.hardlink \
 && ln -s /etc/os-release /srv/app/os-release.abs \
 && ln -s hello.txt /srv/app/hello.rel \
 && cp /bin/true /usr/local/bin/suid-true && chmod 4755 /usr/local/bin/suid-true \
 && mkfifo /srv/app/fifo \
 && printf "a file\n" > /srv/app/shape \
 && for f in a b c; do echo "$f" > /srv/app/cache/$f; done
COPY --chown=app:app fixture-entrypoint /usr/local/bin/
# Deleting files, replacing directories (whiteouts and opaque markers).
RUN rm /etc/issue.net \
 && rm -r /usr/share/doc \
 && rm -r /etc/apt/apt.conf.d && mkdir /etc/apt/apt.conf.d \
 && printf 'APT::Install-Recommends "false";\n' > /etc/apt/apt.conf.d/99berth \
 && rm -r /srv/app/cache && mkdir /srv/app/cache && echo fresh > /srv/app/cache/fresh \
 && rm /srv/app/shape && mkdir /srv/app/shape && printf "now a directory\n" > /srv/app/shape/inside \
 && rm /srv/app/hello.rel
RUN rm -r /srv/app/shape && printf "a file again\n" > /srv/app/shape \
 && printf "layer 3\n" > /srv/app/layer3.txt && chown 1000:1000 /srv/app/layer3.txt
ENV LANG=C.UTF-8 BERTH_FIXTURE=debian
WORKDIR /srv/app
USER app
EXPOSE 8080/tcp 5353/udp
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/fixture-entrypoint"]
CMD ["/bin/bash"]
"#;

pub const ENTRYPOINT_SCRIPT: &str =
    "#!/bin/sh\n# berth debian fixture entrypoint: run the command given.\nexec \"$@\"\n";

/// A build context holding the debian Dockerfile.
pub fn debian_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("debian-ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), DEBIAN_DOCKERFILE).unwrap();
    fs::write(ctx.join("fixture-entrypoint"), ENTRYPOINT_SCRIPT).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        ctx.join("fixture-entrypoint"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    ctx
}

/// What a container of the debian build shows: the facts the Dockerfile set.
pub const DEBIAN_PROBE: &str = "id -un; pwd; echo $LANG $BERTH_FIXTURE; cat /srv/app/hello.txt /srv/app/shape /srv/app/layer3.txt; \
ls /srv/app/cache; ls /etc/apt/apt.conf.d; test -e /etc/issue.net || echo no-issue; test -e /usr/share/doc || echo no-doc; \
stat -c '%U %a' /usr/local/bin/fixture-entrypoint /usr/local/bin/suid-true; stat -c %h /srv/app/hello.txt; readlink /srv/app/os-release.abs; \
test -p /srv/app/fifo && echo fifo";

pub const DEBIAN_PROBE_EXPECTED: &str = "app\n/srv/app\nC.UTF-8 debian\nhello from layer 1\na file again\nlayer 3\nfresh\n99berth\nno-issue\nno-doc\napp 755\nroot 4755\n2\n/etc/os-release\nfifo\n";

// ---- a real registry -------------------------------------------------------

/// Debian's docker-registry (distribution 2.8) on 127.0.0.1, in a temporary
/// directory, optionally with htpasswd (bcrypt) authentication.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

pub const REGISTRY_USER: &str = "alice";
pub const REGISTRY_PASSWORD: &str = "correct horse";

impl Registry {
    pub fn start(with_auth: bool) -> Registry {
        let binary = Path::new("/usr/bin/docker-registry");
        assert!(
            binary.exists(),
            "/usr/bin/docker-registry is missing: apt-get install docker-registry (the registry tests run a real one)"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n",
            dir.path().join("data").display()
        );
        if with_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", REGISTRY_USER, REGISTRY_PASSWORD])
                .output()
                .expect("htpasswd (apache2-utils) is needed for the auth test: apt-get install apache2-utils");
            assert!(out.status.success(), "htpasswd: {}", describe(&out));
            fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { child, port, dir };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on 127.0.0.1:{}: {}",
                self.port,
                fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `localhost:PORT`.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- a proxy that damages blob downloads -----------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Flip one byte in the middle of every layer blob.
    FlipByte,
    /// Send only the first half of each layer blob, once, then cut the connection.
    CutFirstDownload,
}

/// One request the proxy forwarded: method, path, Range header.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of `upstream`; one upstream
/// connection per request (`Connection: close`), the response read whole.
pub struct Proxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Paths whose download was cut.
    cut: Arc<Mutex<HashSet<String>>>,
    thread: Option<JoinHandle<()>>,
}

/// Blobs above this size are "layers" (configs are smaller).
const LAYER_THRESHOLD: usize = 4096;

impl Proxy {
    pub fn start(upstream: u16, damage: Damage) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cut: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
        let (stop2, seen2, cut2) = (stop.clone(), seen.clone(), cut.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (seen, cut) = (seen2.clone(), cut2.clone());
                std::thread::spawn(move || serve(conn, upstream, damage, &seen, &cut));
            }
        });
        Proxy {
            port,
            stop,
            seen,
            cut,
            thread: Some(thread),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The blob paths whose first download was cut halfway.
    pub fn cut_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.cut.lock().unwrap().iter().cloned().collect();
        paths.sort();
        paths
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read up to the end of the head (`\r\n\r\n`); returns head and what followed.
fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn serve(
    mut client: TcpStream,
    upstream: u16,
    damage: Damage,
    seen: &Mutex<Vec<Seen>>,
    cut: &Mutex<HashSet<String>>,
) {
    loop {
        let Some((head, _body)) = read_head(&mut client) else {
            return;
        };
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut range = None;
        let mut forwarded = format!("{request_line}\r\n");
        for line in lines.filter(|l| !l.is_empty()) {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                continue;
            }
            if lower.starts_with("range:") {
                range = Some(line[6..].trim().to_string());
            }
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
        forwarded.push_str("Connection: close\r\n\r\n");
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
        });
        let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        if up.write_all(forwarded.as_bytes()).is_err() {
            return;
        }
        let mut response = Vec::new();
        if up.read_to_end(&mut response).is_err() {
            return;
        }
        let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let (resp_head, body) = response.split_at(split + 4);
        let mut body = body.to_vec();
        let is_layer =
            method == "GET" && path.contains("/blobs/sha256:") && body.len() > LAYER_THRESHOLD;
        let status_ok =
            resp_head.starts_with(b"HTTP/1.1 200") || resp_head.starts_with(b"HTTP/1.1 206");
        if is_layer && status_ok {
            match damage {
                Damage::FlipByte => {
                    let middle = body.len() / 2;
                    body[middle] ^= 0xff;
                }
                Damage::CutFirstDownload => {
                    if cut.lock().unwrap().insert(path.clone()) {
                        let _ = client.write_all(resp_head);
                        let _ = client.write_all(&body[..body.len() / 2]);
                        let _ = client.flush();
                        let _ = client.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
        }
        if client.write_all(resp_head).is_err() || client.write_all(&body).is_err() {
            return;
        }
        // HTTP/1.1 keep-alive towards the client: serve its next request.
    }
}

/// Every file below `dir` (relative paths), to prove a store did not change.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &path, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

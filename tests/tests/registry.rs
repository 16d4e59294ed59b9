//! End-to-end tests of `berth pull/push/login/logout/search` (issue 6)
//! against a real registry: Debian's docker-registry (distribution 2.8)
//! started by each test on 127.0.0.1 and stopped by PID on drop, once with
//! htpasswd authentication; a small proxy in front of it corrupts or cuts
//! blob downloads.

mod build_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use berth_tests::{describe, fixture, require_root, TestRoot};
use build_support::{
    berth_with, debian_context, load_debian_base, ok_with, stderr, stdout, tree, Damage, Proxy,
    Registry, DEBIAN_PROBE, DEBIAN_PROBE_EXPECTED, REGISTRY_PASSWORD, REGISTRY_USER,
};

/// A test root whose credentials live in its own DOCKER_CONFIG.
struct Lab {
    root: TestRoot,
    docker_config: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        let root = TestRoot::new();
        let docker_config = root.path().join("docker-config");
        Lab {
            root,
            docker_config,
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        berth_with(&self.root, &self.docker_config, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        ok_with(&self.root, &self.docker_config, args)
    }

    fn load(&self, fixture_archive: &str) {
        self.ok(&["load", "-i", fixture(fixture_archive).to_str().unwrap()]);
    }

    fn inspect(&self, image: &str, template: &str) -> String {
        self.ok(&["image", "inspect", "-f", template, image])
            .trim()
            .to_string()
    }

    /// The manifest digest the store keeps for an image.
    fn manifest_digest_of(&self, image: &str) -> String {
        let digests = self.inspect(image, "{{json .RepoDigests}}");
        let list: Vec<String> = serde_json::from_str(&digests).unwrap();
        list.first()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| d.to_string())
            .unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.root.run(["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.root.run(["rm", "-f", id]);
        }
    }
}

/// `N: digest: sha256:… size: N` from push output.
fn pushed_digest(output: &str) -> String {
    output
        .lines()
        .find_map(|l| {
            l.split_once(": digest: ")
                .map(|(_, rest)| rest.split(' ').next().unwrap_or_default().to_string())
        })
        .unwrap_or_else(|| panic!("no digest line in push output:\n{output}"))
}

#[test]
fn fixtures_pushed_removed_and_pulled_back_keep_their_digests() {
    let lab = Lab::new();
    let registry = Registry::start(false);
    let host = registry.host();
    lab.load("busybox/docker-archive.tar");
    lab.load("debian/oci-archive.tar");
    for (local, remote) in [
        ("busybox:latest", format!("{host}/busybox:1")),
        ("debian:bookworm", format!("{host}/library/debian:bookworm")),
    ] {
        let id = lab.inspect(local, "{{.Id}}");
        lab.ok(&["tag", local, &remote]);
        let pushed = lab.ok(&["push", &remote]);
        assert!(
            pushed.contains(&format!(
                "The push refers to repository [{}]",
                remote.rsplit_once(':').unwrap().0
            )),
            "{pushed}"
        );
        assert!(pushed.contains(": Pushed"), "{pushed}");
        let digest = pushed_digest(&pushed);
        // A second push finds every blob there.
        let again = lab.ok(&["push", &remote]);
        assert!(
            !again.contains(": Pushed") && again.contains("Layer already exists"),
            "{again}"
        );
        assert_eq!(pushed_digest(&again), digest);

        lab.ok(&["rmi", local, &remote]);
        assert!(
            lab.run(&["image", "inspect", &id]).status.code() != Some(0),
            "{id} removed"
        );
        let pulled = lab.ok(&["pull", &remote]);
        assert!(
            pulled.contains(&format!("Digest: {digest}"))
                && pulled.contains("Status: Downloaded newer image"),
            "{pulled}"
        );
        assert_eq!(
            lab.inspect(&remote, "{{.Id}}"),
            id,
            "the same image id (config digest)"
        );
        assert_eq!(
            lab.manifest_digest_of(&remote),
            digest,
            "the same manifest digest"
        );
        // Pulling again changes nothing.
        let up_to_date = lab.ok(&["pull", &remote]);
        assert!(
            up_to_date.contains("Status: Image is up to date"),
            "{up_to_date}"
        );
    }
    assert_eq!(
        lab.ok(&[
            "run",
            "--rm",
            &format!("{host}/busybox:1"),
            "echo",
            "pulled"
        ]),
        "pulled\n"
    );

    // Cross-repository mount: the same image in a new repository sends no blob.
    let other = format!("{host}/mirror/busybox:1");
    lab.ok(&["tag", &format!("{host}/busybox:1"), &other]);
    let mounted = lab.ok(&["push", &other]);
    assert!(
        mounted.contains("Mounted from busybox") && !mounted.contains(": Pushed"),
        "{mounted}"
    );

    let search = lab.ok(&["search", &format!("{host}/busy")]);
    assert_eq!(
        search,
        format!("NAME\n{host}/busybox\n{host}/mirror/busybox\n")
    );
    let missing = lab.run(&["pull", &format!("{host}/busybox:no-such-tag")]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("manifest unknown"),
        "{}",
        describe(&missing)
    );
}

#[test]
fn htpasswd_registry_needs_login_and_credentials_are_kept_private() {
    let lab = Lab::new();
    let registry = Registry::start(true);
    let host = registry.host();
    lab.load("busybox/docker-archive.tar");
    let remote = format!("{host}/private/busybox:1");
    lab.ok(&["tag", "busybox", &remote]);

    let anonymous = lab.run(&["push", &remote]);
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(
        stderr(&anonymous).contains(&format!("run `berth login {host}` first")),
        "{}",
        describe(&anonymous)
    );

    let wrong = lab
        .root
        .berth(["login", "-u", REGISTRY_USER, "--password-stdin", &host])
        .env("DOCKER_CONFIG", &lab.docker_config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"wrong password\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("incorrect username or password"),
        "{}",
        describe(&wrong)
    );
    assert!(
        !lab.docker_config.join("config.json").exists(),
        "nothing stored after a failed login"
    );

    let login = lab
        .root
        .berth(["login", "-u", REGISTRY_USER, "--password-stdin", &host])
        .env("DOCKER_CONFIG", &lab.docker_config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{REGISTRY_PASSWORD}\n").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(login.status.success(), "{}", describe(&login));
    assert_eq!(stdout(&login), "Login Succeeded\n");
    let config_path = lab.docker_config.join("config.json");
    assert_eq!(
        fs::metadata(&config_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(&config_path).unwrap()).unwrap();
    assert!(config["auths"][&host]["auth"].is_string(), "{config}");
    assert!(!fs::read_to_string(&config_path)
        .unwrap()
        .contains(REGISTRY_PASSWORD));

    let pushed = lab.ok(&["push", &remote]);
    let digest = pushed_digest(&pushed);
    lab.ok(&["rmi", &remote, "busybox"]);
    lab.ok(&["pull", &format!("{host}/private/busybox@{digest}")]);
    assert_eq!(
        lab.ok(&[
            "run",
            "--rm",
            &format!("{host}/private/busybox@{digest}"),
            "echo",
            "authenticated"
        ]),
        "authenticated\n"
    );

    assert_eq!(
        lab.ok(&["logout", &host]),
        format!("Removing login credentials for {host}\n")
    );
    let after = lab.run(&["pull", &remote]);
    assert_eq!(after.status.code(), Some(1), "{}", describe(&after));
    assert!(
        stderr(&after).contains("unauthorized"),
        "{}",
        describe(&after)
    );
}

#[test]
fn a_corrupted_blob_fails_the_pull_and_leaves_the_store_unchanged() {
    let lab = Lab::new();
    let registry = Registry::start(false);
    lab.load("busybox/docker-archive.tar");
    let remote = format!("{}/app:1", registry.host());
    lab.ok(&["tag", "busybox", &remote]);
    lab.ok(&["push", &remote]);
    lab.ok(&["rmi", &remote, "busybox"]);
    let before = tree(&lab.root.root().join("images"));

    let proxy = Proxy::start(registry.port, Damage::FlipByte);
    let out = lab.run(&["pull", &format!("{}/app:1", proxy.host())]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("digest mismatch") && err.contains("corrupted"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        tree(&lab.root.root().join("images")),
        before,
        "the store did not change"
    );
    let downloads = tree(&lab.root.root().join("tmp"));
    assert!(
        downloads
            .iter()
            .all(|p| !p.contains(".partial") && !p.contains("pull-")),
        "{downloads:?}"
    );
    assert_eq!(lab.ok(&["images", "-q"]), "");
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let lab = Lab::new();
    let registry = Registry::start(false);
    lab.load("debian/oci-archive.tar");
    let id = lab.inspect("debian:bookworm", "{{.Id}}");
    let remote = format!("{}/debian:bookworm", registry.host());
    lab.ok(&["tag", "debian:bookworm", &remote]);
    let digest = pushed_digest(&lab.ok(&["push", &remote]));
    lab.ok(&["rmi", &remote, "debian:bookworm"]);

    let proxy = Proxy::start(registry.port, Damage::CutFirstDownload);
    let via_proxy = format!("{}/debian:bookworm", proxy.host());
    let out = lab.ok(&["pull", &via_proxy]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(lab.inspect(&via_proxy, "{{.Id}}"), id);
    // Each cut layer was asked for again from where it stopped.
    let seen = proxy.seen();
    let cut = proxy.cut_paths();
    assert!(cut.len() >= 2, "the big layers were cut: {seen:?}");
    for path in &cut {
        let resumed = seen.iter().any(|s| {
            &s.path == path
                && s.range
                    .as_deref()
                    .is_some_and(|r| r.starts_with("bytes=") && !r.starts_with("bytes=0-"))
        });
        assert!(
            resumed,
            "{path} was not resumed with a Range request: {seen:?}"
        );
    }
    assert_eq!(
        lab.ok(&["run", "--rm", &via_proxy, "cat", "/srv/app/layer3.txt"]),
        "layer 3\n"
    );
}

#[test]
fn a_dockerfile_build_pushes_pulls_back_by_digest_and_runs_the_same() {
    let lab = Lab::new();
    let registry = Registry::start(false);
    load_debian_base(&lab.root);
    let ctx = debian_context(lab.root.path());
    let image = format!("{}/rebuilt:1", registry.host());
    lab.ok(&["build", "-t", &image, ctx.to_str().unwrap()]);
    let before = lab.ok(&["run", "--rm", &image, "sh", "-c", DEBIAN_PROBE]);
    assert_eq!(before, DEBIAN_PROBE_EXPECTED);
    let id = lab.inspect(&image, "{{.Id}}");
    let digest = pushed_digest(&lab.ok(&["push", &image]));
    lab.ok(&["rmi", &image]);
    lab.ok(&["rmi", "debian-base:test"]);
    assert_eq!(lab.ok(&["images", "-q"]), "", "nothing left locally");

    let by_digest = format!("{}/rebuilt@{digest}", registry.host());
    let pulled = lab.ok(&["pull", &by_digest]);
    assert!(pulled.trim_end().ends_with(&by_digest), "{pulled}");
    assert_eq!(lab.inspect(&by_digest, "{{.Id}}"), id, "the same image");
    assert_eq!(
        lab.ok(&["run", "--rm", &by_digest, "sh", "-c", DEBIAN_PROBE]),
        before,
        "runs the same"
    );
}

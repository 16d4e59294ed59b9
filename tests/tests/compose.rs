//! End-to-end tests of `berth compose` (issue 9): a project directory with a
//! compose.yaml, driven through the real `berth` binary as root, each test
//! in its own isolated root with the busybox fixture loaded and a /24 of its
//! own for the project's networks (`BERTH_NETWORK_POOL`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use berth_tests::{describe, fixture, require_root, TestRoot};

/// A test root with busybox loaded and a project directory `dir`. On drop:
/// `compose down -v` (the project's network and volumes), then every
/// container is force-removed; TestRoot removes what is left of networks.
struct ComposeLab {
    root: TestRoot,
    dir: PathBuf,
    pool: String,
}

static POOLS: AtomicU32 = AtomicU32::new(0);

/// A /24 of 10.229.0.0/16 that no host route covers, for the project networks.
fn free_pool() -> String {
    let routes = Command::new("ip")
        .args(["-4", "route"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let start = (std::process::id() * 11) % 250;
    loop {
        let n = POOLS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("10.229.{}", (start + n) % 250 + 1);
        if !routes.contains(&format!("{prefix}.")) {
            return format!("{prefix}.0/24");
        }
        assert!(n < 500, "no free test subnet in 10.229.0.0/16");
    }
}

impl ComposeLab {
    /// A project `name` (the directory's name is the project name).
    fn new(name: &str, compose_yaml: &str) -> ComposeLab {
        require_root();
        let root = TestRoot::new();
        let archive = fixture("busybox/docker-archive.tar");
        root.ok(["load", "-i", archive.to_str().unwrap()]);
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), compose_yaml).unwrap();
        ComposeLab {
            root,
            dir,
            pool: free_pool(),
        }
    }

    fn berth(&self, args: &[&str]) -> Command {
        let mut cmd = self.root.berth(args);
        cmd.current_dir(&self.dir)
            .env("BERTH_NETWORK_POOL", &self.pool);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.berth(args).output().expect("spawn berth")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "berth {args:?}: {}", describe(&out));
        out
    }

    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ok(args).stdout).into_owned()
    }

    fn compose(&self, args: &[&str]) -> Output {
        let mut full = vec!["compose"];
        full.extend_from_slice(args);
        self.ok(&full)
    }

    /// A named volume's directory on the host (`volume inspect`'s Mountpoint).
    fn volume_dir(&self, name: &str) -> PathBuf {
        PathBuf::from(
            self.stdout(&["volume", "inspect", "-f", "{{.Mountpoint}}", name])
                .trim(),
        )
    }
}

impl Drop for ComposeLab {
    fn drop(&mut self) {
        // The base file alone: a test may end (or fail) with an override
        // file it broke on purpose, and `down` finds the project's
        // containers, networks and volumes by their labels anyway.
        let _ = self.run(&[
            "compose",
            "-f",
            "compose.yaml",
            "down",
            "-v",
            "-t",
            "0",
            "--remove-orphans",
        ]);
        let out = self.run(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.run(&["rm", "-f", "-v", id]);
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Where `needle` is in `text`, failing with the text when it is not there.
fn position(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
}

fn cgroup_exists(id: &str) -> bool {
    ["memory", "pids", "cpu", "unified"]
        .iter()
        .any(|h| Path::new(&format!("/sys/fs/cgroup/{h}/berth/{id}")).exists())
}

const TWO_SERVICES: &str = r#"
services:
  web:
    image: busybox
    init: true
    command: ["sh", "-c", "mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 80 -h /www"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 200ms
      retries: 50
  client:
    image: busybox
    command: sh -c 'wget -qO- http://web/ > /data/result'
    depends_on:
      web:
        condition: service_healthy
    volumes:
      - data:/data
volumes:
  data:
"#;

#[test]
fn two_services_reach_each_other_by_name_and_down_v_leaves_nothing() {
    let lab = ComposeLab::new("shop", TWO_SERVICES);
    let up = lab.compose(&["up", "-d"]);
    let progress = stderr(&up);
    // The client starts only once web's healthcheck passed.
    assert!(
        position(&progress, "Container shop-web-1  Healthy")
            < position(&progress, "Container shop-client-1  Starting"),
        "{progress}"
    );
    assert!(
        progress.contains("Network shop_default  Created"),
        "{progress}"
    );
    assert!(progress.contains("Volume shop_data  Created"), "{progress}");

    // The client fetched http://web/ by the service's name and wrote the
    // page into the named volume.
    assert_eq!(lab.stdout(&["wait", "shop-client-1"]).trim(), "0");
    let result = std::fs::read_to_string(lab.volume_dir("shop_data").join("result")).unwrap();
    assert_eq!(result, "hello from web\n");

    let ps = lab.stdout(&["compose", "ps", "-a"]);
    let web_line = ps
        .lines()
        .find(|l| l.starts_with("shop-web-1"))
        .unwrap_or_default();
    assert!(
        web_line.contains(" web ") && web_line.contains("(healthy)"),
        "{ps}"
    );
    assert!(
        ps.lines()
            .any(|l| l.starts_with("shop-client-1") && l.contains("Exited (0)")),
        "{ps}"
    );
    assert_eq!(
        lab.stdout(&["inspect", "-f", "{{.State.Health.Status}}", "shop-web-1"])
            .trim(),
        "healthy"
    );
    let exec = lab.compose(&["exec", "-T", "web", "cat", "/www/index.html"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "hello from web\n");

    // What down -v must take away.
    let ids: Vec<String> = lab
        .stdout(&["compose", "ps", "-a", "-q"])
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 2);
    let network: serde_json::Value =
        serde_json::from_str(&lab.stdout(&["network", "inspect", "shop_default"])).unwrap();
    let network_id = network[0]["Id"].as_str().unwrap().to_string();
    let bridge = format!("br-{}", &network_id[..12]);
    assert!(
        Path::new("/sys/class/net").join(&bridge).exists(),
        "the project's bridge {bridge}"
    );

    let down = lab.compose(&["down", "-v"]);
    let progress = stderr(&down);
    assert!(
        progress.contains("Network shop_default  Removed"),
        "{progress}"
    );
    assert!(progress.contains("Volume shop_data  Removed"), "{progress}");
    assert_eq!(lab.stdout(&["ps", "-aq"]), "", "no container is left");
    assert_eq!(lab.stdout(&["volume", "ls", "-q"]), "", "no volume is left");
    let networks = lab.stdout(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!networks.contains("shop_default"), "{networks}");
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} removed"
    );
    for id in &ids {
        assert!(!cgroup_exists(id), "cgroup of {id} removed");
        let veth = format!("vb{}", &id[..12]);
        assert!(
            !Path::new("/sys/class/net").join(&veth).exists(),
            "veth {veth} removed"
        );
    }
    let table = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&table.stdout).contains(&bridge),
        "no nftables element names the removed bridge"
    );
}

#[test]
fn down_stops_dependents_first_each_with_its_own_stop_signal() {
    // Each service records its graceful stop in a shared volume: db on
    // SIGTERM (the default), app on its stop_signal SIGUSR1.
    let lab = ComposeLab::new(
        "order",
        r#"
services:
  db:
    image: busybox
    command: sh -c 'trap "echo db stopped >> /log/order; exit 0" TERM; echo db ready; while true; do sleep 0.1; done'
    volumes: [log:/log]
  app:
    image: busybox
    depends_on: [db]
    stop_signal: SIGUSR1
    stop_grace_period: 20s
    command: sh -c 'trap "echo app stopped >> /log/order; exit 0" USR1; while true; do sleep 0.1; done'
    volumes: [log:/log]
volumes:
  log:
"#,
    );
    let up = lab.compose(&["up", "-d"]);
    let progress = stderr(&up);
    assert!(
        position(&progress, "Container order-db-1  Started")
            < position(&progress, "Container order-app-1  Starting"),
        "dependencies start first: {progress}"
    );
    assert_eq!(
        lab.stdout(&[
            "inspect",
            "-f",
            "{{.Config.StopSignal}} {{.Config.StopTimeout}}",
            "order-app-1"
        ])
        .trim(),
        "SIGUSR1 20"
    );
    let log_dir = lab.volume_dir("order_log");
    let down = lab.compose(&["down"]);
    let progress = stderr(&down);
    assert!(
        position(&progress, "Container order-app-1  Stopped")
            < position(&progress, "Container order-db-1  Stopping"),
        "dependents stop first: {progress}"
    );
    assert_eq!(
        std::fs::read_to_string(log_dir.join("order")).unwrap(),
        "app stopped\ndb stopped\n",
        "each service stopped on its own signal, app before db"
    );
    // Without -v the named volume stays, the network goes.
    assert_eq!(lab.stdout(&["volume", "ls", "-q"]).trim(), "order_log");
    assert_eq!(lab.stdout(&["ps", "-aq"]), "");
    lab.compose(&["down", "-v"]);
    assert_eq!(lab.stdout(&["volume", "ls", "-q"]), "");
}

#[test]
fn up_in_the_foreground_prefixes_logs_and_returns_the_exit_code_from_a_service() {
    let lab = ComposeLab::new(
        "ci",
        r#"
services:
  db:
    image: busybox
    init: true
    command: sh -c 'echo db up; sleep 1000'
  tests:
    image: busybox
    depends_on:
      db: {condition: service_started}
    environment:
      SUITE: ${SUITE:-all}
    command: sh -c 'echo "running $$SUITE tests with $$GREETING"; echo failing >&2; exit 3'
    env_file: tests.env
"#,
    );
    std::fs::write(lab.dir.join("tests.env"), "GREETING=hello\n").unwrap();
    std::fs::write(lab.dir.join(".env"), "SUITE=smoke\n").unwrap();
    let out = lab.run(&["compose", "up", "--exit-code-from", "tests"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Attaching to ci-db-1, ci-tests-1"),
        "{stdout}"
    );
    assert!(stdout.contains("db-1    | db up\n"), "{stdout}");
    assert!(
        stdout.contains("tests-1 | running smoke tests with hello\n"),
        "{stdout}"
    );
    assert!(stdout.contains("ci-tests-1 exited with code 3"), "{stdout}");
    assert!(
        stderr(&out).contains("tests-1 | failing\n"),
        "{}",
        stderr(&out)
    );
    // --exit-code-from stops the rest.
    let ps = lab.stdout(&["compose", "ps", "-a", "--format", "json"]);
    let states: Vec<serde_json::Value> = ps
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(states.len(), 2, "{ps}");
    assert!(states.iter().all(|s| s["State"] == "exited"), "{ps}");
    let logs = lab.stdout(&["compose", "logs", "--no-log-prefix", "db"]);
    assert_eq!(logs, "db up\n");
}

#[test]
fn mistakes_in_the_file_name_the_key_and_line_and_create_nothing() {
    let lab = ComposeLab::new(
        "typo",
        "services:\n  web:\n    image: busybox\n    imagee: busybox:1\n",
    );
    let out = lab.run(&["compose", "up", "-d"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert_eq!(
        stderr(&out),
        "berth: compose.yaml:4: services.web: unknown key \"imagee\" (did you mean \"image\"?)\n"
    );
    std::fs::write(
        lab.dir.join("compose.yaml"),
        "services:\n  web:\n    image: busybox\n    privileged: true\n",
    )
    .unwrap();
    let out = lab.run(&["compose", "up", "-d"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        stderr(&out).contains("compose.yaml:4: services.web: key \"privileged\" is not supported"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        lab.dir.join("compose.yaml"),
        "services:\n  web:\n    image: not-loaded:1\n",
    )
    .unwrap();
    let out = lab.run(&["compose", "up", "-d"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        stderr(&out).contains("Unable to find image 'not-loaded:1' locally"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.stdout(&["ps", "-aq"]), "", "no container was created");
}

#[test]
fn an_override_file_and_repeated_f_merge_as_docker_compose_does() {
    let lab = ComposeLab::new(
        "ovr",
        "services:\n  app:\n    image: busybox\n    command: sh -c 'echo base $$MODE'\n    environment: [MODE=prod]\n",
    );
    let override_file = lab.dir.join("compose.override.yaml");
    std::fs::write(
        &override_file,
        "services:\n  app:\n    environment:\n      MODE: dev\n",
    )
    .unwrap();
    // compose.override.yaml beside compose.yaml is read and merged.
    let out = lab.compose(&["up", "--no-log-prefix"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("base dev\n"), "{stdout}");
    let labels: serde_json::Value = serde_json::from_str(&lab.stdout(&[
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        "ovr-app-1",
    ]))
    .unwrap();
    let files = labels["com.docker.compose.project.config_files"]
        .as_str()
        .unwrap();
    let names: Vec<&str> = files
        .split(',')
        .map(|f| f.rsplit('/').next().unwrap_or(f))
        .collect();
    assert_eq!(names, ["compose.yaml", "compose.override.yaml"], "{files}");
    // -f names exactly the files read: here the base alone.
    let out = lab.compose(&[
        "-f",
        "compose.yaml",
        "up",
        "--no-log-prefix",
        "--force-recreate",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("base prod\n"), "{stdout}");
    // A mistake in the override file is reported at its own line.
    std::fs::write(&override_file, "services:\n  app:\n    imagee: busybox\n").unwrap();
    let out = lab.run(&["compose", "up", "-d"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert_eq!(
        stderr(&out),
        "berth: compose.override.yaml:3: services.app: unknown key \"imagee\" (did you mean \"image\"?)\n"
    );
    std::fs::remove_file(&override_file).unwrap();
}

#[test]
fn a_dependency_that_turns_unhealthy_stops_up_with_dockers_message() {
    let lab = ComposeLab::new(
        "sick",
        r#"
services:
  db:
    image: busybox
    init: true
    command: sleep 1000
    healthcheck:
      test: ["CMD-SHELL", "echo probe says no; exit 1"]
      interval: 100ms
      retries: 2
  app:
    image: busybox
    command: echo never
    depends_on:
      db: {condition: service_healthy}
"#,
    );
    let out = lab.run(&["compose", "up", "-d"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        stderr(&out).contains("dependency failed to start: container sick-db-1 is unhealthy"),
        "{}",
        stderr(&out)
    );
    let health: serde_json::Value = serde_json::from_str(&lab.stdout(&[
        "inspect",
        "-f",
        "{{json .State.Health}}",
        "sick-db-1",
    ]))
    .unwrap();
    assert_eq!(health["Status"], "unhealthy");
    assert!(health["FailingStreak"].as_u64().unwrap() >= 2, "{health}");
    let last = health["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 1);
    assert_eq!(last["Output"], "probe says no\n");
    let ps = lab.stdout(&["ps", "-a"]);
    assert!(ps.contains("(unhealthy)"), "{ps}");
    assert!(!ps.contains("sick-app-1"), "app was never created: {ps}");
}

#[test]
fn up_follows_a_container_through_its_restarts() {
    let lab = ComposeLab::new(
        "flaky",
        r#"
services:
  job:
    image: busybox
    restart: on-failure:1
    command: sh -c 'echo attempt; exit 2'
"#,
    );
    let out = lab.run(&["compose", "up"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("job-1 | attempt\n").count(),
        2,
        "one run and one restart: {stdout}"
    );
    assert!(
        stdout.ends_with("flaky-job-1 exited with code 2\n"),
        "{stdout}"
    );
    assert_eq!(
        lab.stdout(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}",
            "flaky-job-1"
        ])
        .trim(),
        "exited 2 1"
    );
}

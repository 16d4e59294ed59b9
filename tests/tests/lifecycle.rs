//! End-to-end tests of the container lifecycle (issue 4): the docker workflow
//! on berth, driven through the real `berth` binary as root, each test in its
//! own isolated root with the busybox fixture loaded.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_tests::{describe, fixture, Lab};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_streams_output_and_returns_the_exit_status() {
    let lab = Lab::new();
    let out = lab.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(lab.ok(&["ps", "-aq"]), "", "--rm removed the container");
}

#[test]
fn exit_codes_follow_docker() {
    let lab = Lab::new();
    let not_found = lab.run(&["run", "--rm", "busybox", "/no/such/binary"]);
    assert_eq!(
        not_found.status.code(),
        Some(127),
        "{}",
        describe(&not_found)
    );
    let not_executable = lab.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(
        not_executable.status.code(),
        Some(126),
        "{}",
        describe(&not_executable)
    );
    let no_image = lab.run(&["run", "--rm", "no-such-image"]);
    assert_eq!(no_image.status.code(), Some(125), "{}", describe(&no_image));
    assert!(String::from_utf8_lossy(&no_image.stderr).contains("no-such-image"));
    let bad_flag = lab.run(&["run", "--no-such-flag", "busybox"]);
    assert_eq!(bad_flag.status.code(), Some(125));
    // A PID 1 cannot kill itself (the kernel shields a namespace's init
    // from its own namespace's signals), so the signal comes from outside.
    let attached = lab
        .root
        .berth([
            "run",
            "--rm",
            "--name",
            "victim",
            "busybox",
            "sh",
            "-c",
            "echo up; sleep 1000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut attached = attached;
    let mut up = String::new();
    BufReader::new(attached.stdout.as_mut().unwrap())
        .read_line(&mut up)
        .unwrap();
    lab.ok(&["kill", "victim"]);
    assert_eq!(attached.wait().unwrap().code(), Some(137), "128 + SIGKILL");
    assert_eq!(lab.ok(&["ps", "-aq"]), "", "failed --rm runs leave nothing");
}

#[test]
fn detached_container_shows_up_and_stops_gracefully() {
    let lab = Lab::new();
    // A PID 1 that handles SIGTERM exits at once with its own status.
    let id = lab.detached(&[
        "--name",
        "trapper",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    let ps = lab.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        ps.contains(&id[..12]) && ps.contains("Up ") && ps.contains("trapper"),
        "{ps}"
    );
    let started = Instant::now();
    assert_eq!(lab.ok(&["stop", "-t", "30", "trapper"]).trim(), "trapper");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stop did not wait for the timeout"
    );
    let ps = lab.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(ps.starts_with("Exited (0) "), "{ps}");
    assert_eq!(lab.ok(&["ps", "-q"]), "", "no longer running");
    assert!(!lab.cgroup_exists(&id), "cgroup removed after stop");
}

#[test]
fn a_pid1_without_sigterm_handler_is_killed_after_the_timeout() {
    let lab = Lab::new();
    lab.detached(&["--name", "stubborn", "busybox", "sleep", "1000"]);
    let started = Instant::now();
    lab.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "stop waited the timeout"
    );
    assert_eq!(lab.inspect("stubborn", "{{.State.ExitCode}}"), "137");
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (137)"));
}

#[test]
fn init_forwards_sigterm_so_stop_is_immediate() {
    let lab = Lab::new();
    lab.detached(&["--init", "--name", "inited", "busybox", "sleep", "1000"]);
    let started = Instant::now();
    lab.ok(&["stop", "-t", "30", "inited"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "berth-init forwarded SIGTERM"
    );
    assert_eq!(
        lab.inspect("inited", "{{.State.ExitCode}}"),
        "143",
        "sleep died of SIGTERM"
    );
    let out = lab.run(&["run", "--rm", "--init", "busybox", "sh", "-c", "echo $$"]);
    assert_eq!(
        stdout(&out).trim(),
        "2",
        "the command runs under berth-init as PID 2"
    );
}

#[test]
fn stop_signal_and_stop_timeout_flags_are_used() {
    let lab = Lab::new();
    lab.detached(&[
        "--name",
        "quitter",
        "--stop-signal",
        "SIGUSR1",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' USR1; trap '' TERM; while true; do sleep 0.1; done",
    ]);
    lab.ok(&["stop", "quitter"]);
    assert_eq!(lab.inspect("quitter", "{{.State.ExitCode}}"), "7");
}

#[test]
fn logs_follow_until_the_container_exits() {
    let lab = Lab::new();
    lab.detached(&[
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo one; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo two >&2; echo three",
    ]);
    let mut follower = lab
        .root
        .berth(["logs", "-f", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "one");
    lab.ok(&["exec", "talker", "touch", "/tmp/go"]);
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "three",
        "output written after logs -f started"
    );
    let status = follower.wait().unwrap();
    assert!(status.success(), "logs -f ends when the container exits");
    let mut err = String::new();
    follower
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err, "two\n", "stderr records go to stderr");
    // stdout and stderr are separate pipes, so their relative order in the
    // log is not defined; the last two records are these two, in some order.
    let tail = lab.run(&["logs", "--tail", "2", "talker"]);
    assert_eq!(stdout(&tail), "three\n");
    assert_eq!(String::from_utf8_lossy(&tail.stderr), "two\n");
    let one = lab.ok(&["logs", "--tail", "1", "talker"]);
    assert!(one.is_empty() || one == "three\n", "{one:?}");
    let stamped = lab.ok(&["logs", "-t", "talker"]);
    assert!(
        stamped
            .lines()
            .all(|l| l.len() > 30 && l.as_bytes()[4] == b'-'),
        "{stamped}"
    );
}

#[test]
fn exec_enters_the_running_container() {
    let lab = Lab::new();
    lab.detached(&[
        "--name",
        "box",
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sh",
        "-c",
        "echo hi > /tmp/made; exec sleep 1000",
    ]);
    lab.eventually(
        "box",
        "{{.State.Status}}",
        "running",
        Duration::from_secs(5),
    );
    let ps = lab.ok(&["exec", "box", "ps", "-o", "pid,comm"]);
    assert!(
        ps.contains("1 sleep"),
        "exec sees the container's pid namespace: {ps}"
    );
    assert_eq!(
        lab.ok(&["exec", "box", "cat", "/tmp/made"]),
        "hi\n",
        "and its filesystem"
    );
    let env = lab.ok(&["exec", "-e", "EXTRA=2", "box", "env"]);
    assert!(
        env.contains("FROM_RUN=1") && env.contains("EXTRA=2"),
        "{env}"
    );
    assert_eq!(
        lab.ok(&["exec", "-u", "nobody", "box", "id", "-u"]).trim(),
        "65534"
    );
    assert_eq!(lab.ok(&["exec", "-w", "/tmp", "box", "pwd"]).trim(), "/tmp");
    // And its cgroups: the process moved itself into each v1 hierarchy (in
    // the container's cgroup namespace each shows as its root; from
    // anywhere else the path would climb out with "/..").
    let cgroups = lab.ok(&["exec", "box", "cat", "/proc/self/cgroup"]);
    assert!(
        cgroups
            .lines()
            .filter(|l| !l.contains("name=systemd"))
            .all(|l| l.ends_with(":/")),
        "exec joins the container's cgroups: {cgroups}"
    );
    let failing = lab.run(&["exec", "box", "sh", "-c", "exit 4"]);
    assert_eq!(failing.status.code(), Some(4));
    let missing = lab.run(&["exec", "box", "nosuch"]);
    assert_eq!(missing.status.code(), Some(127), "{}", describe(&missing));
}

#[test]
fn start_after_stop_keeps_what_the_container_wrote() {
    let lab = Lab::new();
    let out = lab.run(&[
        "run",
        "--name",
        "keeper",
        "busybox",
        "sh",
        "-c",
        "echo run >> /log; cat /log",
    ]);
    assert_eq!(stdout(&out), "run\n");
    assert_eq!(lab.ok(&["start", "-a", "keeper"]), "run\nrun\n");
}

#[test]
fn rm_force_of_a_running_container_leaves_nothing() {
    let lab = Lab::new();
    let id = lab.detached(&[
        "--name",
        "doomed",
        "busybox",
        "sh",
        "-c",
        "sleep 1000 & sleep 1000",
    ]);
    let refused = lab.run(&["rm", "doomed"]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot remove a running container"));
    let pid = lab.inspect("doomed", "{{.State.Pid}}");
    lab.ok(&["rm", "-f", "doomed"]);
    assert_eq!(lab.ok(&["ps", "-aq"]), "");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "PID 1 gone"
    );
    assert!(!lab.cgroup_exists(&id), "cgroup gone");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "no mount of the container remains");
    lab.detached(&["--name", "doomed", "busybox", "true"]); // the name is free again
}

#[test]
fn names_are_unique_and_prefixes_must_be_unambiguous() {
    let lab = Lab::new();
    lab.ok(&["create", "--name", "taken", "busybox", "true"]);
    let dup = lab.run(&["create", "--name", "taken", "busybox", "true"]);
    assert_eq!(dup.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("is already in use"));
    let generated = lab.ok(&["create", "busybox", "true"]);
    let name = lab.inspect(generated.trim(), "{{.Name}}");
    assert!(name.starts_with('/') && name.contains('_'), "{name}");
    let missing = lab.run(&["start", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("No such container: nope"));
    lab.ok(&["rename", "taken", "renamed"]);
    assert_eq!(lab.inspect("renamed", "{{.Name}}"), "/renamed");
}

#[test]
fn ps_filters_formats_and_limits() {
    let lab = Lab::new();
    lab.ok(&[
        "run",
        "--name",
        "done",
        "-l",
        "tier=batch",
        "busybox",
        "true",
    ]);
    lab.detached(&[
        "--name", "live", "-l", "tier=web", "busybox", "sleep", "1000",
    ]);
    assert_eq!(lab.ok(&["ps", "--format", "{{.Names}}"]), "live\n");
    assert_eq!(
        lab.ok(&[
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}}"
        ]),
        "done\n"
    );
    assert_eq!(
        lab.ok(&[
            "ps",
            "-a",
            "--filter",
            "label=tier=web",
            "--format",
            "{{.Names}}"
        ]),
        "live\n"
    );
    assert_eq!(
        lab.ok(&["ps", "-a", "--filter", "ancestor=busybox", "-q"])
            .lines()
            .count(),
        2
    );
    assert_eq!(
        lab.ok(&["ps", "-n", "1", "--format", "{{.Names}}"]),
        "live\n",
        "latest created"
    );
    let json_line = lab.ok(&["ps", "--format", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(json_line.trim()).unwrap();
    assert_eq!(parsed["Names"], "live");
    assert_eq!(parsed["State"], "running");
    let full = lab.ok(&["ps", "--no-trunc", "-q"]);
    assert_eq!(full.trim().len(), 64);
    assert!(lab.ok(&["ps"]).contains("\"sleep 1000\""));
    let bad = lab.run(&["ps", "--filter", "color=red"]);
    assert_eq!(bad.status.code(), Some(125));
}

#[test]
fn wait_kill_and_prune() {
    let lab = Lab::new();
    lab.detached(&[
        "--name",
        "waiter",
        "busybox",
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 9",
    ]);
    let mut waiter = lab
        .root
        .berth(["wait", "waiter"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    lab.ok(&["exec", "waiter", "touch", "/tmp/go"]);
    let mut out = String::new();
    waiter
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(waiter.wait().unwrap().success());
    assert_eq!(out, "9\n");

    lab.detached(&[
        "--name",
        "killme",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 5' HUP; while true; do sleep 0.1; done",
    ]);
    lab.ok(&["kill", "-s", "HUP", "killme"]);
    assert_eq!(lab.ok(&["wait", "killme"]), "5\n");
    let not_running = lab.run(&["kill", "killme"]);
    assert_ne!(
        not_running.status.code(),
        Some(0),
        "kill of a stopped container fails"
    );

    lab.detached(&["--name", "alive", "busybox", "sleep", "1000"]);
    let pruned = lab.ok(&["container", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Containers:"), "{pruned}");
    assert_eq!(lab.ok(&["ps", "-a", "--format", "{{.Names}}"]), "alive\n");
}

#[test]
fn run_flags_reach_the_container() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, "# settings\nFROM_FILE=yes\n").unwrap();
    let out = lab.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "--env-file",
        env_file.to_str().unwrap(),
        "-w",
        "/work/dir",
        "-u",
        "nobody",
        "--hostname",
        "boxhost",
        "busybox",
        "sh",
        "-c",
        "echo $A $FROM_FILE; pwd; id -u; hostname",
    ]);
    assert_eq!(out, "1 yes\n/work/dir\n65534\nboxhost\n");
    let entry = lab.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "busybox",
        "from",
        "entrypoint",
    ]);
    assert_eq!(entry, "from entrypoint\n");
    let read_only = lab.run(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(
        read_only.status.code(),
        Some(0),
        "--read-only refuses writes"
    );
    let cidfile = dir.path().join("cid");
    lab.ok(&[
        "run",
        "--rm",
        "--cidfile",
        cidfile.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    assert_eq!(std::fs::read_to_string(&cidfile).unwrap().len(), 64);
}

#[test]
fn resource_flags_become_cgroup_limits() {
    let lab = Lab::new();
    let id = lab.detached(&[
        "-m",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "busybox",
        "sleep",
        "1000",
    ]);
    let read = |path: String| std::fs::read_to_string(path).unwrap().trim().to_string();
    assert_eq!(
        read(format!(
            "/sys/fs/cgroup/memory/berth/{id}/memory.limit_in_bytes"
        )),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read(format!("/sys/fs/cgroup/pids/berth/{id}/pids.max")),
        "50"
    );
    assert_eq!(
        read(format!("/sys/fs/cgroup/cpu/berth/{id}/cpu.cfs_quota_us")),
        "50000"
    );
    let too_small = lab.run(&["run", "--rm", "-m", "1m", "busybox", "true"]);
    assert_eq!(too_small.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&too_small.stderr).contains("Minimum memory limit"));
}

#[test]
fn restart_policies_follow_docker() {
    let lab = Lab::new();
    lab.detached(&[
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 1",
    ]);
    lab.eventually(
        "flaky",
        "{{.State.Status}} {{.RestartCount}}",
        "exited 2",
        Duration::from_secs(20),
    );
    assert_eq!(
        lab.inspect("flaky", "{{.State.ExitCode}}"),
        "1",
        "the last run's own status is recorded"
    );
    assert_eq!(
        lab.inspect("flaky", "{{.State.Error}}"),
        "",
        "not a monitor failure"
    );
    lab.detached(&[
        "--name",
        "forever",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "exit 0",
    ]);
    lab.eventually("forever", "{{.RestartCount}}", "1", Duration::from_secs(20));
    lab.ok(&["stop", "forever"]);
    assert_eq!(
        lab.inspect("forever", "{{.State.Status}}"),
        "exited",
        "a stopped container stays stopped"
    );
    let conflict = lab.run(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(conflict.status.code(), Some(125));
}

#[test]
fn interactive_tty_shell_through_a_pty() {
    let lab = Lab::new();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut child = lab
        .root
        .berth(["run", "-it", "--rm", "busybox", "sh"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"echo $((6*7))\r").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("42") {
        let n = master.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the shell answered: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    master.write_all(b"exit 5\r").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(5),
        "the shell's exit status: {}",
        String::from_utf8_lossy(&seen)
    );
}

#[test]
fn a_sigkilled_cli_during_run_leaves_a_consistent_store() {
    let lab = Lab::new();
    for delay_ms in [0u64, 2, 5, 10, 20, 40] {
        let mut child = lab
            .root
            .berth(["run", "-d", "busybox", "sleep", "1000"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let ps = lab.run(&["ps", "-a", "--format", "{{.ID}} {{.State}}"]);
    assert!(ps.status.success(), "{}", describe(&ps));
    for line in stdout(&ps).lines() {
        let state = line.split_whitespace().nth(1).unwrap();
        assert!(["created", "running", "exited"].contains(&state), "{line}");
    }
    let id = lab.detached(&["busybox", "true"]);
    assert_eq!(lab.ok(&["wait", &id]), "0\n", "a new run still works");
}

#[test]
fn concurrent_runs_and_removals_keep_the_store_consistent() {
    let lab = Lab::new();
    let spawn_all = |args: Vec<Vec<String>>| -> Vec<std::process::Output> {
        let children: Vec<_> = args
            .into_iter()
            .map(|a| {
                lab.root
                    .berth(a)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    };
    let runs = spawn_all(
        (0..20)
            .map(|_| {
                vec![
                    "run".into(),
                    "-d".into(),
                    "busybox".into(),
                    "sleep".into(),
                    "1000".into(),
                ]
            })
            .collect(),
    );
    let mut ids = Vec::new();
    for out in &runs {
        assert!(out.status.success(), "{}", describe(out));
        ids.push(stdout(out).trim().to_string());
    }
    let names = lab.ok(&["ps", "--format", "{{.Names}}"]);
    let mut unique: Vec<&str> = names.lines().collect();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        20,
        "20 running containers with unique names: {names}"
    );
    let removals = spawn_all(
        ids.iter()
            .map(|id| vec!["rm".into(), "-f".into(), id.clone()])
            .collect(),
    );
    for out in &removals {
        assert!(out.status.success(), "{}", describe(out));
    }
    assert_eq!(lab.ok(&["ps", "-aq"]), "");
    for id in &ids {
        assert!(!lab.cgroup_exists(id), "cgroup of {id} removed");
    }
}

#[test]
fn sig_proxy_forwards_signals_to_an_attached_container() {
    let lab = Lab::new();
    let child = lab
        .root
        .berth([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut child = child;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn inspect_shows_dockers_shape() {
    let lab = Lab::new();
    lab.ok(&[
        "create", "--name", "shape", "-l", "a=b", "busybox", "echo", "x",
    ]);
    let json: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "shape"])).unwrap();
    let c = &json[0];
    assert_eq!(c["Id"].as_str().unwrap().len(), 64);
    assert_eq!(c["Name"], "/shape");
    assert_eq!(c["Path"], "echo");
    assert_eq!(c["Args"][0], "x");
    assert_eq!(c["State"]["Status"], "created");
    assert_eq!(c["Config"]["Labels"]["a"], "b");
    assert!(c["Image"].as_str().unwrap().starts_with("sha256:"));
    let missing = lab.run(&["inspect", "nothing-here"]);
    assert_ne!(missing.status.code(), Some(0));
}

#[test]
fn top_lists_only_the_containers_processes() {
    let lab = Lab::new();
    lab.detached(&[
        "--name",
        "busy",
        "busybox",
        "sh",
        "-c",
        "sleep 1001 & sleep 1002",
    ]);
    lab.eventually(
        "busy",
        "{{.State.Status}}",
        "running",
        Duration::from_secs(5),
    );
    let top = lab.ok(&["top", "busy"]);
    assert!(top.starts_with("UID"), "{top}");
    assert!(
        top.contains("sleep 1001") && top.contains("sleep 1002"),
        "{top}"
    );
    assert!(
        !top.contains("berth top"),
        "host processes are not listed: {top}"
    );
}

#[test]
fn diff_lists_what_the_container_added_changed_and_deleted() {
    let lab = Lab::new();
    lab.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "/data",
        "busybox",
        "sh",
        "-c",
        "touch /new && rm /etc/group && echo app:x:1000:1000::/:/bin/sh >> /etc/passwd \
         && mkdir -p /srv/site && echo hi > /srv/site/index.html \
         && rm -rf /usr/bin && mkdir /usr/bin && touch /usr/bin/only && echo x > /data/kept",
    ]);
    // The container has exited: its upper directory is read all the same.
    // /etc/hosts, /etc/resolv.conf, /etc/hostname and the volume's target
    // are the runtime's mount points, not the container's changes.
    assert_eq!(
        lab.ok(&["diff", "writer"]),
        "C /etc\nD /etc/group\nC /etc/passwd\nA /new\nA /srv\nA /srv/site\nA /srv/site/index.html\n\
         C /usr\nC /usr/bin\nA /usr/bin/only\n"
    );
    assert_eq!(
        lab.ok(&["container", "diff", "writer"]),
        lab.ok(&["diff", "writer"])
    );
    // A container that changed nothing lists nothing.
    lab.ok(&["run", "--name", "reader", "busybox", "cat", "/etc/passwd"]);
    assert_eq!(lab.ok(&["diff", "reader"]), "");
    let missing = lab.run(&["diff", "nothing-here"]);
    assert_ne!(missing.status.code(), Some(0));
}

#[test]
fn stats_shows_each_running_containers_cpu_memory_and_tasks() {
    let lab = Lab::new();
    lab.detached(&[
        "--name",
        "burner",
        "--network",
        "none",
        "-m",
        "100m",
        "busybox",
        "sh",
        "-c",
        "head -c 20000000 /dev/zero > /dev/shm/fill && touch /dev/shm/done && while :; do :; done",
    ]);
    lab.detached(&[
        "--name",
        "sleeper",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 1001 & sleep 1002 & wait",
    ]);
    lab.ok(&["run", "--name", "finished", "busybox", "true"]);
    // The 20 MB written to /dev/shm (memory, charged to the container) are there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab
        .run(&["exec", "burner", "test", "-e", "/dev/shm/done"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the container never wrote its 20 MB"
        );
    }
    let table = lab.ok(&["stats", "--no-stream"]);
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(header.contains(column), "{table}");
    }
    assert_eq!(table.lines().count(), 3, "running containers only: {table}");
    assert!(!table.contains("finished"), "{table}");

    let rows = lab.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
        "burner",
        "sleeper",
    ]);
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('|').collect()).collect();
    let percent = |text: &str| -> f64 { text.trim_end_matches('%').parse().unwrap() };
    let (burner, sleeper) = (&rows[0], &rows[1]);
    assert_eq!(burner[0], "burner");
    assert!(percent(burner[1]) > 20.0, "a busy loop uses CPU: {rows:?}");
    assert!(percent(sleeper[1]) < percent(burner[1]), "{rows:?}");
    let (used, limit) = burner[2].split_once(" / ").unwrap();
    assert_eq!(limit, "100MiB", "the -m limit: {rows:?}");
    assert!(
        used.ends_with("MiB") && used.trim_end_matches("MiB").parse::<f64>().unwrap() >= 19.0,
        "the 20 MB in /dev/shm count: {rows:?}"
    );
    assert_eq!(burner[3], "1");
    assert_eq!(sleeper[3], "3", "sh and its two sleeps: {rows:?}");
    // -a lists the exited container too, using nothing.
    let all = lab.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.PIDs}}",
    ]);
    assert!(all.contains("finished 0.00% 0\n"), "{all}");
}

#[test]
fn pause_freezes_every_process_until_unpause_and_stop_still_works() {
    let lab = Lab::new();
    lab.detached(&[
        "--name",
        "counter",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 3' TERM; i=0; while :; do i=$((i+1)); echo $i > /tmp/n; usleep 20000; done",
    ]);
    let pid = lab.inspect("counter", "{{.State.Pid}}");
    let count = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/root/tmp/n"))
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() < 2 {
        assert!(Instant::now() < deadline, "the counter never counted");
    }
    assert_eq!(lab.ok(&["pause", "counter"]), "counter\n");
    assert_eq!(
        lab.inspect("counter", "{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    assert!(
        lab.ok(&["ps", "--format", "{{.Status}}"])
            .contains("(Paused)"),
        "docker's STATUS column"
    );
    // Frozen: the counter does not move while paused (it moved every 20 ms).
    let frozen = count();
    let before_unpause = Instant::now();
    while before_unpause.elapsed() < Duration::from_millis(300) {
        assert_eq!(count(), frozen, "a paused container ran");
    }
    let exec = lab.run(&["exec", "counter", "true"]);
    assert_ne!(exec.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&exec.stderr)
            .contains("is paused, unpause the container before exec"),
        "{}",
        describe(&exec)
    );
    assert_ne!(
        lab.run(&["pause", "counter"]).status.code(),
        Some(0),
        "already paused"
    );
    let start = lab.run(&["start", "counter"]);
    assert_ne!(start.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&start.stderr)
            .contains("cannot start a paused container, try unpause instead"),
        "{}",
        describe(&start)
    );
    assert_eq!(lab.ok(&["unpause", "counter"]), "counter\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() <= frozen {
        assert!(
            Instant::now() < deadline,
            "unpause did not thaw the container"
        );
    }
    assert_ne!(
        lab.run(&["unpause", "counter"]).status.code(),
        Some(0),
        "not paused"
    );
    // stop of a paused container: the stop signal, then a thaw to deliver it.
    lab.ok(&["pause", "counter"]);
    // Exit status 3 is the TERM trap's: a SIGKILL after the timeout would give 137.
    lab.ok(&["stop", "counter"]);
    assert_eq!(lab.inspect("counter", "{{.State.ExitCode}}"), "3");
}

#[test]
fn a_killed_monitor_is_detected_and_stop_still_cleans_up() {
    let lab = Lab::new();
    let id = lab.detached(&["--name", "orphan", "busybox", "sleep", "1000"]);
    let monitor: i32 = lab
        .inspect("orphan", "{{.State.MonitorPid}}")
        .parse()
        .unwrap();
    assert!(monitor > 0, "a live monitor is reported");
    let init = lab.inspect("orphan", "{{.State.Pid}}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let pidfd_wait = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{monitor}/stat")).exists()
        && std::fs::read_to_string(format!("/proc/{monitor}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            pidfd_wait.elapsed() < Duration::from_secs(5),
            "monitor did not die"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        lab.inspect("orphan", "{{.State.MonitorPid}}"),
        "0",
        "the dead monitor is noticed"
    );
    assert_eq!(
        lab.inspect("orphan", "{{.State.Status}}"),
        "running",
        "PID 1 still runs, shown as it is"
    );
    lab.ok(&["stop", "-t", "1", "orphan"]);
    assert_eq!(lab.inspect("orphan", "{{.State.Status}}"), "exited");
    // Its parent (the monitor) is dead, so whoever adopted it reaps it: it may
    // linger as a zombie for a moment, but it no longer runs.
    let state = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "PID 1 no longer runs: {state}"
    );
    assert!(!lab.cgroup_exists(&id), "cgroup is gone");
    lab.ok(&["start", "orphan"]);
    assert_eq!(
        lab.inspect("orphan", "{{.State.Status}}"),
        "running",
        "it can be started again"
    );
}

#[test]
fn attach_relays_input_and_output_of_a_running_container() {
    let lab = Lab::new();
    lab.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "listener",
        "busybox",
        "sh",
        "-c",
        "read line; echo got $line; exit 2",
    ]);
    let mut attached = lab
        .root
        .berth(["attach", "listener"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    attached
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello\n")
        .unwrap();
    let out = attached.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n");
    assert_eq!(
        out.status.code(),
        Some(2),
        "attach returns the container's exit status"
    );
}

#[test]
fn start_interactive_feeds_stdin_and_restart_runs_again() {
    let lab = Lab::new();
    lab.ok(&["create", "-i", "--name", "catter", "busybox", "cat"]);
    let mut started = lab
        .root
        .berth(["start", "-a", "-i", "catter"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    started
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = started.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through stdin\n",
        "stdin closed -> cat exits"
    );
    assert!(out.status.success());

    lab.detached(&[
        "--name",
        "again",
        "busybox",
        "sh",
        "-c",
        "echo start >> /log; exec sleep 1000",
    ]);
    lab.ok(&["restart", "-t", "1", "again"]);
    assert_eq!(lab.ok(&["exec", "again", "cat", "/log"]), "start\nstart\n");
    assert_eq!(lab.inspect("again", "{{.State.Status}}"), "running");
}

#[test]
fn attach_flag_selects_streams() {
    let lab = Lab::new();
    let out = lab.run(&[
        "run",
        "--rm",
        "-a",
        "stdout",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "stderr was not attached"
    );
    let conflict = lab.run(&["run", "-d", "-a", "stdout", "busybox", "true"]);
    assert_eq!(conflict.status.code(), Some(125));
}

#[test]
fn the_debian_fixture_runs_with_its_user_workdir_and_entrypoint() {
    let lab = Lab::new();
    let archive = fixture("debian/docker-archive.tar");
    lab.ok(&["load", "-i", archive.to_str().unwrap()]);
    let out = lab.ok(&[
        "run",
        "--rm",
        "debian:bookworm",
        "sh",
        "-c",
        "id -un; pwd; echo $LANG $HOME",
    ]);
    assert_eq!(out, "app\n/srv/app\nC.UTF-8 /home/app\n");
    let root = lab.ok(&[
        "run",
        "--rm",
        "-u",
        "root",
        "debian:bookworm",
        "sh",
        "-c",
        "apt-get --version | head -1",
    ]);
    assert!(root.starts_with("apt "), "{root}");
    // The image's STOPSIGNAL is SIGINT: a shell trapping INT stops at once.
    lab.detached(&[
        "--name",
        "deb",
        "debian:bookworm",
        "sh",
        "-c",
        "trap 'exit 4' INT; while true; do sleep 0.1; done",
    ]);
    lab.ok(&["stop", "-t", "30", "deb"]);
    assert_eq!(lab.inspect("deb", "{{.State.ExitCode}}"), "4");
}

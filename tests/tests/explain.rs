//! End-to-end tests of `--explain` (issue 8): the narration of a run names
//! the real overlay directories, cgroup files, veth and nftables elements,
//! and each of them is then found on the host, where the narration says.
//! The narration goes to stderr only, comes from the monitor and from the
//! container's init (PID 1 of its namespace) as well as from `berth`, and
//! never ends up in the container's own output or log.

use std::net::TcpListener;
use std::process::{Command, Output};

use berth_tests::{describe, Lab};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The narrated lines of process `who` (`berth`, `monitor`, `init`), without
/// the `who pid | ` column.
fn lines_of<'a>(narration: &'a str, who: &str) -> Vec<&'a str> {
    narration
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(who))
        .filter_map(|l| l.split_once(" | ").map(|(_, text)| text))
        .collect()
}

/// The first narrated line (of any process) containing `needle`.
fn line_with<'a>(narration: &'a str, needle: &str) -> &'a str {
    narration
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in the narration:\n{narration}"))
}

/// The word after `marker` in `line`.
fn word_after<'a>(line: &'a str, marker: &str) -> &'a str {
    let rest = &line[line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {line:?}"))
        + marker.len()..];
    rest.split_whitespace().next().unwrap_or("")
}

fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_narration_of_a_run_names_what_is_then_found_on_the_host() {
    let lab = Lab::new();
    let port = free_port().to_string();
    let publish = format!("{port}:80");
    let out = lab.ok_output(&[
        "run",
        "--explain",
        "-d",
        "--name",
        "web",
        "-m",
        "64m",
        "-p",
        &publish,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "stdout holds only the id: {}", describe(&out));
    let narration = stderr(&out);
    let pid = lab.inspect("web", "{{.State.Pid}}");

    // The overlay: mounted in the monitor's mount namespace with the very
    // lowerdir and upperdir the narration gives.
    let monitor_pid = word_after(
        narration
            .lines()
            .find(|l| l.starts_with("monitor"))
            .unwrap(),
        "monitor",
    );
    let upper = word_after(
        line_with(&narration, "upperdir (its writes)"),
        "upperdir (its writes)",
    );
    let lower = word_after(
        line_with(&narration, "lowerdir (top layer first)"),
        "lowerdir (top layer first)",
    );
    assert!(
        upper.ends_with(&format!("containers/{id}/upper")),
        "{upper}"
    );
    let mountinfo = std::fs::read_to_string(format!("/proc/{monitor_pid}/mountinfo")).unwrap();
    let overlay = mountinfo
        .lines()
        .find(|l| l.contains(&format!("containers/{id}/rootfs")) && l.contains(" overlay "))
        .unwrap_or_else(|| panic!("no overlay of {id} in the monitor's mounts:\n{mountinfo}"));
    assert!(overlay.contains(&format!("upperdir={upper}")), "{overlay}");
    assert!(overlay.contains(&format!("lowerdir={lower}")), "{overlay}");

    // The memory limit: the narrated file holds the value, and the cgroup
    // directory holds the container's PID 1.
    let limit_file = word_after(
        line_with(&narration, "wrote 67108864 to "),
        "wrote 67108864 to ",
    );
    assert!(limit_file.contains(&id), "{limit_file}");
    assert_eq!(
        std::fs::read_to_string(limit_file).unwrap().trim(),
        "67108864"
    );
    let cgroup_dir = std::path::Path::new(limit_file).parent().unwrap();
    let procs = std::fs::read_to_string(cgroup_dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|p| p == pid),
        "pid {pid} not in {}: {procs}",
        cgroup_dir.display()
    );

    // The veth: its host end exists, enslaved to the bridge the narration names.
    let veth_line = line_with(&narration, "veth pair created");
    let host_veth = word_after(veth_line, "netlink: ");
    let bridge = word_after(veth_line, "attached to bridge ").trim_end_matches(';');
    assert_eq!(bridge, lab.root.bridge());
    let master = std::fs::read_link(format!("/sys/class/net/{host_veth}/master"))
        .unwrap_or_else(|e| panic!("veth {host_veth} has no master: {e}"));
    assert!(master.ends_with(bridge), "{}", master.display());

    // The published port: the very element is in the nftables map.
    let nft_line = line_with(&narration, "nft add element ip ");
    let table = word_after(nft_line, "nft add element ip ");
    let map = word_after(nft_line, &format!("{table} "));
    let element = nft_line[nft_line.find('{').unwrap() + 1..nft_line.find('}').unwrap()].trim();
    assert!(
        element.starts_with(&format!("tcp . {port} : ")),
        "{element}"
    );
    let listed = Command::new("nft")
        .args(["list", "map", "ip", table, map])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(element), "{element:?} not in:\n{listed}");

    // The init narrates from inside: PID 1, pivot_root into the rootfs, execve of httpd.
    let init = lines_of(&narration, "init");
    assert!(
        narration.lines().any(|l| l.starts_with("init        1 | ")),
        "{narration}"
    );
    assert!(
        init.iter()
            .any(|l| l.starts_with("pivot_root into ")
                && l.contains(&format!("containers/{id}/rootfs"))),
        "{narration}"
    );
    let exec = line_with(&narration, "execve(");
    assert!(exec.contains(r#"["httpd", "-f", "-p", "80"]"#), "{exec}");
    assert!(line_with(&narration, "clone3(").contains("CLONE_NEWPID"));

    // None of it went to the container's stderr: httpd -f writes nothing.
    let logs = lab.ok_output(&["logs", "web"]);
    assert!(
        logs.stdout.is_empty() && logs.stderr.is_empty(),
        "{}",
        describe(&logs)
    );
}

#[test]
fn the_narration_is_on_stderr_and_the_output_on_stdout() {
    let lab = Lab::new();
    let out = lab.ok_output(&["run", "--explain", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let narration = stderr(&out);
    assert!(line_with(&narration, "execve(").contains(r#"["echo", "hi"]"#));
    // In order: berth resolves and records, the monitor mounts and clones, the init execs.
    let position = |needle: &str| {
        narration
            .find(needle)
            .unwrap_or_else(|| panic!("{needle}: {narration}"))
    };
    assert!(position("recorded container") < position("mount(\"overlay\""));
    assert!(position("mount(\"overlay\"") < position("clone3("));
    assert!(position("clone3(") < position("pivot_root into"));
    assert!(position("pivot_root into") < position("execve("));

    // Without --explain, a run says nothing on stderr.
    let quiet = lab.ok_output(&["run", "--rm", "busybox", "echo", "hi"]);
    assert!(quiet.stderr.is_empty(), "{}", describe(&quiet));
}

#[test]
fn create_explains_the_record_and_start_explains_the_construction() {
    let lab = Lab::new();
    let created = lab.ok_output(&["create", "--explain", "--name", "job", "busybox", "true"]);
    let narration = stderr(&created);
    assert!(line_with(&narration, "recorded container").contains("(job)"));
    assert!(
        narration.contains("berth start --explain job"),
        "{narration}"
    );
    assert!(
        !narration.contains("clone3"),
        "create must not start anything: {narration}"
    );

    let started = lab.ok_output(&["start", "--explain", "job"]);
    let narration = stderr(&started);
    assert!(line_with(&narration, "pivot_root into").contains("/rootfs"));
    assert!(line_with(&narration, "execve(").contains(r#"["true"]"#));
}

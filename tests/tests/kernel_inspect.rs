//! End-to-end tests of `berth inspect --kernel` (issue 8): what it reports
//! about a running container is checked against what the test reads from
//! /proc and /sys itself, and against the limits the container was given.

use std::net::TcpListener;

use berth_tests::{describe, Lab};
use serde_json::Value;

fn inode(link: &str) -> u64 {
    let target = std::fs::read_link(link).unwrap();
    let text = target.to_string_lossy();
    text[text.find('[').unwrap() + 1..text.len() - 1]
        .parse()
        .unwrap()
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn the_kernel_view_matches_proc_and_the_limits_given() {
    let lab = Lab::new();
    let port = TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("{port}:80");
    lab.root.ok([
        "run",
        "-d",
        "--name",
        "kern",
        "-m",
        "64m",
        "--pids-limit",
        "50",
        "-p",
        &publish,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    let pid: i32 = lab
        .root
        .ok(["inspect", "-f", "{{.State.Pid}}", "kern"])
        .trim()
        .parse()
        .unwrap();
    let report: Value =
        serde_json::from_str(
            &lab.root
                .ok(["inspect", "--kernel", "-f", "{{json .}}", "kern"]),
        )
        .unwrap();
    assert_eq!(report["Pid"], pid);

    // Namespaces: the inodes the test reads itself; its own, except user and time.
    let namespaces = report["Namespaces"].as_array().unwrap();
    let ns = |kind: &str| {
        namespaces
            .iter()
            .find(|n| n["Type"] == kind)
            .unwrap_or_else(|| panic!("{kind}: {report}"))
    };
    for kind in ["mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        assert_eq!(
            ns(kind)["Inode"],
            inode(&format!("/proc/{pid}/ns/{kind}")),
            "{kind}"
        );
        assert_ne!(
            ns(kind)["Inode"],
            inode(&format!("/proc/self/ns/{kind}")),
            "{kind}"
        );
        assert_eq!(ns(kind)["Shared"], false, "{kind}");
    }
    assert_eq!(ns("user")["Shared"], true, "no user namespace by default");

    // Cgroups: the limits given, one process, and membership under berth/<id>.
    let id = report["Id"].as_str().unwrap();
    let stats = &report["Cgroups"]["Stats"];
    assert_eq!(stats["memory_limit_bytes"], 64 << 20, "{stats}");
    assert_eq!(stats["pids_limit"], 50, "{stats}");
    assert_eq!(stats["pids_current"], 1, "{stats}");
    let membership = report["Cgroups"]["Membership"].as_array().unwrap();
    assert!(
        membership
            .iter()
            .any(|l| l.as_str().unwrap().ends_with(&format!("/berth/{id}"))),
        "{membership:?}"
    );

    // Mounts as the container sees them: the overlay at /, proc at /proc.
    let mounts = report["Mounts"].as_array().unwrap();
    let mount = |target: &str| {
        mounts
            .iter()
            .find(|m| m["Target"] == target)
            .unwrap_or_else(|| panic!("{target}: {mounts:?}"))
    };
    assert_eq!(mount("/")["Type"], "overlay");
    assert_eq!(mount("/proc")["Type"], "proc");
    assert!(mount("/proc/sys")["Options"]
        .as_str()
        .unwrap()
        .starts_with("ro"));

    // Capabilities: docker's default set; no CAP_SYS_ADMIN.
    let effective = names(&report["Capabilities"]["Effective"]);
    assert_eq!(effective.len(), 14, "{effective:?}");
    assert!(effective.contains(&"CAP_NET_BIND_SERVICE"));
    assert!(!effective.contains(&"CAP_SYS_ADMIN"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let seccomp_line = status.lines().find(|l| l.starts_with("Seccomp:")).unwrap();
    let expected_mode = match seccomp_line.split_whitespace().nth(1) {
        Some("2") => "filter",
        Some("0") => "disabled",
        other => panic!("{other:?}"),
    };
    assert_eq!(report["Security"]["Seccomp"], expected_mode);

    // Network: httpd listens on port 80 inside; the default route; the veth
    // in this root's bridge; the published port.
    let network = &report["Network"];
    let listening: Vec<String> = network["Listening"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["Proto"].as_str().unwrap(),
                l["Address"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        listening
            .iter()
            .any(|l| l == "tcp6 [::]:80" || l == "tcp 0.0.0.0:80"),
        "{listening:?}"
    );
    let gateway = network["Endpoint"]["Gateway"].as_str().unwrap();
    assert!(
        network["Routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["Destination"] == "default" && r["Gateway"] == gateway),
        "{network}"
    );
    assert_eq!(network["Endpoint"]["Bridge"], lab.root.bridge());
    assert!(names(&network["Published"]).contains(&format!("0.0.0.0:{port}->80/tcp").as_str()));

    // The text report says the same in words.
    let text = lab.root.ok(["inspect", "--kernel", "kern"]);
    assert!(
        text.contains(&format!("PID 1 is pid {pid} on the host")),
        "{text}"
    );
    assert!(text.contains(&format!("= {}", 64 << 20)), "{text}");
    assert!(
        text.contains(&format!("in bridge {}", lab.root.bridge())),
        "{text}"
    );
}

#[test]
fn a_container_that_does_not_run_is_refused_with_what_to_do() {
    let lab = Lab::new();
    lab.root.ok(["create", "--name", "idle", "busybox", "true"]);
    let out = lab.root.run(["inspect", "--kernel", "idle"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not running") && err.contains("berth start idle"),
        "{err}"
    );
}

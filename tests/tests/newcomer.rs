//! What a newcomer meets first (issue 8): every command's help shows an
//! example, and the usual first mistakes — not root, an image that is not
//! loaded, a host port already taken, a --root that cannot hold an overlay —
//! end with one line that says what is wrong and what to do, exit status
//! 125, and nothing left behind.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use berth_tests::{bin, describe, fixture, require_root, TestRoot};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names listed under `Commands:` in a help text (but `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

fn help_of(path: &[String]) -> String {
    let out = Command::new(bin("berth"))
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berth {path:?} --help: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_command_and_subcommand_shows_an_example_in_its_help() {
    let mut missing = Vec::new();
    let mut queue: Vec<Vec<String>> = subcommands(&help_of(&[]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        seen += 1;
        let help = help_of(&path);
        let subs = subcommands(&help);
        // A group (`berth network`) needs no example of its own if each of
        // its commands has one.
        if subs.is_empty() && !help.contains("Example") {
            missing.push(path.join(" "));
        }
        queue.extend(subs.into_iter().map(|s| {
            let mut p = path.clone();
            p.push(s);
            p
        }));
    }
    assert!(seen > 30, "only {seen} commands found");
    assert!(missing.is_empty(), "no example in the help of: {missing:?}");
}

#[test]
fn without_root_berth_says_to_use_sudo_before_touching_anything() {
    require_root();
    let root = TestRoot::new();
    let out = root
        .berth(["images"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("must run as root") && err.contains("sudo"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        !root.root().join("images").exists(),
        "nothing may be created"
    );
    // Printing the version needs no privilege.
    let version = root
        .berth(["version"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(version.status.success(), "{}", describe(&version));
}

#[test]
fn an_image_that_is_not_loaded_says_how_to_get_it() {
    require_root();
    let root = TestRoot::new();
    let out = root.run(["run", "--rm", "alpine:3.19", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Unable to find image 'alpine:3.19' locally"),
        "{err}"
    );
    assert!(
        err.contains("berth load -i") && err.contains("berth pull alpine:3.19"),
        "{err}"
    );
    let ps = root.ok(["ps", "-aq"]);
    assert!(ps.trim().is_empty(), "no container may be left: {ps}");
}

#[test]
fn a_host_port_in_use_says_how_to_find_the_holder_or_pick_another() {
    require_root();
    let root = TestRoot::new();
    root.ok([
        "load",
        "-i",
        fixture("busybox/docker-archive.tar").to_str().unwrap(),
    ]);
    let holder = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = root.run([
        "run",
        "--rm",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("0.0.0.0:{port} failed: port is already allocated")),
        "{err}"
    );
    assert!(
        err.contains(&format!("grep ':{port}'")) && err.contains("-p OTHER:CONTAINER_PORT"),
        "{err}"
    );
    let ps = root.ok(["ps", "-aq"]);
    assert!(ps.trim().is_empty(), "--rm leaves no container: {ps}");
}

/// An overlayfs mounted over a test root's `--root`, as when berth runs
/// inside a container; unmounted (with everything below) by TestRoot's drop.
#[test]
fn a_root_on_overlayfs_says_to_move_it_to_a_real_filesystem() {
    require_root();
    let root = TestRoot::new();
    let base = root.path();
    for dir in ["ov-lower", "ov-upper", "ov-work"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.join("ov-lower").display(),
        base.join("ov-upper").display(),
        base.join("ov-work").display()
    );
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(root.root())
        .output()
        .unwrap();
    assert!(mounted.status.success(), "{}", describe(&mounted));
    root.ok([
        "load",
        "-i",
        fixture("busybox/docker-archive.tar").to_str().unwrap(),
    ]);
    let out = root.run(["run", "--rm", "--network", "none", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("is itself on overlayfs"), "{err}");
    assert!(
        err.contains("put berth's --root (or BERTH_ROOT) on ext4, xfs or btrfs"),
        "{err}"
    );
    let ps = root.ok(["ps", "-aq"]);
    assert!(ps.trim().is_empty(), "--rm leaves no container: {ps}");
}

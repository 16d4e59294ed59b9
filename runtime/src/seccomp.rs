//! `linux.seccomp`: a BPF filter that decides, per system call and its
//! arguments, whether the container may make it.
//!
//! Mechanism: `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`, once per BPF
//! program. The programs are generated with the `seccompiler` crate (pure
//! Rust, maintained by the Firecracker project, no C library to link),
//! compiled in the parent before the container process exists so a bad
//! profile is a clean error, and installed as late as possible in the child.
//!
//! seccompiler builds filters with one "match" and one "mismatch" action,
//! while an OCI profile gives every rule its own action. The translation uses
//! the kernel's rule for stacked filters — every filter runs and the most
//! severe verdict wins (kill > trap > errno > trace > log > allow):
//! - a *base* program returns ALLOW for any syscall some rule names (with its
//!   argument conditions) and the profile's default action otherwise;
//! - one more program per non-ALLOW action returns that action for its rules
//!   and ALLOW otherwise.
//!
//! So a syscall matched by a rule gets that rule's action, and anything else
//! the default action. Differences from libseccomp, documented in
//! docs/runtime.md:
//! - unknown syscall names are skipped with a debug log (as runc does);
//! - `SCMP_ACT_NOTIFY` is refused with an error;
//! - only the native architecture is filtered: a syscall made through another
//!   ABI (e.g. 32-bit `int 0x80` on x86_64) kills the process;
//! - argument values are compared as 64-bit, as libseccomp does;
//! - several conditions on the *same* argument are alternatives (OR), as in
//!   runc; conditions on different arguments must all hold (AND).

use std::collections::BTreeMap;
use std::str::FromStr;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::error::{Error, Result};

const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_TSYNC: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_uint = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_uint = 4;

/// A compiled profile, ready to install.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledFilter {
    pub programs: Vec<BpfProgram>,
    pub flags: libc::c_uint,
}

/// A rule set for one action: syscall number -> rules (empty: always matches).
type RuleMap = BTreeMap<i64, Option<Vec<SeccompRule>>>;

/// Compile config.json's profile into the BPF programs to install.
pub fn compile(profile: &LinuxSeccomp) -> Result<CompiledFilter> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| Error::Seccomp(format!("unsupported architecture: {e}")))?;
    let default = action_of(
        profile.default_action(),
        profile.default_errno_ret(),
        "defaultAction",
    )?;
    // Rules grouped by their action (Errno(1) and Errno(38) are different).
    let mut groups: Vec<(SeccompAction, RuleMap)> = Vec::new();
    for entry in profile.syscalls().iter().flatten() {
        let action = action_of(entry.action(), entry.errno_ret(), "syscalls[].action")?;
        let rules = rules_for(entry.args().as_deref().unwrap_or(&[]))?;
        let group = match groups.iter().position(|(a, _)| *a == action) {
            Some(i) => &mut groups[i].1,
            None => {
                groups.push((action.clone(), RuleMap::new()));
                &mut groups.last_mut().expect("just pushed").1
            }
        };
        for name in entry.names() {
            let Ok(sysno) = syscalls::Sysno::from_str(name) else {
                tracing::debug!(syscall = %name, "seccomp: unknown syscall name on this architecture, skipping it");
                continue;
            };
            add_rules(group, sysno.id() as i64, rules.clone());
        }
    }

    let named: usize = groups.iter().map(|(_, group)| group.len()).sum();
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        let mut all = RuleMap::new();
        for (action, group) in &groups {
            if *action == default {
                continue;
            }
            for (nr, rules) in group {
                add_rules(&mut all, *nr, rules.clone());
            }
        }
        programs.push(program(all, default.clone(), SeccompAction::Allow, arch)?);
    }
    for (action, group) in groups {
        if action == SeccompAction::Allow || action == default {
            continue;
        }
        programs.push(program(group, SeccompAction::Allow, action, arch)?);
    }

    let mut flags = 0;
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        };
    }
    let instructions: usize = programs.iter().map(Vec::len).sum();
    tracing::debug!(step = "seccomp.compile", syscalls = named, programs = programs.len(), instructions,
        "compiled the seccomp profile: {named} syscalls named by its rules, default action {default:?}: {} BPF program(s), {instructions} instructions",
        programs.len());
    Ok(CompiledFilter { programs, flags })
}

fn add_rules(map: &mut RuleMap, nr: i64, rules: Option<Vec<SeccompRule>>) {
    match (map.get_mut(&nr), rules) {
        // An unconditional rule covers every conditional one.
        (Some(slot), None) => *slot = None,
        (Some(Some(existing)), Some(more)) => existing.extend(more),
        (Some(None), Some(_)) => {}
        (None, rules) => {
            map.insert(nr, rules);
        }
    }
}

fn program(
    rules: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> = rules
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect();
    let filter = SeccompFilter::new(rules, mismatch, matched, arch)
        .map_err(|e| Error::Seccomp(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| Error::Seccomp(e.to_string()))
}

fn action_of(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: &str,
) -> Result<SeccompAction> {
    let errno = errno_ret.unwrap_or(libc::EPERM as u32);
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno),
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Seccomp(format!(
                "{field} SCMP_ACT_NOTIFY (a user-space seccomp agent) is not supported by berth-runtime; use SCMP_ACT_ERRNO or SCMP_ACT_TRACE"
            )))
        }
    })
}

/// The rules of one config entry: `None` when it has no argument conditions.
fn rules_for(args: &[oci_spec::runtime::LinuxSeccompArg]) -> Result<Option<Vec<SeccompRule>>> {
    if args.is_empty() {
        return Ok(None);
    }
    let conditions: Vec<SeccompCondition> = args.iter().map(condition).collect::<Result<_>>()?;
    let same_index = args.len() > 1 && args.iter().all(|a| a.index() == args[0].index());
    let rules = if same_index {
        conditions
            .into_iter()
            .map(|c| SeccompRule::new(vec![c]))
            .collect::<Result<Vec<_>, _>>()
    } else {
        SeccompRule::new(conditions).map(|r| vec![r])
    };
    rules.map(Some).map_err(|e| Error::Seccomp(e.to_string()))
}

fn condition(arg: &oci_spec::runtime::LinuxSeccompArg) -> Result<SeccompCondition> {
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| Error::Seccomp(format!("argument index {} is not 0..5", arg.index())))?;
    let (op, value) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        // OCI: value is the mask, valueTwo the expected masked value.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| Error::Seccomp(e.to_string()))
}

/// Install every program (the kernel evaluates them all, most severe wins).
/// Needs no_new_privs or CAP_SYS_ADMIN.
pub fn install(filter: &CompiledFilter) -> Result<()> {
    let instructions: usize = filter.programs.iter().map(Vec::len).sum();
    tracing::debug!(step = "seccomp", programs = filter.programs.len(), instructions,
        "seccomp(SECCOMP_SET_MODE_FILTER): {} BPF program(s), {instructions} instructions; the kernel now checks every system call",
        filter.programs.len());
    for program in &filter.programs {
        install_program(program, filter.flags)
            .map_err(|errno| Error::sys("seccomp(SECCOMP_SET_MODE_FILTER)", errno))?;
    }
    Ok(())
}

/// One `seccomp(2)` call. Only a syscall: safe after fork.
fn install_program(program: &[sock_filter], flags: libc::c_uint) -> Result<(), nix::errno::Errno> {
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        // sock_filter of seccompiler is layout-compatible with libc's (#[repr(C)]).
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, which lives for the whole call; the
    // kernel copies the instructions.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_allow_list_is_one_program_and_errno_rules_add_one() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["read", "write", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        }));
        let compiled = compile(&p).unwrap();
        assert_eq!(compiled.programs.len(), 2);
    }

    #[test]
    fn notify_is_refused_with_a_clear_message() {
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        let err = compile(&p).unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_NOTIFY"), "{err}");
    }

    #[test]
    fn argument_conditions_are_validated() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        }));
        assert!(compile(&p).is_err());
    }

    /// Install a filter in a forked child and make the syscalls for real:
    /// mkdirat is denied with EPERM, mkdirat with another mode allowed, and
    /// getpid still works. Needs no root (no_new_privs is set first).
    #[test]
    fn the_filter_really_denies_what_it_says() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 2, "value": 0o700, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        }));
        let compiled = compile(&p).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let denied = std::ffi::CString::new(dir.path().join("a").to_str().unwrap()).unwrap();
        let allowed = std::ffi::CString::new(dir.path().join("b").to_str().unwrap()).unwrap();
        // SAFETY: the child only makes raw syscalls and exits with _exit.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: raw syscalls on valid pointers, then _exit.
                unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    if install(&compiled).is_err() {
                        libc::_exit(10);
                    }
                    let r1 = libc::mkdirat(libc::AT_FDCWD, denied.as_ptr(), 0o700);
                    let e1 = *libc::__errno_location();
                    let r2 = libc::mkdirat(libc::AT_FDCWD, allowed.as_ptr(), 0o755);
                    let r3 = libc::syscall(libc::SYS_getppid);
                    let e3 = *libc::__errno_location();
                    let ok =
                        r1 == -1 && e1 == libc::EPERM && r2 == 0 && r3 == -1 && e3 == libc::ENOSYS;
                    libc::_exit(if ok { 0 } else { 1 });
                }
            }
            pid => {
                let status =
                    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0)
                );
                assert!(!dir.path().join("a").exists());
                assert!(dir.path().join("b").exists());
            }
        }
    }
}

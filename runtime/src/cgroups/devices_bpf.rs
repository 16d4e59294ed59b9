//! The device cgroup on cgroup v2: an eBPF program that answers "may this
//! process open/mknod device TYPE MAJOR:MINOR for ACCESS?".
//!
//! Mechanism: cgroup v2 has no devices.allow/deny files. Instead the kernel
//! runs every BPF_PROG_TYPE_CGROUP_DEVICE program attached to the cgroup (and
//! its ancestors) on each device open and mknod; returning 0 denies (EPERM).
//! We hand-assemble a small program from the OCI rules (no compiler, no
//! libbpf), load it with `bpf(BPF_PROG_LOAD)` and attach it with
//! `bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)`. Programs we
//! attached before (an update) are found with `BPF_PROG_QUERY` and detached
//! after the new one is in place, so there is never a moment without a filter.
//!
//! Rule semantics (same as the v1 controller): rules apply in order; a rule
//! for all devices with all access (`a *:* rwm`) resets the default to allow
//! or deny and forgets earlier rules. The program checks the remaining rules
//! last-to-first; the first that decides wins, else the default:
//! - an allow rule decides (allow) when it grants every requested access bit;
//! - a deny rule decides (deny) when it covers any requested access bit.
//!
//! Type `p` (fifo) rules are skipped: the kernel never asks about fifos.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use rustix::fs::{Mode, OFlags};

use super::CgroupError;

// Values from include/uapi/linux/bpf.h.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

// struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
pub(crate) const DEV_BLOCK: i32 = 1;
pub(crate) const DEV_CHAR: i32 = 2;
pub(crate) const ACC_MKNOD: u32 = 1;
pub(crate) const ACC_READ: u32 = 2;
pub(crate) const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// dst register in the low nibble, src register in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

// Registers: r0 = return value, r1 = context on entry (then scratch),
// r2 = device type, r3 = requested access, r4 = major, r5 = minor.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}
/// dst = *(u32 *)(src + off)
fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x61, dst, src, off, 0) // BPF_LDX | BPF_MEM | BPF_W
}
fn and32_imm(dst: u8, imm: i32) -> Insn {
    insn(0x54, dst, 0, 0, imm) // BPF_ALU | BPF_AND | BPF_K
}
fn rsh32_imm(dst: u8, imm: i32) -> Insn {
    insn(0x74, dst, 0, 0, imm) // BPF_ALU | BPF_RSH | BPF_K
}
fn mov32_reg(dst: u8, src: u8) -> Insn {
    insn(0xbc, dst, src, 0, 0) // BPF_ALU | BPF_MOV | BPF_X
}
fn mov64_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm) // BPF_ALU64 | BPF_MOV | BPF_K
}
/// if dst != imm goto +off
fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x55, dst, 0, off, imm) // BPF_JMP | BPF_JNE | BPF_K
}
/// if dst != src goto +off
fn jne_reg(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x5d, dst, src, off, 0) // BPF_JMP | BPF_JNE | BPF_X
}
/// if dst == imm goto +off
fn jeq_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x15, dst, 0, off, imm) // BPF_JMP | BPF_JEQ | BPF_K
}
fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0) // BPF_JMP | BPF_EXIT
}

/// One OCI device rule in kernel terms; `None` is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub allow: bool,
    pub dev_type: Option<i32>,
    pub major: Option<i32>,
    pub minor: Option<i32>,
    pub access: u32,
}

impl DeviceRule {
    fn is_everything(&self) -> bool {
        self.dev_type.is_none()
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }
}

/// "rwm" (or a subset) as access bits; an absent or empty string means all.
pub(crate) fn parse_access(access: Option<&str>) -> Result<u32, CgroupError> {
    let text = access.unwrap_or("");
    if text.is_empty() {
        return Ok(ACC_ALL);
    }
    text.chars().try_fold(0, |bits, c| match c {
        'r' => Ok(bits | ACC_READ),
        'w' => Ok(bits | ACC_WRITE),
        'm' => Ok(bits | ACC_MKNOD),
        other => Err(CgroupError::InvalidResource {
            what: format!("devices access {text:?}"),
            why: format!("unknown access {other:?}; use r, w and m"),
        }),
    })
}

/// A major/minor number: `None` or negative means any.
fn device_number(n: Option<i64>, what: &str) -> Result<Option<i32>, CgroupError> {
    match n {
        None => Ok(None),
        Some(v) if v < 0 => Ok(None),
        Some(v) => i32::try_from(v)
            .map(Some)
            .map_err(|_| CgroupError::InvalidResource {
                what: format!("devices {what} {v}"),
                why: "too large for a device number".into(),
            }),
    }
}

/// The OCI rule in kernel terms; `None` for rules the kernel never consults
/// (fifos).
pub(crate) fn to_rule(rule: &LinuxDeviceCgroup) -> Result<Option<DeviceRule>, CgroupError> {
    let dev_type = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some(DEV_BLOCK),
        LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
        LinuxDeviceType::P => return Ok(None),
    };
    Ok(Some(DeviceRule {
        allow: rule.allow(),
        dev_type,
        major: device_number(rule.major(), "major")?,
        minor: device_number(rule.minor(), "minor")?,
        access: parse_access(rule.access().as_deref())?,
    }))
}

/// The rules that matter after "everything" resets, and the default.
/// A cgroup without rules allows everything (as a new v1 cgroup under an
/// unrestricted parent does).
pub(crate) fn effective_rules(
    rules: &[LinuxDeviceCgroup],
) -> Result<(bool, Vec<DeviceRule>), CgroupError> {
    let mut default_allow = true;
    let mut kept = Vec::new();
    for rule in rules {
        let Some(rule) = to_rule(rule)? else { continue };
        if rule.is_everything() {
            default_allow = rule.allow;
            kept.clear();
        } else {
            kept.push(rule);
        }
    }
    Ok((default_allow, kept))
}

/// Assemble the filter program for `rules`.
pub(crate) fn build_program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, CgroupError> {
    let (default_allow, kept) = effective_rules(rules)?;
    let mut program = vec![
        load_u32(R2, R1, 0),
        and32_imm(R2, 0xffff),
        load_u32(R3, R1, 0),
        rsh32_imm(R3, 16),
        load_u32(R4, R1, 4),
        load_u32(R5, R1, 8),
    ];
    for rule in kept.iter().rev() {
        program.extend(rule_block(rule));
    }
    program.push(mov64_imm(R0, i32::from(default_allow)));
    program.push(exit());
    Ok(program)
}

/// "If the device matches and the access decides, return allow/deny";
/// otherwise fall through to the next block.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    // Jumps are emitted with a placeholder offset, fixed once the block length is known.
    const NEXT: i16 = i16::MIN;
    let mut block = Vec::new();
    if let Some(t) = rule.dev_type {
        block.push(jne_imm(R2, t, NEXT));
    }
    if rule.allow && rule.access != ACC_ALL {
        // requested & granted != requested: something asked for is not granted.
        block.extend([
            mov32_reg(R1, R3),
            and32_imm(R1, rule.access as i32),
            jne_reg(R1, R3, NEXT),
        ]);
    } else if !rule.allow && rule.access != ACC_ALL {
        // requested & denied == 0: nothing asked for is denied.
        block.extend([
            mov32_reg(R1, R3),
            and32_imm(R1, rule.access as i32),
            jeq_imm(R1, 0, NEXT),
        ]);
    }
    if let Some(major) = rule.major {
        block.push(jne_imm(R4, major, NEXT));
    }
    if let Some(minor) = rule.minor {
        block.push(jne_imm(R5, minor, NEXT));
    }
    block.push(mov64_imm(R0, i32::from(rule.allow)));
    block.push(exit());
    let len = block.len();
    for (index, insn) in block.iter_mut().enumerate() {
        if insn.off == NEXT {
            insn.off = (len - index - 1) as i16;
        }
    }
    block
}

/// The `union bpf_attr` prefixes we pass, all fields explicit (no padding
/// holes: the kernel insists unused bytes are zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Marker for the structs above: `repr(C)`, no padding, laid out as the
/// start of `union bpf_attr` for their command.
///
/// # Safety
/// Implement only for such structs.
unsafe trait BpfAttr {}
unsafe impl BpfAttr for ProgLoadAttr {}
unsafe impl BpfAttr for AttachAttr {}
unsafe impl BpfAttr for QueryAttr {}
unsafe impl BpfAttr for GetFdByIdAttr {}

fn bpf<A: BpfAttr>(cmd: libc::c_int, attr: &mut A) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed BpfAttr struct (a valid
    // prefix of union bpf_attr for `cmd`, see the trait); the kernel reads
    // and writes at most size_of::<A>() bytes of it. Any pointers inside it
    // were set by our callers to buffers that outlive this call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A as *mut c_void,
            std::mem::size_of::<A>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn bpf_fd<A: BpfAttr>(cmd: libc::c_int, attr: &mut A) -> std::io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: for BPF_PROG_LOAD and BPF_PROG_GET_FD_BY_ID a non-negative
    // return value is a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Load `program` into the kernel; on failure retry with the verifier log so
/// the error says why.
fn load(program: &[Insn], cgroup: &Path) -> Result<OwnedFd, CgroupError> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"berth_devices");
    let attr = |log: &mut Vec<u8>| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    let mut no_log = Vec::new();
    match bpf_fd(BPF_PROG_LOAD, &mut attr(&mut no_log)) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; 64 * 1024];
            let source = bpf_fd(BPF_PROG_LOAD, &mut attr(&mut log))
                .err()
                .unwrap_or(first);
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(CgroupError::Bpf {
                op: "BPF_PROG_LOAD",
                path: cgroup.into(),
                source,
                verifier_log: if text.is_empty() {
                    String::new()
                } else {
                    format!("; verifier: {text}")
                },
            })
        }
    }
}

/// The ids of the device programs attached directly to `cgroup_fd`.
fn attached(cgroup_fd: &OwnedFd) -> std::io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(ids[..attr.prog_cnt as usize].to_vec())
}

/// Build, load and attach the filter for `rules` to the cgroup `dir`,
/// replacing the ones attached before.
pub(crate) fn install(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let program = build_program(rules)?;
    let err = |op, source| CgroupError::Bpf {
        op,
        path: dir.into(),
        source,
        verifier_log: String::new(),
    };
    let cgroup_fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CgroupError::Io {
        op: "open",
        path: dir.into(),
        source: e.into(),
    })?;
    let previous = attached(&cgroup_fd).map_err(|e| err("BPF_PROG_QUERY", e))?;
    let prog_fd = load(&program, dir)?;
    let mut attach = AttachAttr {
        target_fd: cgroup_fd.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attach).map_err(|e| err("BPF_PROG_ATTACH", e))?;
    tracing::debug!(step = "cgroup.devices", path = %dir.display(), instructions = program.len(), rules = rules.len(),
        "attached a {}-instruction device filter to {}", program.len(), dir.display());
    for id in previous {
        let mut by_id = GetFdByIdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old = bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut by_id)
            .map_err(|e| err("BPF_PROG_GET_FD_BY_ID", e))?;
        let mut detach = AttachAttr {
            target_fd: cgroup_fd.as_raw_fd() as u32,
            attach_bpf_fd: old.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_DETACH, &mut detach).map_err(|e| err("BPF_PROG_DETACH", e))?;
        tracing::debug!(path = %dir.display(), id, "detached the previous device filter {id}");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    pub(crate) fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    /// A tiny interpreter for exactly the instructions we emit, so the
    /// program's decisions can be checked without root or a kernel.
    fn run(program: &[Insn], dev_type: u32, major: u32, minor: u32, access: u32) -> u64 {
        let ctx = [(access << 16) | dev_type, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i64::from(i.imm) as u64;
            let jump = |cond: bool| if cond { i.off as isize } else { 0 };
            let mut skip = 0isize;
            match i.code {
                0x61 => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
                0x54 => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                0x74 => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                0xbc => r[dst] = r[src] as u32 as u64,
                0xb7 => r[dst] = imm,
                0x55 => skip = jump(r[dst] != imm),
                0x5d => skip = jump(r[dst] != r[src]),
                0x15 => skip = jump(r[dst] == imm),
                0x95 => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc = (pc as isize + 1 + skip) as usize;
        }
    }

    const C: u32 = DEV_CHAR as u32;
    const B: u32 = DEV_BLOCK as u32;

    #[test]
    fn deny_all_then_allow_null_like_a_default_container() {
        let rules = [
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::C, Some(136), None, "rw"),
        ];
        let p = build_program(&rules).unwrap();
        assert_eq!(run(&p, C, 1, 3, ACC_READ | ACC_WRITE), 1, "/dev/null rw");
        assert_eq!(run(&p, C, 1, 5, ACC_READ), 0, "/dev/zero is not listed");
        assert_eq!(run(&p, B, 1, 3, ACC_READ), 0, "block 1:3 is another device");
        assert_eq!(run(&p, C, 136, 7, ACC_WRITE), 1, "any pts, write");
        assert_eq!(
            run(&p, C, 136, 7, ACC_MKNOD),
            0,
            "pts mknod was not granted"
        );
    }

    #[test]
    fn later_rules_override_earlier_ones() {
        // Allow-all default, deny writes to 1:3, then allow reading it again.
        let rules = [
            rule(false, LinuxDeviceType::C, Some(1), Some(3), "rw"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "r"),
        ];
        let p = build_program(&rules).unwrap();
        assert_eq!(run(&p, C, 1, 3, ACC_READ), 1);
        assert_eq!(run(&p, C, 1, 3, ACC_WRITE), 0);
        assert_eq!(
            run(&p, C, 1, 3, ACC_READ | ACC_WRITE),
            0,
            "O_RDWR asks for a denied bit"
        );
        assert_eq!(
            run(&p, C, 1, 5, ACC_WRITE),
            1,
            "other devices keep the default"
        );
    }

    #[test]
    fn an_everything_rule_resets_earlier_rules() {
        let rules = [
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
        ];
        let (default_allow, kept) = effective_rules(&rules).unwrap();
        assert!(!default_allow);
        assert!(kept.is_empty());
        assert_eq!(run(&build_program(&rules).unwrap(), C, 1, 3, ACC_READ), 0);
        assert_eq!(
            run(&build_program(&[]).unwrap(), B, 8, 0, ACC_WRITE),
            1,
            "no rules: allow"
        );
    }

    #[test]
    fn fifo_rules_are_skipped_and_bad_access_refused() {
        let (_, kept) =
            effective_rules(&[rule(false, LinuxDeviceType::P, None, None, "rwm")]).unwrap();
        assert!(kept.is_empty());
        let err =
            build_program(&[rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwx")]).unwrap_err();
        assert!(err.to_string().contains("'x'"), "{err}");
    }
}

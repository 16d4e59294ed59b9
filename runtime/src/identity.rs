//! Who the container's process is: uid, gid, supplementary groups, umask,
//! no_new_privs.
//!
//! Mechanism: `setgroups(2)`, `setresgid(2)`, `setresuid(2)` (group ids
//! first: after the uid changes the process may no longer change them),
//! `prctl(PR_SET_KEEPCAPS)` around them so the permitted capabilities survive
//! the uid change (the capability sets are set right after, see
//! [`crate::capabilities`]), `umask(2)`, `prctl(PR_SET_NO_NEW_PRIVS)`.

use nix::unistd::{Gid, Uid};

use crate::error::{Error, Result};

/// The ids to switch to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

impl Identity {
    pub fn from_spec(user: &oci_spec::runtime::User) -> Identity {
        Identity {
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
        }
    }

    /// Switch ids, keeping the permitted capabilities.
    pub fn switch(&self) -> Result<()> {
        set_keepcaps(true)?;
        let groups: Vec<Gid> = self
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        match nix::unistd::setgroups(&groups) {
            Ok(()) => {}
            // A user namespace with setgroups denied: fine when there are none to set.
            Err(nix::errno::Errno::EPERM) if groups.is_empty() => {}
            Err(e) => {
                return Err(Error::sys(
                    format!("setgroups {:?}", self.additional_gids),
                    e,
                ))
            }
        }
        let gid = Gid::from_raw(self.gid);
        nix::unistd::setresgid(gid, gid, gid)
            .map_err(|e| Error::sys(format!("setresgid {}", self.gid), e))?;
        let uid = Uid::from_raw(self.uid);
        nix::unistd::setresuid(uid, uid, uid)
            .map_err(|e| Error::sys(format!("setresuid {}", self.uid), e))?;
        set_keepcaps(false)
    }
}

fn set_keepcaps(on: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_KEEPCAPS)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// No setuid bit or file capability can grant more privileges after execve.
pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Make the process non-dumpable: no ptrace attach and no /proc/PID/{exe,
/// mem,fd,...} access by other processes of the container until execve
/// resets it (for the new program). Protects the runtime binary that the
/// entering process still is (CVE-2019-5736 class).
pub fn set_non_dumpable() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_DUMPABLE, 0)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

pub fn set_umask(mask: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}

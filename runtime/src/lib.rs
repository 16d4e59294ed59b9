//! berth-runtime: turns an OCI runtime bundle (`config.json` + a rootfs) into
//! a running process tree isolated by the kernel.
//!
//! One module per kernel concept; each opens with a comment naming the
//! mechanism and the syscalls it uses.

pub mod beneath;
pub mod cgroups;

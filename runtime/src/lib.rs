//! berth-runtime: turns an OCI runtime bundle (`config.json` + a rootfs) into
//! a running process tree isolated by the kernel.
//!
//! One module per kernel concept; each opens with a comment naming the
//! mechanism and the syscalls it uses. docs/runtime.md tells the whole
//! sequence; [`process`] names the roles (parent, intermediate, init,
//! tenant) and [`channel`] their conversation.
//!
//! # Using the crate (the engine's monitor)
//!
//! The engine runs one small monitor process per container and calls these
//! functions in-process: no `berth-runtime` binary is executed. The init is
//! cloned from the caller, so after [`create`] it is the caller's **direct
//! child**: the monitor `waitpid`s it and gets the container's exit status.
//! Call [`create`] and [`exec`] from a single-threaded process if you can
//! (the fast path: one `clone3`); from a multi-threaded one the runtime
//! forks an intermediate first, which is correct but slower.
//!
//! ```no_run
//! use berth_runtime::{self as rt, Console, CreateOptions, ExecOptions, Stdio};
//! use nix::sys::signal::Signal;
//! use std::path::Path;
//! # fn pipes() -> [std::os::fd::OwnedFd; 3] { unimplemented!() }
//! # fn main() -> Result<(), rt::Error> {
//! let root = Path::new("/run/berth/runtime"); // <state>/runtime
//! let mut opts = CreateOptions::new("c1", "/var/lib/berth/containers/c1/bundle", root);
//! opts.stdio = Stdio::Fds(pipes()); // stdin, stdout, stderr: pipes to the monitor
//! // With process.terminal = true: opts.console = Console::Return and the
//! // pty master comes back in `created.console`.
//! let created = rt::create(opts)?; // the init waits for start
//! rt::start(root, "c1")?;          // returns once the program's execve succeeded
//! // ... the monitor waits: nix::sys::wait::waitpid(created.pid, None)
//! rt::kill(root, "c1", Signal::SIGTERM, false)?;  // or all=true: every process
//! // After waitpid returned:
//! rt::delete(root, "c1", false)?; // cgroup, state; poststop hooks
//!
//! // Entering a running container (`docker exec`):
//! let user = rt::user::resolve_user(Path::new("/path/to/rootfs"), "app")?;
//! let mut process = oci_spec::runtime::Process::default();
//! process.set_args(Some(vec!["sh".into(), "-c".into(), "id".into()]));
//! process.set_terminal(Some(false));
//! process.set_capabilities(None); // None: the container's own set
//! let mut u = oci_spec::runtime::User::default();
//! u.set_uid(user.uid);
//! u.set_gid(user.gid);
//! u.set_additional_gids(Some(user.additional_gids));
//! process.set_user(u);
//! let executed = rt::exec(root, "c1", process, ExecOptions::default())?;
//! // the caller waits for executed.pid (its child unless detach)
//! # let _ = (created, executed, Console::None);
//! # Ok(()) }
//! ```
//!
//! Errors are one enum, [`Error`], whose message names the failing step and
//! the kernel's reason (`pivot_root: Invalid argument`); failures inside the
//! container process come back over the setup channel as the same variants.
//! [`Error::ExecNotFound`] (docker exit 127) and [`Error::ExecDenied`] (126)
//! tell the engine why a program did not start.

pub mod beneath;
pub mod bundle;
pub mod capabilities;
pub mod cgroups;
pub mod channel;
pub mod container;
pub mod devices;
pub mod diagnostics;
pub mod error;
pub mod fds;
pub mod hooks;
pub mod identity;
pub mod mountinfo;
pub mod namespaces;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod sealed_exe;
pub mod seccomp;
pub mod state;
pub mod syscall;
pub mod sysctl;
pub mod terminal;
pub mod user;

pub use container::{
    create, delete, exec, kill, list, pause, ps, resume, start, state, update, Console,
    CreateOptions, Created, ExecOptions, Executed, Stdio,
};
pub use error::{Error, Result};
pub use state::{ContainerState, Status};

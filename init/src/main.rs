//! berth-init: the process `berth run --init` puts at PID 1.
//!
//! Why: PID 1 of a pid namespace is special. The kernel does not apply the
//! default action of a signal to it, so a program that never installed a
//! SIGTERM handler simply ignores `berth stop`'s SIGTERM when it runs as PID 1,
//! and `stop` must wait for the timeout and SIGKILL it. PID 1 also inherits
//! every orphaned process and must reap them, or they stay zombies.
//!
//! What it does (mechanism): block every signal with `sigprocmask(2)`; `fork(2)`
//! the command (which unblocks them and `execvp(3)`s); then loop in
//! `sigwaitinfo(2)`: on SIGCHLD reap with `waitpid(-1, WNOHANG)` until the
//! command itself exits, and forward every other signal to the command with
//! `kill(2)`. It exits with the command's status (128+N if signal N killed it).
//!
//! It is linked statically (see build.sh) so it runs in any image, even one
//! without a C library.

use std::ffi::CString;

/// Signals that cannot or must not be forwarded.
fn is_forwardable(sig: i32) -> bool {
    !matches!(
        sig,
        libc::SIGCHLD | libc::SIGKILL | libc::SIGSTOP | libc::SIGTTIN | libc::SIGTTOU | libc::SIGTSTP
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command: Vec<String> = match args.first().map(String::as_str) {
        Some("--") => args[1..].to_vec(),
        _ => args,
    };
    if command.is_empty() {
        eprintln!("berth-init: no command given (usage: berth-init -- COMMAND [ARG...])");
        std::process::exit(1);
    }
    let argv: Vec<CString> = match command.iter().map(|a| CString::new(a.as_bytes())).collect() {
        Ok(argv) => argv,
        Err(_) => {
            eprintln!("berth-init: an argument contains a NUL byte");
            std::process::exit(1);
        }
    };
    // SAFETY: the sigset is initialised by sigfillset before use, and the
    // previous mask is saved into a valid struct.
    let old_mask = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    // SAFETY: berth-init is single-threaded; the child only calls
    // async-signal-safe functions (sigprocmask, execvp, write, _exit).
    let child = unsafe { libc::fork() };
    if child < 0 {
        eprintln!("berth-init: fork: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    if child == 0 {
        exec_command(&argv, &old_mask);
    }
    std::process::exit(supervise(child));
}

/// In the child: restore the signal mask and become the command.
fn exec_command(argv: &[CString], mask: &libc::sigset_t) -> ! {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: ptrs is a NULL-terminated array of valid C strings that outlive
    // the call; mask is a valid sigset.
    let err = unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut());
        libc::execvp(ptrs[0], ptrs.as_ptr());
        *libc::__errno_location()
    };
    let code = if err == libc::ENOENT { 127 } else { 126 };
    let msg = format!(
        "berth-init: exec {:?}: {}\n",
        argv[0],
        std::io::Error::from_raw_os_error(err)
    );
    // SAFETY: write and _exit are async-signal-safe; msg is a valid buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(code)
    }
}

/// Forward signals and reap children until `child` exits; its exit status.
fn supervise(child: libc::pid_t) -> i32 {
    // SAFETY: a zeroed sigset filled by sigfillset; siginfo is written by the kernel.
    let all = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        all
    };
    loop {
        // SAFETY: `all` is a valid sigset; `info` is a valid out-pointer.
        let (sig, _info) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            (libc::sigwaitinfo(&all, &mut info), info)
        };
        if sig < 0 {
            continue; // EINTR
        }
        if sig != libc::SIGCHLD {
            if is_forwardable(sig) {
                // SAFETY: kill with a pid we forked and a valid signal number.
                unsafe { libc::kill(child, sig) };
            }
            continue;
        }
        if let Some(status) = reap_all(child) {
            return status;
        }
    }
}

/// Reap every exited process; Some(status) once `child` is among them.
fn reap_all(child: libc::pid_t) -> Option<i32> {
    let mut result = None;
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return result;
        }
        if pid == child {
            result = Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            });
        }
    }
}

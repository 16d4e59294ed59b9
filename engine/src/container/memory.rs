//! Memory hygiene for the monitor, which lives as long as its container.
//!
//! The monitor is forked from the `berth` command and then does one-time
//! work (image lookup, overlay mount, runtime create): that work touches
//! megabytes of code and heap which stay resident for the container's whole
//! life, although the serve loop needs only a little of it. Once the
//! container runs, the monitor gives that memory back:
//! - `malloc_trim(3)`: free heap pages go back to the kernel;
//! - `madvise(MADV_DONTNEED)` on every mapping that is read-only and backed
//!   only by a file (code, read-only data of berth and of its libraries):
//!   the kernel drops this process's page-table entries; the pages stay in
//!   the page cache and fault back in (a minor fault, no I/O) if the serve
//!   loop ever needs them. Mappings that are writable, or hold anonymous
//!   (copied-on-write) pages, are never touched: dropping those would lose
//!   data;
//! - the same on the part of the main thread's stack that lies below the
//!   current stack frame: the setup's deep call chains left it resident, but
//!   what is there is dead (the stack grows down), and a later deeper call
//!   simply gets fresh zero pages.
//!
//! One thing `malloc_trim` cannot give back: chunks parked in glibc's
//! per-thread cache (tcache, up to 7 free chunks per size class). The setup
//! frees thousands of small chunks; the last ones of each size stay in the
//! cache, scattered over the heap, and keep about half of it resident
//! (measured: 276 kB of heap for 45 kB of live data). So berth asks glibc
//! for no tcache (`GLIBC_TUNABLES=glibc.malloc.tcache_count=0`, read by the
//! dynamic loader at `execve`) in the environment of its sealed re-execution
//! ([`tune_allocator_for_monitors`]), which every command that forks a
//! monitor goes through. The cost is a slower `malloc` fast path, invisible
//! in a command that runs for milliseconds.

use std::fs;

/// The glibc tunable that turns the per-thread cache off (see module docs).
pub const TCACHE_OFF: &str = "glibc.malloc.tcache_count=0";

/// Add [`TCACHE_OFF`] to `GLIBC_TUNABLES` for the next `execve` of berth (the
/// monitors it forks inherit the setting). A tcache setting of the user's
/// own is kept. Call while the process has one thread.
pub fn tune_allocator_for_monitors() {
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if let Some(tunables) = with_tcache_off(&current) {
        std::env::set_var("GLIBC_TUNABLES", tunables);
    }
}

/// `current` plus [`TCACHE_OFF`]; `None` when it already sets the tcache.
fn with_tcache_off(current: &str) -> Option<String> {
    if current.contains("glibc.malloc.tcache_count") {
        None
    } else if current.is_empty() {
        Some(TCACHE_OFF.to_string())
    } else {
        Some(format!("{current}:{TCACHE_OFF}"))
    }
}

/// Give back the memory the one-time setup used (see the module docs).
/// Returns the number of kilobytes of mappings released.
pub fn release_setup_memory() -> u64 {
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut released = release_dead_stack(&smaps);
    for mapping in clean_file_mappings(&smaps) {
        // SAFETY: the range is a whole mapping of this process that is not
        // writable and has no anonymous pages: dropping its page-table
        // entries loses nothing, the file's pages are read again on access.
        let rc = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            released += mapping.rss_kb;
        }
    }
    tracing::debug!(released_kb = released, "released the setup's memory");
    released
}

/// Drop the stack pages below this function's frame (see the module docs).
#[inline(never)]
fn release_dead_stack(smaps: &str) -> u64 {
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    let page = 4096;
    // Keep a generous margin below the current frame for the calls made
    // from here (madvise itself, the tracing event).
    let keep_from = (here & !(page - 1)).saturating_sub(4 * page);
    let Some((start, _)) = smaps
        .lines()
        .filter_map(header)
        .find(|(_, rest)| rest.trim_end().ends_with("[stack]"))
        .filter(|((start, end), _)| *start < keep_from && keep_from < *end)
        .map(|(range, _)| range)
    else {
        return 0;
    };
    // SAFETY: [start, keep_from) is the part of this thread's stack below
    // the live frames; its contents are dead and reading it again yields
    // zeroes, which is what a fresh stack page holds.
    let rc = unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            keep_from - start,
            libc::MADV_DONTNEED,
        )
    };
    if rc == 0 {
        ((keep_from - start) / 1024) as u64
    } else {
        0
    }
}

/// One mapping of /proc/self/smaps that may be dropped.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    rss_kb: u64,
}

/// Mappings that are read-only, backed by a file, and hold no anonymous pages.
fn clean_file_mappings(smaps: &str) -> Vec<Mapping> {
    let mut result = Vec::new();
    let mut current: Option<(Mapping, bool)> = None;
    let mut anonymous = 0u64;
    let finish =
        |current: &mut Option<(Mapping, bool)>, anonymous: u64, result: &mut Vec<Mapping>| {
            if let Some((mapping, eligible)) = current.take() {
                if eligible && anonymous == 0 && mapping.rss_kb > 0 {
                    result.push(mapping);
                }
            }
        };
    for line in smaps.lines() {
        if let Some((range, rest)) = header(line) {
            finish(&mut current, anonymous, &mut result);
            anonymous = 0;
            let mut fields = rest.split_whitespace();
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let eligible = !perms.contains('w') && path.starts_with('/');
            current = Some((
                Mapping {
                    start: range.0,
                    end: range.1,
                    rss_kb: 0,
                },
                eligible,
            ));
        } else if let Some(value) = line.strip_prefix("Rss:") {
            if let Some((mapping, _)) = current.as_mut() {
                mapping.rss_kb = kb(value);
            }
        } else if let Some(value) = line.strip_prefix("Anonymous:") {
            anonymous = kb(value);
        }
    }
    finish(&mut current, anonymous, &mut result);
    result
}

/// `start-end perms ...` lines open a mapping.
fn header(line: &str) -> Option<((usize, usize), &str)> {
    let (range, rest) = line.split_once(' ')?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    Some(((start, end), rest))
}

fn kb(value: &str) -> u64 {
    value
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00400000-00800000 r-xp 00000000 fe:00 123 /usr/bin/berth
Rss:                2048 kB
Anonymous:             0 kB
00800000-00900000 r--p 00400000 fe:00 123 /usr/bin/berth
Rss:                  64 kB
Anonymous:             8 kB
00900000-00910000 rw-p 00500000 fe:00 123 /usr/bin/berth
Rss:                  16 kB
Anonymous:            16 kB
01000000-01100000 rw-p 00000000 00:00 0 [heap]
Rss:                 512 kB
Anonymous:           512 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 900 kB
Anonymous:             0 kB
7fff00000000-7fff00001000 r-xp 00000000 00:00 0 [vdso]
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn the_tcache_setting_is_added_once_and_a_users_own_is_kept() {
        assert_eq!(with_tcache_off("").as_deref(), Some(TCACHE_OFF));
        assert_eq!(
            with_tcache_off("glibc.malloc.arena_max=1").as_deref(),
            Some("glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0")
        );
        assert_eq!(with_tcache_off("glibc.malloc.tcache_count=3"), None);
    }

    #[test]
    fn only_read_only_file_mappings_without_anonymous_pages_are_chosen() {
        let chosen = clean_file_mappings(SMAPS);
        assert_eq!(
            chosen,
            vec![
                Mapping {
                    start: 0x400000,
                    end: 0x800000,
                    rss_kb: 2048
                },
                Mapping {
                    start: 0x7f0000000000,
                    end: 0x7f0000100000,
                    rss_kb: 900
                },
            ],
            "code of berth and libc; not relocated data, heap, writable data or the vdso"
        );
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let released = release_setup_memory();
        assert!(released > 0, "a test binary has resident code to release");
        // Code and read-only data fault back in on use.
        let text: String = (0..1000).map(|i| i.to_string()).collect();
        assert!(text.len() > 1000);
    }
}

//! `berth stats`: what a running container uses, sampled from the kernel.
//!
//! Mechanism: the cgroup's counters, through the runtime's driver (v1 or
//! v2): CPU time (`cpuacct.usage` or `cpu.stat usage_usec`), memory in use
//! and its limit (`memory.usage_in_bytes`/`memory.limit_in_bytes` or
//! `memory.current`/`memory.max`), tasks (`pids.current`). Memory in use
//! leaves out the page cache the kernel can drop at once (`inactive_file`
//! in `memory.stat`), as docker does. Block I/O is read from
//! `blkio.throttle.io_service_bytes` (v1) or `io.stat` (v2), network bytes
//! from `/proc/PID/net/dev`, which lists the counters of the network
//! namespace the process is in. A CPU percentage needs two samples: the CPU
//! time used between them over the time between them (100% = one CPU).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::record::ContainerRecord;

/// One reading of a container's counters.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub cpu_ns: u64,
    pub memory_used: u64,
    /// The container's memory limit, else the host's memory.
    pub memory_limit: u64,
    pub pids: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
}

impl Sample {
    /// CPU use between `earlier` and this sample, in percent of one CPU.
    pub fn cpu_percent_since(&self, earlier: &Sample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_nanos() as f64;
        if wall <= 0.0 {
            return 0.0;
        }
        self.cpu_ns.saturating_sub(earlier.cpu_ns) as f64 / wall * 100.0
    }

    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 {
            return 0.0;
        }
        self.memory_used as f64 / self.memory_limit as f64 * 100.0
    }
}

/// Read the counters of `record`'s container; `None` when it is not running.
pub fn sample(record: &ContainerRecord) -> Option<Sample> {
    let pid = record
        .state
        .pid
        .filter(|_| record.state.status.is_active())?;
    let path = super::bundle::cgroups_path(&record.id);
    let manager = berth_runtime::cgroups::manager_for(Some(Path::new(&path)), &record.id).ok()?;
    let at = Instant::now();
    let stats = manager.stats().ok()?;
    let dirs = manager.paths();
    let inactive_file = find_in(&dirs, "memory.stat")
        .and_then(|text| {
            keyed(&text, "total_inactive_file").or_else(|| keyed(&text, "inactive_file"))
        })
        .unwrap_or(0);
    let used = stats.memory_usage_bytes.unwrap_or(0);
    let (net_rx, net_tx) = network_bytes(pid);
    let (block_read, block_write) = block_bytes(&dirs);
    Some(Sample {
        at,
        cpu_ns: stats.cpu_usage_ns.unwrap_or(0),
        memory_used: used.saturating_sub(inactive_file),
        memory_limit: stats.memory_limit_bytes.unwrap_or_else(host_memory),
        pids: stats.pids_current.unwrap_or(0),
        net_rx,
        net_tx,
        block_read,
        block_write,
    })
}

fn host_memory() -> u64 {
    nix::sys::sysinfo::sysinfo()
        .map(|info| info.ram_total())
        .unwrap_or(0)
}

/// The first of the container's cgroup directories that has `file`.
fn find_in(dirs: &[PathBuf], file: &str) -> Option<String> {
    dirs.iter()
        .find_map(|dir| std::fs::read_to_string(dir.join(file)).ok())
}

/// `key value` lines (memory.stat).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Received and sent bytes of every interface but `lo`, in the namespace
/// of `pid`.
fn network_bytes(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    parse_net_dev(&text)
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let fields: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            Some((*fields.first()?, *fields.get(8)?))
        })
        .fold((0, 0), |(rx, tx), (r, t)| (rx + r, tx + t))
}

/// Bytes read and written by the container's block I/O.
fn block_bytes(dirs: &[PathBuf]) -> (u64, u64) {
    if let Some(text) = find_in(dirs, "blkio.throttle.io_service_bytes") {
        return parse_v1_blkio(&text);
    }
    find_in(dirs, "io.stat")
        .map(|text| parse_io_stat(&text))
        .unwrap_or((0, 0))
}

/// v1: `MAJ:MIN Read N` / `MAJ:MIN Write N` lines (and a `Total`).
fn parse_v1_blkio(text: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_, op, n] = fields.as_slice() {
            let n: u64 = n.parse().unwrap_or(0);
            match *op {
                "Read" => totals.0 += n,
                "Write" => totals.1 += n,
                _ => {}
            }
        }
    }
    totals
}

/// v2: `MAJ:MIN rbytes=N wbytes=N rios=N ...` per device.
fn parse_io_stat(text: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for field in text.split_whitespace() {
        if let Some((key, value)) = field.split_once('=') {
            let n: u64 = value.parse().unwrap_or(0);
            match key {
                "rbytes" => totals.0 += n,
                "wbytes" => totals.1 += n,
                _ => {}
            }
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_counter_files_are_read() {
        let net = "Inter-|   Receive                                                |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                   lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
                   eth0:    1500      10    0    0    0     0          0         0      648       6    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(net), (1500, 648));
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n";
        assert_eq!(parse_v1_blkio(v1), (4096, 8192));
        let v2 =
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n";
        assert_eq!(parse_io_stat(v2), (4097, 8194));
        assert_eq!(
            keyed(
                "cache 10\ntotal_inactive_file 4096\n",
                "total_inactive_file"
            ),
            Some(4096)
        );
    }
}

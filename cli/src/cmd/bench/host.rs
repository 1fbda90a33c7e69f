//! What a bench measures of the machine beside its figures: cores, CPU time and steal, and
//! where it writes its devnet.

use anyhow::Result;

/// Where a bench writes its devnet: `keep`, or `net/` in a temporary directory that lives as
/// long as the returned guard.
pub(super) fn devnet_dir(
    keep: Option<&std::path::Path>,
) -> Result<(Option<tempfile::TempDir>, std::path::PathBuf)> {
    match keep {
        Some(d) => Ok((None, d.to_path_buf())),
        None => {
            let temp = tempfile::tempdir()?;
            let dir = temp.path().join("net");
            Ok((Some(temp), dir))
        }
    }
}

/// Cores this process may use.
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Clock ticks a second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// The machine's CPU ticks so far, all of them and those the hypervisor gave to other guests
/// (steal), from the first line of `/proc/stat`
/// (`cpu user nice system idle iowait irq softirq steal ...`).
#[derive(Clone, Copy, Debug)]
pub(super) struct HostTicks {
    total: u64,
    steal: u64,
}

impl HostTicks {
    pub(super) fn now() -> Option<HostTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?;
        let ticks: Vec<u64> =
            line.split_whitespace().skip(1).take(8).filter_map(|t| t.parse().ok()).collect();
        (ticks.len() == 8).then(|| HostTicks { total: ticks.iter().sum(), steal: ticks[7] })
    }

    /// The share (0-1) of the machine's CPU time stolen since `before`.
    pub(super) fn steal_since(self, before: HostTicks) -> Option<f64> {
        let total = self.total.checked_sub(before.total)?;
        let steal = self.steal.checked_sub(before.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
}

/// User + system CPU seconds of a process (`pid` or "self") so far, from `/proc`.
pub(super) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

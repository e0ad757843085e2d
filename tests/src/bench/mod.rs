//! The benchmark harness behind the `bench` binary, one module per measured concern:
//!
//! - [`ingest`]: the plain CSV-to-Parquet conversion that ingest is compared with;
//! - [`env`]: keys, register, principals and an in-process server over the benchmark store;
//! - [`queries`]: the analyst queries, timed through the policy layer, without output
//!   control, through the server's run path and end to end over Flight SQL;
//! - [`flight`]: a Flight SQL client that keeps its connection between queries;
//! - [`reports`]: the canned reports;
//! - [`load`]: concurrent Flight SQL clients for a fixed time;
//! - [`audit`]: the cost of the audit log;
//! - [`memory`]: resident memory of the process that hosts the server.
//!
//! Here: the machine description, reported figures, medians and percentiles.

use std::fmt;

use serde::Serialize;

pub mod audit;
pub mod env;
pub mod flight;
pub mod ingest;
pub mod load;
pub mod memory;
pub mod queries;
pub mod reports;

pub use ingest::plain_convert;

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Total memory in GiB.
    pub memory_gib: f64,
}

impl Machine {
    /// Reads the machine description from the OS.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: kib / (1024.0 * 1024.0),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {} cores, {:.0} GiB",
            self.cpu, self.cores, self.memory_gib
        )
    }
}

/// The machine's CPU time counters (`/proc/stat`, in clock ticks), to tell how much of a
/// run's CPU the host gave to other guests: on a shared virtual machine that share (steal)
/// makes the same work take longer, and the figures are read with it.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    /// Ticks of every kind.
    pub total: u64,
    /// Ticks the hypervisor gave to others while this machine had work.
    pub steal: u64,
}

impl CpuTimes {
    /// The current counters, or `None` where `/proc/stat` is missing.
    pub fn read() -> Option<CpuTimes> {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The aggregate `cpu` line of a `/proc/stat` text (user nice system idle iowait irq
    /// softirq steal guest guest_nice; guest time is already counted in user and nice).
    pub fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        Some(CpuTimes {
            total: v.iter().take(8).sum(),
            steal: *v.get(7)?,
        })
    }

    /// The share of the ticks since `earlier` that were stolen, in percent.
    pub fn steal_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let steal = self.steal.checked_sub(earlier.steal)?;
        (total > 0).then(|| 100.0 * steal as f64 / total as f64)
    }
}

/// One reported figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The value (a median where repeated).
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The target it is held against, if any.
    pub target: Option<String>,
}

impl Figure {
    /// A figure without a target.
    pub fn new(name: &str, value: f64, unit: &str) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit: unit.into(),
            target: None,
        }
    }

    /// Sets the target.
    pub fn target(mut self, t: &str) -> Figure {
        self.target = Some(t.into());
        self
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.value.abs() >= 1000.0 {
            format!("{:.0}", self.value)
        } else {
            format!("{:.3}", self.value)
        };
        write!(
            f,
            "{:<36} {:>14} {:<7} {}",
            self.name,
            v,
            self.unit,
            self.target.as_deref().unwrap_or("")
        )
    }
}

/// The `p` quantile (0..=1, nearest rank) of samples sorted ascending; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted[i]
}

/// Milliseconds of a duration.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of some samples (sorts them).
pub fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), 51.0);
        assert_eq!(percentile(&xs, 0.99), 99.0);
        assert_eq!(percentile(&xs, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn steal_share_from_proc_stat() {
        let a = CpuTimes::parse("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
            .expect("the cpu line");
        assert_eq!((a.total, a.steal), (1000, 40));
        // 200 more ticks, 50 of them stolen (guest ticks, already in user, are not added).
        let b = CpuTimes::parse("cpu  200 0 60 830 10 0 0 90 7 0\n").expect("the cpu line");
        assert_eq!((b.total, b.steal), (1190, 90));
        let share = b.steal_since(&a).expect("ticks passed");
        assert!((share - 100.0 * 50.0 / 190.0).abs() < 1e-9, "{share}");
        assert_eq!(a.steal_since(&a), None);
        assert!(CpuTimes::parse("intr 1 2 3").is_none());
        assert!(CpuTimes::parse("cpu  1 2 x").is_none());
    }
}

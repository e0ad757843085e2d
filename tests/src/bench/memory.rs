//! Memory of the process that hosts the server: its resident set (Linux `/proc/self/status`)
//! and the bytes reserved in DataFusion's memory pool, sampled by a background thread so
//! that the peaks of short queries are seen too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use datafusion::execution::memory_pool::MemoryPool;

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status(&status, field)
}

/// Parses one `Name:   123 kB` line of a `/proc/*/status` text, in bytes.
pub fn parse_status(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Resets the kernel's peak-RSS mark (`VmHWM`) of this process to its current RSS, so that
/// a later [`status_bytes`]`("VmHWM")` covers only what follows. Returns whether it worked
/// (Linux 4.0 and later).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// Samples resident memory and pool reservations every 50 ms until stopped.
pub struct Sampler {
    /// Largest RSS seen, bytes.
    peak_rss: Arc<AtomicU64>,
    /// Largest pool reservation seen, bytes.
    peak_pool: Arc<AtomicU64>,
    /// Tells the thread to stop.
    stop: Arc<AtomicBool>,
    /// The sampling thread.
    thread: Option<JoinHandle<()>>,
    /// Whether the kernel's peak mark was reset at the start (then it counts too).
    hwm_reset: bool,
}

/// Peaks seen by a [`Sampler`].
#[derive(Debug, Clone, Copy)]
pub struct Peaks {
    /// Largest resident set, bytes (the larger of the samples and the kernel's mark).
    pub rss: u64,
    /// Largest reservation in the memory pool, bytes.
    pub pool: u64,
}

impl Sampler {
    /// Resets the kernel's peak mark and starts sampling; `pool` is the server's memory pool.
    pub fn start(pool: Arc<dyn MemoryPool>) -> Sampler {
        let hwm_reset = reset_peak();
        let peak_rss = Arc::new(AtomicU64::new(0));
        let peak_pool = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak_rss, peak_pool, stop) = (
                Arc::clone(&peak_rss),
                Arc::clone(&peak_pool),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = status_bytes("VmRSS") {
                        peak_rss.fetch_max(rss, Ordering::Relaxed);
                    }
                    peak_pool.fetch_max(pool.reserved() as u64, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Sampler {
            peak_rss,
            peak_pool,
            stop,
            thread: Some(thread),
            hwm_reset,
        }
    }

    /// Stops sampling and returns the peaks.
    pub fn stop(mut self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let hwm = if self.hwm_reset {
            status_bytes("VmHWM").unwrap_or(0)
        } else {
            0
        };
        Peaks {
            rss: self.peak_rss.load(Ordering::Relaxed).max(hwm),
            pool: self.peak_pool.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let s = "Name:\tbench\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(parse_status(s, "VmRSS"), Some(100 << 20));
        assert_eq!(parse_status(s, "VmHWM"), Some(200 << 20));
        assert_eq!(parse_status(s, "VmSwap"), None);
    }

    #[test]
    fn reads_this_process() {
        // Linux only, like the benchmark machine. Both fields from one reading: read one
        // after the other, other test threads could free memory in between, and the peak
        // mark the kernel had then was below the first reading's RSS (a failure seen once).
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let rss = parse_status(&status, "VmRSS").expect("VmRSS");
        assert!(rss > 0);
        assert!(parse_status(&status, "VmHWM").expect("VmHWM") >= rss);
        assert!(status_bytes("VmRSS").is_some());
    }
}

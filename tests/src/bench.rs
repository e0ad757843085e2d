//! Benchmark helpers: the machine description, reported figures, medians, and the plain
//! CSV-to-Parquet conversion that ingest is compared with.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use arrow::csv::ReaderBuilder;
use arrow::datatypes::{DataType, Field, Schema};
use fivesafes_engine::ingest::{EXTRACTS, columns_of, writer::writer_properties};
use parquet::arrow::ArrowWriter;
use serde::Serialize;

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

/// Converts every extract to Parquet with no validation and no transformation: every column
/// as UTF-8 (the only typing that accepts the extracts' bad rows), with arrow-csv and the
/// store's Parquet writer settings, on as many worker threads as ingest uses, largest file
/// first. This is the yardstick for ingest throughput.
pub fn plain_convert(extracts: &Path, out: &Path) -> Result<u64> {
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let mut files: Vec<(&str, u64)> = EXTRACTS
        .iter()
        .map(|n| {
            let len = std::fs::metadata(extracts.join(n)).map_or(0, |m| m.len());
            (*n, len)
        })
        .collect();
    files.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let next = AtomicUsize::new(0);
    let rows = AtomicUsize::new(0);
    let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some((name, _)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match convert_one(
                        &extracts.join(name),
                        &out.join(name).with_extension("parquet"),
                        name,
                    ) {
                        Ok(n) => {
                            rows.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(rows.into_inner() as u64)
}

fn convert_one(csv: &Path, parquet: &Path, name: &str) -> Result<usize> {
    let schema = Arc::new(Schema::new(
        columns_of(name)
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let file = File::open(csv).with_context(|| csv.display().to_string())?;
    let reader = ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_batch_size(64 * 1024)
        .build(BufReader::with_capacity(1 << 20, file))?;
    let out = File::create(parquet).with_context(|| parquet.display().to_string())?;
    let mut writer = ArrowWriter::try_new(out, schema, Some(writer_properties()))?;
    let mut n = 0;
    for batch in reader {
        let batch = batch?;
        n += batch.num_rows();
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(n)
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
}

//! The yardstick for ingest: a plain CSV-to-Parquet conversion of the same extracts with the
//! same crates, writer settings and threads, and no validation or transformation.

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

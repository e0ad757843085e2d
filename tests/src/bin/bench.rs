//! `bench`: the one benchmark command. Generates seeded synthetic extracts if they are not
//! already there, measures, prints a table and writes the figures as JSON.
//!
//! ```text
//! cargo run --release -p fivesafes-tests --bin bench -- --patients 1000000
//! ```
//!
//! Figures so far: synthetic generation time and size, and ingest throughput next to a plain
//! CSV-to-Parquet conversion of the same files with the same crates, the same Parquet writer
//! settings and the same number of worker threads, in the same run (median of `--runs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use fivesafes_engine::ingest::{self, IngestOptions};
use fivesafes_engine::keys::Keys;
use fivesafes_engine::synth::{self, SynthOptions};
use fivesafes_tests::bench::{Figure, Machine, median, plain_convert};

/// Benchmarks of fivesafes; prints every figure and writes them as JSON.
#[derive(Debug, Parser)]
struct Args {
    /// Synthetic patients.
    #[arg(long, default_value_t = 1_000_000)]
    patients: u64,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where generated data and stores live (reused between runs).
    #[arg(long, default_value = "bench-data")]
    data: PathBuf,
    /// Repetitions of each timed step (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let machine = Machine::detect();
    println!("machine: {machine}");
    let mut figures: Vec<Figure> = Vec::new();

    let extracts = args
        .data
        .join(format!("extracts-{}-{}", args.patients, args.seed));
    let marker = extracts.join(".complete");
    if !marker.exists() {
        println!(
            "generating {} synthetic patients (seed {}) …",
            args.patients, args.seed
        );
        let t = Instant::now();
        let summary = synth::generate(&SynthOptions {
            patients: args.patients,
            seed: args.seed,
            out: extracts.clone(),
            progress: true,
        })?;
        let secs = t.elapsed().as_secs_f64();
        figures.push(Figure::new("synth: generation time", secs, "s"));
        figures.push(Figure::new(
            "synth: extract size",
            summary.bytes as f64 / (1 << 20) as f64,
            "MiB",
        ));
        std::fs::write(&marker, b"").with_context(|| marker.display().to_string())?;
    }
    let rows: u64 = dir_rows(&extracts)?;
    let bytes: u64 = ingest::EXTRACTS
        .iter()
        .map(|n| {
            std::fs::metadata(extracts.join(n))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    println!(
        "extracts: {} data rows, {:.1} MiB in {}",
        rows,
        bytes as f64 / (1 << 20) as f64,
        extracts.display()
    );

    // Ingest vs plain conversion, interleaved so that both see the same machine state.
    let keys = Keys::from_bytes([1u8; 32], [2u8; 32]);
    let mut ingest_secs = Vec::new();
    let mut plain_secs = Vec::new();
    let mut store_bytes = 0u64;
    for run in 0..args.runs.max(1) {
        let out = args.data.join("plain");
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        plain_convert(&extracts, &out)?;
        plain_secs.push(t.elapsed().as_secs_f64());

        let store = args.data.join("store");
        let _ = std::fs::remove_dir_all(&store);
        let t = Instant::now();
        let report = ingest::ingest(&IngestOptions::new(&extracts, &store), &keys)?;
        ingest_secs.push(t.elapsed().as_secs_f64());
        store_bytes = report
            .version
            .manifest
            .tables
            .iter()
            .flat_map(|t| &t.files)
            .map(|f| f.bytes)
            .sum();
        println!(
            "run {}: plain {:.2}s, ingest {:.2}s",
            run + 1,
            plain_secs[run],
            ingest_secs[run]
        );
    }
    let (ingest_t, plain_t) = (median(&mut ingest_secs), median(&mut plain_secs));
    figures.push(Figure::new("ingest: time", ingest_t, "s"));
    figures.push(Figure::new(
        "ingest: throughput",
        rows as f64 / ingest_t,
        "rows/s",
    ));
    figures.push(Figure::new("plain CSV→Parquet: time", plain_t, "s"));
    figures.push(Figure::new(
        "plain CSV→Parquet: throughput",
        rows as f64 / plain_t,
        "rows/s",
    ));
    figures
        .push(Figure::new("ingest speed / plain speed", plain_t / ingest_t, "×").target(">= 0.7"));
    figures.push(Figure::new(
        "store size",
        store_bytes as f64 / (1 << 20) as f64,
        "MiB",
    ));

    println!();
    println!("{:<36} {:>14} {:<7} target", "figure", "value", "unit");
    for f in &figures {
        println!("{f}");
    }
    let json = serde_json::json!({
        "machine": machine,
        "patients": args.patients,
        "seed": args.seed,
        "runs": args.runs,
        "figures": figures,
    });
    std::fs::write(&args.json, serde_json::to_vec_pretty(&json)?)
        .with_context(|| args.json.display().to_string())?;
    println!("figures written to {}", args.json.display());
    Ok(())
}

/// Data rows of all extracts (lines minus headers; no extract field holds a newline).
fn dir_rows(dir: &Path) -> Result<u64> {
    let mut n = 0u64;
    for name in ingest::EXTRACTS {
        let bytes = std::fs::read(dir.join(name)).with_context(|| name.to_string())?;
        n += bytecount(&bytes).saturating_sub(1);
    }
    Ok(n)
}

fn bytecount(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

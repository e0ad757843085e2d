//! A seeded generator of realistic raw NHS extracts (DATA_MODEL.md §1).
//!
//! The generator writes the ten raw extracts as CSV: two reference tables (practices and a
//! postcode → LSOA lookup), the GP extracts (registrations, coded events, medications, Type 1
//! objections), the HES extracts (admitted patient care, outpatients, A&E) and the national
//! data opt-out list. Shapes follow England: an age pyramid, practices of 2k–20k patients,
//! chronic conditions with age-dependent prevalence, repeat prescriptions, heavy-tailed hospital
//! use, emergency readmissions, deaths, registration changes, a few percent of objections and a
//! sprinkle of deliberately malformed rows (about 0.05 %) for ingest to reject.
//!
//! Determinism: the reference tables come from a ChaCha8 stream keyed by the seed; patients are
//! generated in fixed-size chunks, each with its own ChaCha8 stream keyed by (seed, chunk), in
//! parallel, and appended in chunk order. The same seed and patient count therefore give
//! byte-identical files whatever the number of threads.

mod nhs;
mod person;
mod reference;
mod rows;
mod util;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::{Error, Result};

pub use nhs::nhs_check_digit;

/// Type 1 dissent (the patient objects to their GP data leaving the practice).
pub const TYPE1_DISSENT: &str = "827241000000103";
/// Type 1 dissent withdrawn.
pub const TYPE1_WITHDRAWN: &str = "827261000000102";

/// The extract files the generator writes, in the order it writes (and reports) them.
pub const EXTRACT_FILES: &[&str] = &[
    "practices.csv",
    "postcode_lsoa.csv",
    "gp_patients.csv",
    "gp_events.csv",
    "gp_medications.csv",
    "gp_objections.csv",
    "hes_apc.csv",
    "hes_op.csv",
    "hes_ae.csv",
    "ndoo.csv",
];

/// Patients per chunk (fixed: part of the output's definition, not a tuning knob).
pub(crate) const CHUNK: u64 = 4096;
/// Largest supported patient count (NHS-number space and id strides).
const MAX_PATIENTS: u64 = 50_000_000;

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Number of patients registered with a GP (at least 1).
    pub patients: u64,
    /// Seed: the same seed and patient count give byte-identical files.
    pub seed: u64,
    /// Output directory (created if needed).
    pub out: PathBuf,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// (file name, data rows excluding the header), in [`EXTRACT_FILES`] order.
    pub files: Vec<(String, u64)>,
    /// Total bytes written over all files.
    pub bytes: u64,
}

/// One output file being written as `NAME.csv.tmp`.
struct OutFile {
    tmp: PathBuf,
    path: PathBuf,
    w: BufWriter<File>,
    rows: u64,
    bytes: u64,
}

impl OutFile {
    fn create(dir: &Path, name: &str, header: &[&str]) -> Result<Self> {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = OutFile {
            w: BufWriter::with_capacity(1 << 20, f),
            tmp,
            path,
            rows: 0,
            bytes: 0,
        };
        let mut line = header.join(",");
        line.push('\n');
        out.write(line.as_bytes(), 0)?;
        Ok(out)
    }

    fn write(&mut self, bytes: &[u8], rows: u64) -> Result<()> {
        self.w
            .write_all(bytes)
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.rows += rows;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn finish(self) -> Result<(u64, u64)> {
        let f = self
            .w
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok((self.rows, self.bytes))
    }
}

/// Generates the ten raw extracts into `opts.out`.
///
/// Each file is written as `NAME.csv.tmp` and renamed when complete. Fails with
/// [`Error::InvalidOption`] for a patient count of 0 or above 50 million.
pub fn generate(opts: &SynthOptions) -> Result<SynthSummary> {
    if opts.patients == 0 {
        return Err(Error::InvalidOption(
            "synthetic patient count must be at least 1".into(),
        ));
    }
    if opts.patients > MAX_PATIENTS {
        return Err(Error::InvalidOption(format!(
            "synthetic patient count must be at most {MAX_PATIENTS}"
        )));
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let started = std::time::Instant::now();

    let reference = reference::Reference::build(opts.seed, opts.patients);
    let mut files = EXTRACT_FILES
        .iter()
        .map(|name| OutFile::create(&opts.out, name, crate::catalog::raw_columns(name)))
        .collect::<Result<Vec<_>>>()?;

    let (practices, postcodes) = reference.format().map_err(|e| csv_err(&files[0].tmp, e))?;
    files[0].write(&practices.0, practices.1)?;
    files[1].write(&postcodes.0, postcodes.1)?;

    let chunks = opts.patients.div_ceil(CHUNK);
    let bar = if opts.progress {
        let bar = ProgressBar::new(chunks);
        if let Ok(style) = ProgressStyle::with_template(
            "synth {bar:40} {pos}/{len} chunks [{elapsed_precise}, ETA {eta}]",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };

    let ctx = person::Ctx {
        reference: &reference,
        seed: opts.seed,
        patients: opts.patients,
    };
    // Bounded groups keep memory flat: at most `group` chunks' buffers are alive at once.
    let group = (rayon::current_num_threads() as u64 * 2).max(2);
    let mut first = 0;
    while first < chunks {
        let last = (first + group).min(chunks);
        let outs = (first..last)
            .into_par_iter()
            .map(|c| {
                let out = person::chunk(&ctx, c);
                bar.inc(1);
                out
            })
            .collect::<Vec<_>>();
        for out in outs {
            let out = out.map_err(|e| csv_err(&opts.out, e))?;
            for (i, (buf, rows)) in out.tables.iter().enumerate() {
                files[i + 2].write(buf, *rows)?;
            }
        }
        first = last;
    }
    bar.finish_and_clear();

    let mut summary = SynthSummary {
        files: Vec::with_capacity(files.len()),
        bytes: 0,
    };
    for (name, f) in EXTRACT_FILES.iter().zip(files) {
        let (rows, bytes) = f.finish()?;
        summary.files.push(((*name).to_string(), rows));
        summary.bytes += bytes;
    }
    tracing::info!(
        patients = opts.patients,
        seed = opts.seed,
        bytes = summary.bytes,
        seconds = started.elapsed().as_secs_f64(),
        "synthetic extracts written"
    );
    Ok(summary)
}

/// A CSV formatting error (cannot happen when writing to memory) as an I/O error.
fn csv_err(path: &Path, e: csv::Error) -> Error {
    Error::io(path, std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests;

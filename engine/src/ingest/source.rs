//! Reading one raw CSV extract: header checks, record-by-record access with line numbers, and
//! structural errors (empty file, wrong header, broken quoting, truncated rows) that name the
//! file and line and stop the whole run.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use csv::{ByteRecord, ReaderBuilder};

use crate::{Error, Result};

/// An open extract with its header mapped onto the columns the caller expects.
pub struct Extract {
    /// Path, for messages.
    pub path: PathBuf,
    /// Size in bytes (for progress).
    pub bytes: u64,
    /// The CSV reader, over a reader that hashes the file's bytes as they are read (the
    /// manifest records each source's BLAKE3 hash without a second pass over the file).
    reader: csv::Reader<BufReader<HashingReader>>,
    /// For each expected column, its index in the file's records.
    positions: Vec<usize>,
    /// Number of fields in the header.
    width: usize,
}

/// One data record and its 1-based line number.
pub struct Record<'a> {
    /// The record's fields in file order.
    raw: &'a ByteRecord,
    /// Expected column → field index.
    positions: &'a [usize],
    /// Line of the record in the file.
    pub line: u64,
}

impl Record<'_> {
    /// The value of expected column `i` (as listed to [`Extract::open`]).
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        self.raw.get(self.positions[i]).unwrap_or(b"")
    }
}

impl Extract {
    /// Opens `path` and checks its header against `columns`: every expected column must be
    /// present exactly once and nothing else may be there.
    pub fn open(path: &Path, columns: &[&str]) -> Result<Extract> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Missing(format!(
                    "{}: extract file not found (expected columns: {})",
                    path.display(),
                    columns.join(",")
                ))
            } else {
                Error::io(path, e)
            }
        })?;
        let bytes = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if bytes == 0 {
            return Err(Error::bad_file(
                path,
                1,
                format!(
                    "empty file: expected a header line with {}",
                    columns.join(",")
                ),
            ));
        }
        let mut reader = ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(BufReader::with_capacity(
                1 << 20,
                HashingReader {
                    file,
                    hasher: blake3::Hasher::new(),
                    bytes: 0,
                },
            ));
        let header = reader
            .byte_headers()
            .map_err(|e| csv_error(path, e))?
            .clone();
        let names: Vec<String> = header
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim()
                    .trim_start_matches('\u{feff}')
                    .to_string()
            })
            .collect();
        let mut positions = Vec::with_capacity(columns.len());
        let mut missing = Vec::new();
        for &c in columns {
            let found: Vec<usize> = (0..names.len()).filter(|&i| names[i] == c).collect();
            match found.as_slice() {
                [i] => positions.push(*i),
                [] => missing.push(c),
                _ => {
                    return Err(Error::bad_file(
                        path,
                        1,
                        format!("column {c} appears more than once in the header"),
                    ));
                }
            }
        }
        let unexpected: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !columns.contains(n))
            .collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            let mut msg = String::from("wrong header:");
            if !missing.is_empty() {
                msg.push_str(&format!(" missing column(s) {};", missing.join(",")));
            }
            if !unexpected.is_empty() {
                msg.push_str(&format!(" unexpected column(s) {};", unexpected.join(",")));
            }
            msg.push_str(&format!(" expected {}", columns.join(",")));
            return Err(Error::bad_file(path, 1, msg));
        }
        Ok(Extract {
            path: path.to_path_buf(),
            bytes,
            reader,
            width: names.len(),
            positions,
        })
    }

    /// An estimate of the number of data records, for reserving memory up front: the file's
    /// size times the lines per byte of what is already buffered after the header (up to
    /// 1 MiB), plus 2 %. Zero when nothing is buffered.
    pub fn estimated_records(&self) -> usize {
        let buffered = self.reader.get_ref().buffer();
        if buffered.is_empty() {
            return 0;
        }
        let lines = buffered.iter().filter(|&&b| b == b'\n').count() as f64;
        (self.bytes as f64 * lines / buffered.len() as f64 * 1.02) as usize
    }

    /// Calls `f` for every data record. Structural errors stop the run with the line number.
    /// `progress` receives the byte offset every 64Ki records.
    pub fn for_each(
        &mut self,
        mut progress: impl FnMut(u64),
        mut f: impl FnMut(&Record<'_>) -> Result<()>,
    ) -> Result<u64> {
        let mut rec = ByteRecord::new();
        let mut n = 0u64;
        loop {
            match self.reader.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(csv_error(&self.path, e)),
            }
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            if rec.len() != self.width {
                return Err(self.width_error(line, rec.len()));
            }
            n += 1;
            f(&Record {
                raw: &rec,
                positions: &self.positions,
                line,
            })?;
            if n.is_multiple_of(65_536) {
                progress(rec.position().map(|p| p.byte()).unwrap_or(0));
            }
        }
        progress(self.bytes);
        Ok(n)
    }

    /// Reads whatever remains and returns the file's size and BLAKE3 hash (hex).
    pub fn finish(self) -> Result<(u64, String)> {
        let mut inner = self.reader.into_inner();
        std::io::copy(&mut inner, &mut std::io::sink()).map_err(|e| Error::io(&self.path, e))?;
        let h = inner.into_inner();
        Ok((h.bytes, h.hasher.finalize().to_hex().to_string()))
    }

    fn width_error(&self, line: u64, got: usize) -> Error {
        Error::bad_file(
            &self.path,
            line,
            format!(
                "record has {got} fields but the header has {}: the file is truncated or its \
                 quoting is broken",
                self.width
            ),
        )
    }
}

/// A file reader that hashes and counts what passes through it. BLAKE3 rather than SHA-256:
/// every extract byte passes through it, and SHA-256 of the inputs was a twentieth of
/// ingest's CPU time (BLAKE3 is several times faster on one core, and as strong).
struct HashingReader {
    /// The extract file.
    file: File,
    /// Running BLAKE3 hash.
    hasher: blake3::Hasher,
    /// Bytes read so far.
    bytes: u64,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => Error::bad_file(
            path,
            line,
            format!(
                "record has {len} fields but the header has {expected_len}: the file is \
                 truncated or its quoting is broken"
            ),
        ),
        csv::ErrorKind::Utf8 { .. } => Error::bad_file(path, line, "invalid UTF-8 in the header"),
        csv::ErrorKind::Io(err) => Error::io(path, err),
        other => Error::bad_file(path, line, format!("unreadable CSV ({other:?})")),
    }
}

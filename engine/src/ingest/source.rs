//! Reading one raw CSV extract: header checks, record-by-record access with line numbers, and
//! structural errors (empty file, wrong header, broken quoting, truncated rows) that name the
//! file and line and stop the whole run.
//!
//! Records are split by a reader of our own ([`Extract::for_each`]) with the CSV rules of the
//! `csv` crate's defaults (RFC 4180: `,` between fields, `"` quoting with `""` inside quotes,
//! `\n`, `\r\n` or `\r` ending a record, blank lines skipped). A line with no `"` and no `\r`
//! other than before its `\n` (every line of a well-formed extract) is split at its commas
//! directly, found a buffer at a time with SIMD searches; any other record is parsed by
//! `csv_core`, the `csv` crate's own state machine. `csv_core` alone handles every byte one at
//! a time, and reading the extracts with it took about a tenth of ingest's CPU time.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use csv_core::ReadRecordResult;

use crate::{Error, Result};

/// Bytes of extract read at a time (the buffer grows when one record is longer).
const BUFFER: usize = 1 << 20;

/// An open extract with its header mapped onto the columns the caller expects.
pub struct Extract {
    /// Path, for messages.
    pub path: PathBuf,
    /// Size in bytes (for progress).
    pub bytes: u64,
    /// The file's records.
    source: Source,
    /// For each expected column, its index in the file's records.
    positions: Vec<usize>,
    /// Number of fields in the header.
    width: usize,
}

/// One data record and its 1-based line number.
pub struct Record<'a> {
    /// The bytes the fields are in.
    data: &'a [u8],
    /// Each field's start and end in `data`, in file order.
    fields: &'a [(usize, usize)],
    /// Expected column → field index.
    positions: &'a [usize],
    /// Line of the record in the file.
    pub line: u64,
}

impl Record<'_> {
    /// The value of expected column `i` (as listed to [`Extract::open`]).
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        match self.fields.get(self.positions[i]) {
            Some(&(s, e)) => &self.data[s..e],
            None => b"",
        }
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
        let empty = || {
            Error::bad_file(
                path,
                1,
                format!(
                    "empty file: expected a header line with {}",
                    columns.join(",")
                ),
            )
        };
        if bytes == 0 {
            return Err(empty());
        }
        let mut source = Source::new(HashingReader::new(file), BUFFER);
        let mut names: Option<Vec<String>> = None;
        source.next_record(path, |data, fields, _| {
            names = Some(
                fields
                    .iter()
                    .map(|&(s, e)| {
                        String::from_utf8_lossy(&data[s..e])
                            .trim()
                            .trim_start_matches('\u{feff}')
                            .to_string()
                    })
                    .collect(),
            );
            Ok(())
        })?;
        let names = names.ok_or_else(empty)?;
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
            source,
            width: names.len(),
            positions,
        })
    }

    /// An estimate of the number of data records, for reserving memory up front: the file's
    /// size times the lines per byte of what is already buffered after the header (up to
    /// 1 MiB), plus 2 %. Zero when nothing is buffered.
    pub fn estimated_records(&self) -> usize {
        let buffered = self.source.buffered();
        if buffered.is_empty() {
            return 0;
        }
        let lines = memchr::memchr_iter(b'\n', buffered).count() as f64;
        (self.bytes as f64 * lines / buffered.len() as f64 * 1.02) as usize
    }

    /// Calls `f` for every data record. Structural errors stop the run with the line number.
    /// `progress` receives the byte offset after about every MiB read.
    pub fn for_each(
        &mut self,
        mut progress: impl FnMut(u64),
        mut f: impl FnMut(&Record<'_>) -> Result<()>,
    ) -> Result<u64> {
        let mut n = 0u64;
        let (width, positions, path) = (self.width, &self.positions, &self.path);
        let mut one = |data: &[u8], fields: &[(usize, usize)], line: u64| -> Result<()> {
            if fields.len() != width {
                return Err(width_error(path, width, line, fields.len()));
            }
            n += 1;
            f(&Record {
                data,
                fields,
                positions,
                line,
            })
        };
        let mut reported = 0;
        while self.source.records(path, &mut one)? {
            let at = self.source.offset();
            if at >= reported + BUFFER as u64 {
                progress(at);
                reported = at;
            }
        }
        progress(self.bytes);
        Ok(n)
    }

    /// Reads whatever remains and returns the file's size and BLAKE3 hash (hex).
    pub fn finish(self) -> Result<(u64, String)> {
        let mut inner = self.source.inner;
        std::io::copy(&mut inner, &mut std::io::sink()).map_err(|e| Error::io(&self.path, e))?;
        Ok((inner.bytes, inner.hasher.finalize().to_hex().to_string()))
    }
}

fn width_error(path: &Path, width: usize, line: u64, got: usize) -> Error {
    Error::bad_file(
        path,
        line,
        format!(
            "record has {got} fields but the header has {width}: the file is truncated or its \
             quoting is broken"
        ),
    )
}

/// The records of a CSV file, read a buffer at a time.
struct Source {
    /// The file, hashed as it is read.
    inner: HashingReader,
    /// Bytes read and not yet consumed are `buf[pos..end]`.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The file has no more bytes.
    eof: bool,
    /// Line number (1-based) of `buf[pos]`.
    line: u64,
    /// File offset of `buf[0]`.
    base: u64,
    /// `buf[pos..clean]` holds no `"` and no `\r`; `buf[clean]` is one, or `clean` is
    /// `scanned` (the end of what was searched).
    clean: usize,
    scanned: usize,
    /// Field bounds of the current record.
    fields: Vec<(usize, usize)>,
    /// `csv_core`'s state, output and field ends, for records that need it.
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl Source {
    fn new(inner: HashingReader, capacity: usize) -> Source {
        Source {
            inner,
            buf: vec![0; capacity.max(1)],
            pos: 0,
            end: 0,
            eof: false,
            line: 1,
            base: 0,
            clean: 0,
            scanned: 0,
            fields: Vec::new(),
            core: csv_core::Reader::new(),
            out: vec![0; 1024],
            ends: vec![0; 64],
        }
    }

    /// What is buffered and not yet consumed.
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// File offset of the next unread byte.
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Moves the unconsumed bytes to the front (growing the buffer when they fill it) and
    /// reads more. Sets `eof` when the file has no more.
    fn refill(&mut self, path: &Path) -> Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.clean = self.clean.saturating_sub(self.pos);
            self.scanned = self.scanned.saturating_sub(self.pos);
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(())
    }

    /// Where the next `"` or `\r` at or after `pos` is, or `end`.
    fn clean_to(&mut self) -> usize {
        if self.clean < self.pos || (self.clean == self.scanned && self.scanned < self.end) {
            let from = self.clean.max(self.pos);
            self.clean = from
                + memchr::memchr2(b'"', b'\r', &self.buf[from..self.end])
                    .unwrap_or(self.end - from);
            self.scanned = self.end;
        }
        self.clean
    }

    /// Passes the next record to `f` (its bytes, its fields' bounds in them, its line).
    /// Returns false at the end of the file.
    fn next_record(
        &mut self,
        path: &Path,
        f: impl FnOnce(&[u8], &[(usize, usize)], u64) -> Result<()>,
    ) -> Result<bool> {
        let mut f = Some(f);
        let mut once = |data: &[u8], fields: &[(usize, usize)], line: u64| -> Result<()> {
            match f.take() {
                Some(f) => f(data, fields, line),
                None => Ok(()),
            }
        };
        self.step(path, &mut once, true)
    }

    /// Passes a run of records (at least one, at most a buffer's worth) to `f`. Returns
    /// false at the end of the file.
    fn records(
        &mut self,
        path: &Path,
        f: &mut impl FnMut(&[u8], &[(usize, usize)], u64) -> Result<()>,
    ) -> Result<bool> {
        self.step(path, f, false)
    }

    fn step(
        &mut self,
        path: &Path,
        f: &mut impl FnMut(&[u8], &[(usize, usize)], u64) -> Result<()>,
        single: bool,
    ) -> Result<bool> {
        loop {
            // Blank lines (and a lone `\r`, also a record end) hold no record.
            while self.pos < self.end && matches!(self.buf[self.pos], b'\n' | b'\r') {
                if self.buf[self.pos] == b'\n' {
                    self.line += 1;
                }
                self.pos += 1;
            }
            if self.pos == self.end {
                if self.eof {
                    return Ok(false);
                }
                self.refill(path)?;
                continue;
            }
            let clean = self.clean_to();
            // Whole lines with nothing to unquote: split at commas.
            let last_nl = if single {
                memchr::memchr(b'\n', &self.buf[self.pos..clean])
            } else {
                memchr::memrchr(b'\n', &self.buf[self.pos..clean])
            };
            if let Some(r) = last_nl {
                let stop = self.pos + r + 1;
                self.split_lines(stop, f)?;
                return Ok(true);
            }
            if clean < self.end {
                let at = clean;
                if self.buf[at] == b'\r' {
                    if at + 1 < self.end && self.buf[at + 1] == b'\n' {
                        // `\r\n`: the line before it is plain.
                        self.split_line(self.pos, at, f)?;
                        self.pos = at + 2;
                        self.line += 1;
                        return Ok(true);
                    }
                    if at + 1 == self.end && !self.eof {
                        // Whether `\n` follows is in the next read.
                        self.refill(path)?;
                        continue;
                    }
                }
                self.quoted_record(path, f)?;
                return Ok(true);
            }
            // The line at `pos` is not complete in the buffer.
            if !self.eof {
                self.refill(path)?;
                continue;
            }
            // The last line, without a line end.
            self.split_line(self.pos, self.end, f)?;
            self.pos = self.end;
            return Ok(true);
        }
    }

    /// Splits the lines of `buf[pos..stop]` (which ends with `\n` and holds no `"` or `\r`)
    /// and passes each non-blank one to `f`. Separators are found eight bytes at a time
    /// ([`separators`]): fields are short, and a search call per field costs more than the
    /// field.
    fn split_lines(
        &mut self,
        stop: usize,
        f: &mut impl FnMut(&[u8], &[(usize, usize)], u64) -> Result<()>,
    ) -> Result<()> {
        let data = &self.buf[..stop];
        let (fields, line) = (&mut self.fields, &mut self.line);
        let mut start = self.pos;
        fields.clear();
        let mut at_separator = |at: usize, newline: bool| -> Result<()> {
            if !newline {
                fields.push((start, at));
            } else {
                if !(fields.is_empty() && start == at) {
                    fields.push((start, at));
                    f(data, fields, *line)?;
                    fields.clear();
                }
                *line += 1;
            }
            start = at + 1;
            Ok(())
        };
        let mut i = self.pos;
        while i + 8 <= stop {
            let word = u64::from_le_bytes(data[i..i + 8].try_into().expect("8 bytes"));
            let (mut any, newlines) = separators(word);
            while any != 0 {
                let bit = any.trailing_zeros();
                at_separator(i + (bit / 8) as usize, newlines >> bit & 1 == 1)?;
                any &= any - 1;
            }
            i += 8;
        }
        for (at, &b) in data.iter().enumerate().take(stop).skip(i) {
            if b == b',' || b == b'\n' {
                at_separator(at, b == b'\n')?;
            }
        }
        self.pos = stop;
        Ok(())
    }

    /// Passes the line `buf[from..to]` (no `"`, `\r` or `\n` in it) to `f`.
    fn split_line(
        &mut self,
        from: usize,
        to: usize,
        f: &mut impl FnMut(&[u8], &[(usize, usize)], u64) -> Result<()>,
    ) -> Result<()> {
        self.fields.clear();
        let mut start = from;
        for i in memchr::memchr_iter(b',', &self.buf[from..to]) {
            self.fields.push((start, from + i));
            start = from + i + 1;
        }
        self.fields.push((start, to));
        f(&self.buf, &self.fields, self.line)
    }

    /// Parses the record at `pos` (it has quotes, or a lone `\r`) and passes it to `f`: a
    /// line whose quoted fields are whole fields with no `"`, `\r` or `\n` inside (a HES
    /// `diag_4_concat` list) directly, anything else with `csv_core`.
    fn quoted_record(
        &mut self,
        path: &Path,
        f: &mut impl FnMut(&[u8], &[(usize, usize)], u64) -> Result<()>,
    ) -> Result<()> {
        let line = self.line;
        if let Some(next) = self.simple_quoted() {
            f(&self.buf, &self.fields, line)?;
            self.pos = next;
            self.line += 1;
            return Ok(());
        }
        self.core.reset();
        let (mut nout, mut nends) = (0, 0);
        loop {
            let input = &self.buf[self.pos..self.end];
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nends..]);
            self.line += memchr::memchr_iter(b'\n', &input[..nin]).count() as u64;
            self.pos += nin;
            nout += o;
            nends += e;
            match res {
                ReadRecordResult::InputEmpty => {
                    if self.pos == self.end && !self.eof {
                        self.refill(path)?;
                    }
                }
                ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
        }
        self.fields.clear();
        let mut start = 0;
        for &e in &self.ends[..nends] {
            self.fields.push((start, e));
            start = e;
        }
        if self.fields.is_empty() {
            return Ok(());
        }
        f(&self.out, &self.fields, line)
    }

    /// Splits the line at `pos` into `fields` when every `"` in it opens or closes a whole
    /// field and no field holds `"`, `\r` or `\n`; returns where the next line starts. `None`
    /// (nothing decided) for anything else, or when the line is not complete in the buffer.
    fn simple_quoted(&mut self) -> Option<usize> {
        let buf = &self.buf[..self.end];
        self.fields.clear();
        let mut i = self.pos;
        loop {
            // The field's bounds, and where the separator after it is.
            let (mut field, mut after);
            if buf.get(i) == Some(&b'"') {
                let close = i + 1 + memchr::memchr(b'"', &buf[i + 1..])?;
                if memchr::memchr2(b'\n', b'\r', &buf[i + 1..close]).is_some() {
                    return None;
                }
                (field, after) = ((i + 1, close), close + 1);
                // A closing quote right before `\r\n`.
                if buf.get(after)? == &b'\r' {
                    if buf.get(after + 1)? != &b'\n' {
                        return None;
                    }
                    after += 1;
                }
            } else {
                let stop = i + memchr::memchr3(b',', b'\n', b'"', &buf[i..])?;
                (field, after) = ((i, stop), stop);
                // `\r` only as the last byte before `\n` (a `\r\n` line end).
                match memchr::memchr(b'\r', &buf[i..stop]) {
                    None => {}
                    Some(r) if i + r + 1 == stop && buf[stop] == b'\n' => field.1 -= 1,
                    Some(_) => return None,
                }
            }
            self.fields.push(field);
            // Anything else after a field: a `"` inside an unquoted one, text after a
            // closing quote.
            match buf[after] {
                b',' => i = after + 1,
                b'\n' => return Some(after + 1),
                _ => return None,
            }
        }
    }
}

/// The commas and line ends among the eight bytes of `word` (little-endian): the high bit
/// of each byte that is either, and of each byte that is `\n`.
#[inline(always)]
fn separators(word: u64) -> (u64, u64) {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // The high bit of each zero byte of `x`, exactly (no carries between bytes).
    let zero = |x: u64| !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
    let newlines = zero(word ^ (ONES * u64::from(b'\n')));
    (zero(word ^ (ONES * u64::from(b','))) | newlines, newlines)
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

impl HashingReader {
    fn new(file: File) -> HashingReader {
        HashingReader {
            file,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        }
    }
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every record of `bytes` as read by [`Source`] with a buffer of `capacity`: its line
    /// and its fields.
    fn ours(path: &Path, capacity: usize) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut src = Source::new(
            HashingReader::new(File::open(path).expect("open")),
            capacity,
        );
        let mut got = Vec::new();
        let mut push = |data: &[u8], fields: &[(usize, usize)], line: u64| {
            got.push((
                line,
                fields.iter().map(|&(s, e)| data[s..e].to_vec()).collect(),
            ));
            Ok(())
        };
        while src.records(path, &mut push).expect("read") {}
        got
    }

    /// The same as read by the `csv` crate with its defaults.
    fn theirs(path: &Path) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(path)
            .expect("open");
        let mut rec = csv::ByteRecord::new();
        let mut got = Vec::new();
        while r.read_byte_record(&mut rec).expect("read") {
            let line = rec.position().map_or(0, |p| p.line());
            got.push((line, rec.iter().map(<[u8]>::to_vec).collect()));
        }
        got
    }

    #[test]
    fn separators_are_found_in_every_byte_position() {
        for len in 0..=8 {
            for seed in 0..2000u64 {
                let r = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                // Bytes around the separators too (`,` is 0x2c, `\n` 0x0a; 0x8a and 0xac
                // differ from them only in the high bit).
                let pick = [b',', b'\n', b'a', 0x8a, 0xac, 0, 0xff, b'-'];
                let bytes: Vec<u8> = (0..8)
                    .map(|i| {
                        if i < len {
                            pick[((r >> (3 * i + 20)) % 8) as usize]
                        } else {
                            b'x'
                        }
                    })
                    .collect();
                let (any, nl) = separators(u64::from_le_bytes(bytes[..].try_into().expect("8")));
                for (i, &b) in bytes.iter().enumerate() {
                    let bit = 8 * i as u32 + 7;
                    assert_eq!(
                        any >> bit & 1 == 1,
                        b == b',' || b == b'\n',
                        "{bytes:?} byte {i}"
                    );
                    assert_eq!(nl >> bit & 1 == 1, b == b'\n', "{bytes:?} byte {i}");
                }
                assert_eq!(any & !0x8080_8080_8080_8080, 0);
            }
        }
    }

    #[test]
    fn records_are_split_as_the_csv_crate_splits_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.csv");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // Mostly plain lines, with quotes, `\r\n`, lone `\r`, blank lines and a missing
        // last line end now and then.
        let alphabet: &[&[u8]] = &[
            b"a", b"bc", b"7", b",", b",", b",", b"\n", b"\n", b"\r\n", b"\"", b"\"\"", b"\r",
            b"\n\n", b" ",
        ];
        for case in 0..3000 {
            let len = rng.random_range(0..60);
            let plain = case % 3 != 0;
            let mut bytes = Vec::new();
            for _ in 0..len {
                let piece = alphabet[rng.random_range(0..alphabet.len())];
                if plain && (piece.contains(&b'"') || piece.contains(&b'\r')) {
                    continue;
                }
                bytes.extend_from_slice(piece);
            }
            std::fs::write(&path, &bytes).expect("write");
            let want = theirs(&path);
            for capacity in [1, 2, 3, 5, 8, 64, BUFFER] {
                let got = ours(&path, capacity);
                let fields =
                    |v: &[(u64, Vec<Vec<u8>>)]| v.iter().map(|r| r.1.clone()).collect::<Vec<_>>();
                assert_eq!(
                    fields(&got),
                    fields(&want),
                    "case {case}, capacity {capacity}: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
                // Lines: `csv` gives a record after blank lines the line of the first blank
                // one; ours is the record's own line, checked directly where that differs.
                let lines = |v: &[(u64, Vec<Vec<u8>>)]| v.iter().map(|r| r.0).collect::<Vec<_>>();
                if !bytes.contains(&b'\r')
                    && !bytes.starts_with(b"\n")
                    && !bytes.windows(2).any(|w| w == b"\n\n")
                {
                    assert_eq!(
                        lines(&got),
                        lines(&want),
                        "lines of case {case}, capacity {capacity}"
                    );
                }
                if !bytes.contains(&b'\r') && !bytes.contains(&b'"') {
                    let own: Vec<u64> = bytes
                        .split(|&b| b == b'\n')
                        .zip(1..)
                        .filter(|(l, _)| !l.is_empty())
                        .map(|(_, n)| n)
                        .collect();
                    assert_eq!(
                        lines(&got),
                        own,
                        "own lines of case {case}, capacity {capacity}"
                    );
                }
            }
        }
    }
}

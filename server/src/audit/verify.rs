//! Offline verification, and the scan that both [`verify_log`] and `AuditLog::open` run: one
//! code path decides what a valid log is, so the server refuses to start on a log that an
//! auditor would reject.
//!
//! The scan reads the checkpoints file (frames, signatures, order), then every segment in
//! order (file names, frames and CRCs, strict record decoding, sequence numbers contiguous
//! from 0, the hash chain, non-decreasing times), folding leaf hashes into a
//! [`CompactTree`](super::merkle::CompactTree) and comparing the root with each checkpoint
//! when the scan reaches its size. Memory stays O(log n) whatever the log's length.
//!
//! Consistency between successive checkpoints follows from that: both roots are recomputed
//! from one and the same sequence of records, so the older tree is a prefix of the newer one;
//! no separate proof is needed (proofs are for auditors who keep only the checkpoints, see
//! `AuditLog::consistency_proof`). Sizes and times must not decrease from one checkpoint to
//! the next.
//!
//! Decisions: records after the last checkpoint are reported, not failed (a crash can leave
//! them); a checkpoint that claims more records than exist is a failure (signed records were
//! removed); a torn tail (see [`super::segment`]) is reported, not failed, because it is the
//! unacknowledged write of a crash and `open` drops it.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::checkpoint::{CHECKPOINT_DOMAIN, Checkpoint};
use super::merkle::{self, CompactTree, Hash};
use super::record::{DecodeError, RECORD_VERSION, Record, iso8601};
use super::segment::{self, CHECKPOINTS_FILE, FrameFault, FrameReader, Step, classify_fault};

/// Why a log does not verify, and where: the file, the byte offset of the frame, and the
/// sequence number when known. (Boxed: one pointer wide, so results stay small.)
#[derive(Debug)]
pub struct VerifyError(Box<Located>);

/// The contents of a [`VerifyError`].
#[derive(Debug)]
struct Located {
    /// The file (or directory) with the problem.
    file: PathBuf,
    /// Byte offset of the frame concerned.
    offset: Option<u64>,
    /// Sequence number of the record concerned.
    sequence: Option<u64>,
    /// What is wrong.
    problem: Problem,
}

impl VerifyError {
    pub(crate) fn new(
        file: PathBuf,
        offset: Option<u64>,
        sequence: Option<u64>,
        problem: Problem,
    ) -> Self {
        VerifyError(Box::new(Located {
            file,
            offset,
            sequence,
            problem,
        }))
    }

    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        Self::new(path.to_path_buf(), None, None, Problem::Io(e))
    }

    /// The file (or directory) with the problem.
    pub fn file(&self) -> &Path {
        &self.0.file
    }

    /// Byte offset of the frame concerned, when the problem is in one.
    pub fn offset(&self) -> Option<u64> {
        self.0.offset
    }

    /// Sequence number of the record concerned, when known.
    pub fn sequence(&self) -> Option<u64> {
        self.0.sequence
    }

    /// What is wrong.
    pub fn problem(&self) -> &Problem {
        &self.0.problem
    }
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.file.display())?;
        if let Some(o) = self.0.offset {
            write!(f, " at offset {o}")?;
        }
        if let Some(s) = self.0.sequence {
            write!(f, " (sequence {s})")?;
        }
        write!(f, ": {}", self.0.problem)
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.problem {
            Problem::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The problems verification can find.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    /// The directory holds no segment files.
    #[error("no audit log here (no segment files)")]
    NoSegments,
    /// The checkpoints file is missing while segments exist.
    #[error("checkpoints file is missing")]
    NoCheckpointsFile,
    /// A file starts like a segment but is not named like one.
    #[error("not a valid segment file name (expected segment-<20 digits>.log)")]
    BadSegmentName,
    /// A segment's name does not match where it sits in the log.
    #[error(
        "segment is named for sequence {named} but the segments before it hold {expected} \
         records (a segment was removed, added or renamed)"
    )]
    SegmentOutOfPlace {
        /// Sequence number in the name.
        named: u64,
        /// Records before it.
        expected: u64,
    },
    /// An empty segment that is not the last one.
    #[error("empty segment before the last one")]
    EmptySegment,
    /// A bad frame that cannot be a torn write.
    #[error("{}", bad_frame(.fault, *.following))]
    BadFrame {
        /// What is wrong with the frame.
        fault: FrameFault,
        /// Bytes from the bad frame to the end of its file (0 when the file is not the last).
        following: u64,
    },
    /// A frame's payload is not a valid record or checkpoint.
    #[error("{0}")]
    Decode(DecodeError),
    /// A sequence number out of place.
    #[error(
        "sequence number {found} where {expected} was expected (a record was removed, \
         duplicated or reordered)"
    )]
    SequenceGap {
        /// The sequence number expected here.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// The previous-record hash does not match.
    #[error(
        "hash chain broken: the record says the previous record hashes to {found}, but it \
         hashes to {expected} (a record was changed, removed or reordered)"
    )]
    ChainBroken {
        /// Hex leaf hash of the previous record.
        expected: String,
        /// Hex hash stored in this record.
        found: String,
    },
    /// Time went backwards along the log.
    #[error("record time {found} is before the previous record's time {previous}")]
    TimeBackwards {
        /// The previous time (ISO 8601).
        previous: String,
        /// This record's time (ISO 8601).
        found: String,
    },
    /// A checkpoint's signature does not verify.
    #[error(
        "checkpoint {index} (tree size {tree_size}): signature does not verify with this \
         public key"
    )]
    CheckpointSignature {
        /// Position in the checkpoints file (0-based).
        index: usize,
        /// Its tree size.
        tree_size: u64,
    },
    /// A checkpoint's root does not match the records.
    #[error(
        "checkpoint {index}: signed root {signed} for the first {tree_size} records, but the \
         records give {computed}"
    )]
    CheckpointRoot {
        /// Position in the checkpoints file.
        index: usize,
        /// Its tree size.
        tree_size: u64,
        /// The signed root (hex).
        signed: String,
        /// The root of the records (hex).
        computed: String,
    },
    /// A checkpoint covers more records than the log holds.
    #[error(
        "checkpoint {index} covers {tree_size} records but the log holds only {records}: \
         signed records were removed"
    )]
    CheckpointBeyondLog {
        /// Position in the checkpoints file.
        index: usize,
        /// Its tree size.
        tree_size: u64,
        /// Records present.
        records: u64,
    },
    /// Checkpoints out of order (size or time decreases).
    #[error(
        "checkpoint {index} (tree size {tree_size}, {time}) goes back from the one before it \
         (tree size {previous_size}, {previous_time})"
    )]
    CheckpointOrder {
        /// Position in the checkpoints file.
        index: usize,
        /// Its tree size.
        tree_size: u64,
        /// Its time (ISO 8601).
        time: String,
        /// The previous checkpoint's size.
        previous_size: u64,
        /// The previous checkpoint's time.
        previous_time: String,
    },
    /// A checkpoint signed before the last record it covers.
    #[error("checkpoint {index} is dated {time}, before the last record it covers ({record_time})")]
    CheckpointBeforeRecord {
        /// Position in the checkpoints file.
        index: usize,
        /// Its time.
        time: String,
        /// The time of record `tree_size - 1`.
        record_time: String,
    },
}

fn bad_frame(fault: &FrameFault, following: u64) -> String {
    if following == 0 {
        format!("{fault}, at the end of a segment that is not the last one")
    } else {
        format!(
            "{fault}, with {following} bytes from it to the end of the file: corruption \
             inside the log, not a torn write"
        )
    }
}

/// A torn tail found (by verification) or dropped (by `open`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The file.
    pub file: PathBuf,
    /// Where the valid part of the file ends.
    pub offset: u64,
    /// Bytes after that.
    pub bytes: u64,
}

/// What a verified log holds.
#[derive(Debug, Clone)]
pub struct VerifySummary {
    /// The log directory.
    pub dir: PathBuf,
    /// Number of records.
    pub records: u64,
    /// Number of checkpoints.
    pub checkpoints: u64,
    /// The last checkpoint.
    pub last_checkpoint: Option<Checkpoint>,
    /// Number of segment files.
    pub segments: u64,
    /// Time of the first record, Unix ms.
    pub first_unix_ms: Option<i64>,
    /// Time of the last record, Unix ms.
    pub last_unix_ms: Option<i64>,
    /// Records after the last checkpoint (not yet signed).
    pub unsigned_records: u64,
    /// Torn tails found (a crash's unacknowledged writes; `open` drops them).
    pub torn: Vec<Truncation>,
}

impl std::fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "audit log {}: verified", self.dir.display())?;
        writeln!(f, "  records:     {}", self.records)?;
        match &self.last_checkpoint {
            Some(c) => writeln!(
                f,
                "  checkpoints: {} (last covers {} records, signed {})",
                self.checkpoints,
                c.tree_size,
                iso8601(c.unix_ms)
            )?,
            None => writeln!(f, "  checkpoints: 0")?,
        }
        writeln!(f, "  segments:    {}", self.segments)?;
        let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), iso8601);
        writeln!(f, "  first:       {}", time(self.first_unix_ms))?;
        write!(f, "  last:        {}", time(self.last_unix_ms))?;
        if self.unsigned_records > 0 {
            write!(
                f,
                "\n  {} records after the last checkpoint (not yet signed)",
                self.unsigned_records
            )?;
        }
        for t in &self.torn {
            write!(
                f,
                "\n  torn tail: {} bytes at offset {} of {} (an unacknowledged write cut \
                 short by a crash; opening the log drops it)",
                t.bytes,
                t.offset,
                t.file.display()
            )?;
        }
        Ok(())
    }
}

/// Verifies the log in `dir` offline against the audit public key: frames and CRCs, sequence
/// numbers contiguous from 0, the hash chain, every checkpoint's signature and root, and the
/// order of checkpoints. Fails on the first problem, naming the file, offset and sequence.
pub fn verify_log(dir: &Path, key: &VerifyingKey) -> Result<VerifySummary, VerifyError> {
    let scan = scan(dir, key)?;
    let unsigned = scan.records - scan.checkpoints.last().map_or(0, |c| c.tree_size);
    Ok(VerifySummary {
        dir: dir.to_path_buf(),
        records: scan.records,
        checkpoints: scan.checkpoints.len() as u64,
        last_checkpoint: scan.checkpoints.last().copied(),
        segments: scan.segments.len() as u64,
        first_unix_ms: scan.first_unix_ms,
        last_unix_ms: scan.last_unix_ms,
        unsigned_records: unsigned,
        torn: scan.torn,
    })
}

/// One segment as the scan found it.
#[derive(Debug, Clone)]
pub(crate) struct ScannedSegment {
    /// First sequence number (from the name).
    pub first: u64,
    /// The file.
    pub path: PathBuf,
    /// Length of its valid part (without a torn tail).
    pub len: u64,
}

/// Everything the scan learnt; `open` resumes appending from it.
#[derive(Debug)]
pub(crate) struct Scan {
    pub segments: Vec<ScannedSegment>,
    pub records: u64,
    pub tree: CompactTree,
    pub last_hash: Hash,
    pub first_unix_ms: Option<i64>,
    pub last_unix_ms: Option<i64>,
    pub checkpoints: Vec<Checkpoint>,
    /// Valid length of the checkpoints file.
    pub checkpoints_len: u64,
    pub torn: Vec<Truncation>,
}

/// A checkpoint with where it was read from.
struct Placed {
    cp: Checkpoint,
    offset: u64,
}

/// Scans and verifies the whole log.
pub(crate) fn scan(dir: &Path, key: &VerifyingKey) -> Result<Scan, VerifyError> {
    let segments = segment::list_segments(dir)?;
    let cp_path = dir.join(CHECKPOINTS_FILE);
    if segments.is_empty() {
        return Err(VerifyError::new(
            dir.to_path_buf(),
            None,
            None,
            Problem::NoSegments,
        ));
    }
    if !cp_path.exists() {
        return Err(VerifyError::new(
            cp_path,
            None,
            None,
            Problem::NoCheckpointsFile,
        ));
    }
    let mut torn = Vec::new();
    let (placed, checkpoints_len) = read_checkpoints(&cp_path, key, &mut torn)?;

    let mut tree = CompactTree::new();
    let mut last_hash = [0u8; 32];
    let mut first_unix_ms = None;
    let mut last_unix_ms: Option<i64> = None;
    let mut next_cp = 0;
    let cp_err = |i: usize, problem| {
        let p: &Placed = &placed[i];
        VerifyError::new(cp_path.clone(), Some(p.offset), None, problem)
    };
    let check_roots = |tree: &CompactTree,
                       last_ms: Option<i64>,
                       next_cp: &mut usize|
     -> Result<(), VerifyError> {
        while *next_cp < placed.len() && placed[*next_cp].cp.tree_size == tree.size() {
            let i = *next_cp;
            let cp = &placed[i].cp;
            let computed = tree.root();
            if computed != cp.root {
                return Err(cp_err(
                    i,
                    Problem::CheckpointRoot {
                        index: i,
                        tree_size: cp.tree_size,
                        signed: hex::encode(cp.root),
                        computed: hex::encode(computed),
                    },
                ));
            }
            if let Some(ms) = last_ms
                && cp.unix_ms < ms
            {
                return Err(cp_err(
                    i,
                    Problem::CheckpointBeforeRecord {
                        index: i,
                        time: iso8601(cp.unix_ms),
                        record_time: iso8601(ms),
                    },
                ));
            }
            *next_cp += 1;
        }
        Ok(())
    };
    // Checkpoints of the empty tree.
    check_roots(&tree, None, &mut next_cp)?;

    let mut scanned = Vec::with_capacity(segments.len());
    let n_segments = segments.len();
    for (i, (first, path)) in segments.into_iter().enumerate() {
        let is_last = i + 1 == n_segments;
        if first != tree.size() {
            return Err(VerifyError::new(
                path,
                None,
                None,
                Problem::SegmentOutOfPlace {
                    named: first,
                    expected: tree.size(),
                },
            ));
        }
        let mut reader = FrameReader::open(&path, None)?;
        let file_len = reader.len();
        if file_len == 0 && !is_last {
            return Err(VerifyError::new(path, Some(0), None, Problem::EmptySegment));
        }
        let valid_len = loop {
            match reader.next_frame()? {
                Step::End => break file_len,
                Step::Fault { offset, fault } => {
                    let verdict = if is_last {
                        classify_fault(&path, offset, &fault, file_len, &[RECORD_VERSION])?
                    } else {
                        Some(0)
                    };
                    match verdict {
                        None => {
                            torn.push(Truncation {
                                file: path.clone(),
                                offset,
                                bytes: file_len - offset,
                            });
                            break offset;
                        }
                        Some(following) => {
                            return Err(VerifyError::new(
                                path,
                                Some(offset),
                                Some(tree.size()),
                                Problem::BadFrame { fault, following },
                            ));
                        }
                    }
                }
                Step::Frame { offset, payload } => {
                    let expected = tree.size();
                    let at = |problem| {
                        VerifyError::new(path.clone(), Some(offset), Some(expected), problem)
                    };
                    let record = Record::decode(&payload).map_err(|e| at(Problem::Decode(e)))?;
                    if record.sequence != expected {
                        return Err(at(Problem::SequenceGap {
                            expected,
                            found: record.sequence,
                        }));
                    }
                    if record.prev_hash != last_hash {
                        return Err(at(Problem::ChainBroken {
                            expected: hex::encode(last_hash),
                            found: hex::encode(record.prev_hash),
                        }));
                    }
                    if let Some(prev) = last_unix_ms
                        && record.unix_ms < prev
                    {
                        return Err(at(Problem::TimeBackwards {
                            previous: iso8601(prev),
                            found: iso8601(record.unix_ms),
                        }));
                    }
                    first_unix_ms.get_or_insert(record.unix_ms);
                    last_unix_ms = Some(record.unix_ms);
                    last_hash = merkle::leaf_hash(&payload);
                    tree.push(last_hash);
                    check_roots(&tree, last_unix_ms, &mut next_cp)?;
                }
            }
        };
        scanned.push(ScannedSegment {
            first,
            path,
            len: valid_len,
        });
    }
    if next_cp < placed.len() {
        let cp = &placed[next_cp].cp;
        return Err(cp_err(
            next_cp,
            Problem::CheckpointBeyondLog {
                index: next_cp,
                tree_size: cp.tree_size,
                records: tree.size(),
            },
        ));
    }
    Ok(Scan {
        segments: scanned,
        records: tree.size(),
        tree,
        last_hash,
        first_unix_ms,
        last_unix_ms,
        checkpoints: placed.into_iter().map(|p| p.cp).collect(),
        checkpoints_len,
        torn,
    })
}

/// Reads and checks the checkpoints file: frames, signatures, order. Returns the checkpoints
/// and the valid length of the file.
fn read_checkpoints(
    path: &Path,
    key: &VerifyingKey,
    torn: &mut Vec<Truncation>,
) -> Result<(Vec<Placed>, u64), VerifyError> {
    let mut reader = FrameReader::open(path, None)?;
    let len = reader.len();
    let mut out: Vec<Placed> = Vec::new();
    loop {
        match reader.next_frame()? {
            Step::End => return Ok((out, len)),
            Step::Fault { offset, fault } => {
                match classify_fault(path, offset, &fault, len, CHECKPOINT_DOMAIN)? {
                    None => {
                        torn.push(Truncation {
                            file: path.to_path_buf(),
                            offset,
                            bytes: len - offset,
                        });
                        return Ok((out, offset));
                    }
                    Some(following) => {
                        return Err(VerifyError::new(
                            path.to_path_buf(),
                            Some(offset),
                            None,
                            Problem::BadFrame { fault, following },
                        ));
                    }
                }
            }
            Step::Frame { offset, payload } => {
                let index = out.len();
                let at =
                    |problem| VerifyError::new(path.to_path_buf(), Some(offset), None, problem);
                let cp = Checkpoint::from_bytes(&payload).map_err(|e| at(Problem::Decode(e)))?;
                if !cp.verify(key) {
                    return Err(at(Problem::CheckpointSignature {
                        index,
                        tree_size: cp.tree_size,
                    }));
                }
                if let Some(prev) = out.last().map(|p| p.cp)
                    && (cp.tree_size < prev.tree_size || cp.unix_ms < prev.unix_ms)
                {
                    return Err(at(Problem::CheckpointOrder {
                        index,
                        tree_size: cp.tree_size,
                        time: iso8601(cp.unix_ms),
                        previous_size: prev.tree_size,
                        previous_time: iso8601(prev.unix_ms),
                    }));
                }
                out.push(Placed { cp, offset });
            }
        }
    }
}

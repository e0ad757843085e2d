//! The reading side of an open log, for the auditor services: filtered, paged listing of
//! records, the checkpoints, and Merkle proofs against any durable tree size.
//!
//! Readers see only what the writer has made durable (the extent it publishes after each
//! sync), so a reader never meets a half-written frame and every record it returns has been
//! acknowledged. The log was verified when it was opened, so reads decode without re-checking
//! the chain; auditors who trust nothing run [`verify_log`](super::verify_log) on a copy.
//!
//! Proofs read the leaf hashes of the first `tree_size` records from disk (O(tree_size)): they
//! are an auditor's occasional request, and keeping every leaf hash in memory would make the
//! server's memory grow with the log.

use std::path::Path;

use super::checkpoint::Checkpoint;
use super::error::AuditError;
use super::merkle::{self, ConsistencyProof, Hash, InclusionProof};
use super::record::{Kind, OutcomeKind, Record};
use super::segment::{CHECKPOINTS_FILE, FrameReader, Step};
use super::verify::{Problem, ScannedSegment, VerifyError};
use super::writer::{AuditLog, Durable};

/// Which records to list. Every set field must match; records come in sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    /// Records at or after this time (Unix ms).
    pub from_unix_ms: Option<i64>,
    /// Records before this time (Unix ms, exclusive).
    pub to_unix_ms: Option<i64>,
    /// Records of this principal.
    pub principal: Option<String>,
    /// Records of this project.
    pub project: Option<String>,
    /// Records with this outcome class.
    pub outcome: Option<OutcomeKind>,
    /// Records of this kind.
    pub kind: Option<Kind>,
    /// Records of this request (started and completed records share it).
    pub request_id: Option<u64>,
    /// Paging: records with a sequence number greater than this.
    pub after_sequence: Option<u64>,
    /// Paging: at most this many records.
    pub limit: Option<usize>,
}

impl RecordFilter {
    /// Whether `r` passes every condition except paging.
    pub fn matches(&self, r: &Record) -> bool {
        let e = &r.entry;
        self.from_unix_ms.is_none_or(|t| r.unix_ms >= t)
            && self.to_unix_ms.is_none_or(|t| r.unix_ms < t)
            && self.principal.as_ref().is_none_or(|p| *p == e.principal)
            && self.project.as_ref().is_none_or(|p| *p == e.project)
            && self.outcome.is_none_or(|o| o == e.outcome.kind())
            && self.kind.is_none_or(|k| k == e.kind)
            && self.request_id.is_none_or(|id| id == e.request_id)
    }
}

impl AuditLog {
    /// Lists durable records matching `filter`, in sequence order.
    pub fn records(&self, filter: &RecordFilter) -> Result<Vec<Record>, AuditError> {
        let view = self.shared.view();
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut from = filter.after_sequence.map_or(0, |s| s.saturating_add(1));
        if let Some(t) = filter.from_unix_ms {
            from = from.max(first_sequence_at_or_after(&view, t)?);
        }
        for_each_payload(&view, from, view.records, &mut |path, offset, payload| {
            let record = Record::decode(payload).map_err(|e| {
                VerifyError::new(path.to_path_buf(), Some(offset), None, Problem::Decode(e))
            })?;
            // Times never decrease along the log, so nothing later can match.
            if filter.to_unix_ms.is_some_and(|t| record.unix_ms >= t) {
                return Ok(false);
            }
            if filter.matches(&record) {
                out.push(record);
            }
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// The durable checkpoints, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError> {
        let view = self.shared.view();
        let path = self.shared.dir.join(CHECKPOINTS_FILE);
        let mut reader = FrameReader::open(&path, Some(view.checkpoints_len))?;
        let mut out = Vec::new();
        loop {
            match reader.next_frame()? {
                Step::End => return Ok(out),
                Step::Frame { offset, payload } => {
                    out.push(Checkpoint::from_bytes(&payload).map_err(|e| {
                        VerifyError::new(path.clone(), Some(offset), None, Problem::Decode(e))
                    })?);
                }
                Step::Fault { offset, fault } => {
                    return Err(VerifyError::new(
                        path,
                        Some(offset),
                        None,
                        Problem::BadFrame {
                            fault,
                            following: 0,
                        },
                    )
                    .into());
                }
            }
        }
    }

    /// Proof that record `sequence` is in the tree of the first `tree_size` records.
    pub fn inclusion_proof(
        &self,
        sequence: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, AuditError> {
        if sequence >= tree_size {
            return Err(AuditError::OutOfRange(format!(
                "record {sequence} is not in a tree of {tree_size} records"
            )));
        }
        let leaves = self.leaf_hashes(tree_size)?;
        merkle::inclusion_proof(&leaves, sequence)
            .ok_or_else(|| AuditError::OutOfRange(format!("record {sequence}")))
    }

    /// Proof that the tree of the first `old_size` records is a prefix of the tree of the
    /// first `new_size`.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, AuditError> {
        if old_size > new_size {
            return Err(AuditError::OutOfRange(format!(
                "tree size {old_size} is larger than {new_size}"
            )));
        }
        let leaves = self.leaf_hashes(new_size)?;
        merkle::consistency_proof(&leaves, old_size)
            .ok_or_else(|| AuditError::OutOfRange(format!("tree size {old_size}")))
    }

    /// The Merkle root of the first `tree_size` records.
    pub fn root(&self, tree_size: u64) -> Result<Hash, AuditError> {
        Ok(merkle::root(&self.leaf_hashes(tree_size)?))
    }

    /// Leaf hashes of records `0..n`.
    fn leaf_hashes(&self, n: u64) -> Result<Vec<Hash>, AuditError> {
        let view = self.shared.view();
        if n > view.records {
            return Err(AuditError::OutOfRange(format!(
                "tree size {n}, but the log holds {} records",
                view.records
            )));
        }
        let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for_each_payload(&view, 0, n, &mut |_, _, payload| {
            out.push(merkle::leaf_hash(payload));
            Ok(true)
        })?;
        Ok(out)
    }
}

/// A sequence number before which every record is older than `unix_ms`: the first record of
/// the segment where such records may start. Times never decrease along the log, so segments
/// are ordered by the time of their first record and a binary search reads O(log segments)
/// frames instead of the whole log.
fn first_sequence_at_or_after(view: &Durable, unix_ms: i64) -> Result<u64, AuditError> {
    let segs = &view.segments;
    if segs.len() < 2 {
        return Ok(0);
    }
    // Segment i holds only older records when segment i + 1 starts before `unix_ms`: find
    // how many of segments 1.. do, by binary search.
    let (mut lo, mut hi) = (1, segs.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if first_time(&segs[mid])?.is_some_and(|t| t < unix_ms) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(segs[lo - 1].first)
}

/// The time of a segment's first durable record, if it has one.
fn first_time(seg: &ScannedSegment) -> Result<Option<i64>, AuditError> {
    let mut reader = FrameReader::open(&seg.path, Some(seg.len))?;
    match reader.next_frame()? {
        Step::Frame { offset, payload } => {
            let r = Record::decode(&payload).map_err(|e| {
                VerifyError::new(seg.path.clone(), Some(offset), None, Problem::Decode(e))
            })?;
            Ok(Some(r.unix_ms))
        }
        _ => Ok(None),
    }
}

/// What [`for_each_payload`] calls: `(file, offset, payload)`, returning whether to go on.
type PayloadVisitor<'a> = dyn FnMut(&Path, u64, &[u8]) -> Result<bool, VerifyError> + 'a;

/// Calls `f(file, offset, payload)` for the records with sequence numbers in `from..to`, in
/// order, until it returns `false`. Skips whole segments before `from`.
fn for_each_payload(
    view: &Durable,
    from: u64,
    to: u64,
    f: &mut PayloadVisitor<'_>,
) -> Result<(), AuditError> {
    if from >= to {
        return Ok(());
    }
    for (i, seg) in view.segments.iter().enumerate() {
        let end = view.segments.get(i + 1).map_or(view.records, |n| n.first);
        if end <= from {
            continue;
        }
        if seg.first >= to {
            break;
        }
        let mut reader = FrameReader::open(&seg.path, Some(seg.len))?;
        let mut seq = seg.first;
        loop {
            match reader.next_frame()? {
                Step::End => break,
                Step::Fault { offset, fault } => {
                    return Err(VerifyError::new(
                        seg.path.clone(),
                        Some(offset),
                        Some(seq),
                        Problem::BadFrame {
                            fault,
                            following: 0,
                        },
                    )
                    .into());
                }
                Step::Frame { offset, payload } => {
                    if seq >= to {
                        return Ok(());
                    }
                    if seq >= from && !f(&seg.path, offset, &payload)? {
                        return Ok(());
                    }
                    seq += 1;
                }
            }
        }
    }
    Ok(())
}

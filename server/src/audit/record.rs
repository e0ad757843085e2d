//! One audit record: what happened ([`Entry`], filled in by the server), where it sits in the
//! log ([`Record`]: sequence, time, hash of the previous record) and its byte encoding.
//!
//! The encoding is the thing that is hashed, chained and signed, so it is explicit and
//! deterministic rather than derived from a serialisation library: a change to it must be a
//! deliberate new version, and the golden vectors in the tests fail if it changes by accident.
//!
//! Encoding, version 1 (all integers big-endian; a *string* is a `u32` byte length followed by
//! UTF-8; a *list* is a `u32` count followed by that many strings):
//!
//! ```text
//! u8   version (= 1)
//! u64  sequence
//! i64  unix_ms
//! [32] prev_hash            (leaf hash of the previous record; zeros for sequence 0)
//! u8   kind                 (see Kind::code)
//! str  principal, role, project, purpose
//! u64  request_id
//! str  statement, plan_hash
//! list tables_read, columns_read, opt_out_filters
//! u64  rows_scanned, rows_returned, rows_suppressed
//! list rules_applied
//! u32  budget_spent, budget_remaining
//! str  result_hash
//! u8   outcome tag (0 none, 1 ok, 2 refused, 3 error), then for 2 and 3 a str (rule id or
//!      error category)
//! u64  duration_ms
//! u32  detail count, then per detail: str key, str value
//! ```
//!
//! Decoding is strict: unknown versions, kinds or outcome tags, invalid UTF-8, and trailing
//! bytes are all errors, so one byte sequence means exactly one record.
//!
//! What a record must never hold is the caller's responsibility, stated here once: no result
//! values, no pseudonyms, no noise values. Hashes (of the plan, of the streamed result bytes)
//! stand in for them.

use fivesafes_engine::dates::format_ymd;
use serde_json::json;

use super::merkle;

/// The version byte at the start of every encoded record.
pub const RECORD_VERSION: u8 = 1;

/// What kind of event a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Kind {
    /// The server started; `detail` carries `config_hash` and `policy_hash`.
    ServerStarted,
    /// The server stopped cleanly; `detail` carries `config_hash` and `policy_hash`.
    ServerStopped,
    /// A client failed to authenticate; `detail` carries the peer and the reason.
    AuthFailed,
    /// A query was accepted by the gate and is about to run. (The default only so that
    /// [`Entry`] can derive `Default` and callers fill fields with `..Entry::default()`.)
    #[default]
    QueryStarted,
    /// A query finished (successfully or with an error); the result hash is final.
    QueryCompleted,
    /// A query was refused by a policy rule before anything ran.
    QueryRefused,
    /// A canned report ran; `statement` holds the report name and parameters.
    ReportRun,
    /// The log was repaired on open after a crash (a torn last frame was dropped).
    Recovery,
}

impl Kind {
    /// Every kind, in code order.
    pub const ALL: [Kind; 8] = [
        Kind::ServerStarted,
        Kind::ServerStopped,
        Kind::AuthFailed,
        Kind::QueryStarted,
        Kind::QueryCompleted,
        Kind::QueryRefused,
        Kind::ReportRun,
        Kind::Recovery,
    ];

    /// The stable name of the kind, as shown to auditors (`query-completed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServerStarted => "server-started",
            Kind::ServerStopped => "server-stopped",
            Kind::AuthFailed => "auth-failed",
            Kind::QueryStarted => "query-started",
            Kind::QueryCompleted => "query-completed",
            Kind::QueryRefused => "query-refused",
            Kind::ReportRun => "report-run",
            Kind::Recovery => "recovery",
        }
    }

    /// The byte that encodes the kind. Codes are never reused.
    pub fn code(self) -> u8 {
        match self {
            Kind::ServerStarted => 1,
            Kind::ServerStopped => 2,
            Kind::AuthFailed => 3,
            Kind::QueryStarted => 4,
            Kind::QueryCompleted => 5,
            Kind::QueryRefused => 6,
            Kind::ReportRun => 7,
            Kind::Recovery => 8,
        }
    }

    /// The kind with this code, if any.
    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Outcome {
    /// Not applicable (server start/stop, query started, recovery).
    #[default]
    None,
    /// The request succeeded and its result was released.
    Ok,
    /// A policy refused the request.
    Refused {
        /// The id of the rule that refused it.
        rule: String,
    },
    /// The request failed.
    Error {
        /// The error category (never an internal message or a data value).
        category: String,
    },
}

/// The class of an [`Outcome`], without its rule id or category: what filters match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// [`Outcome::None`].
    None,
    /// [`Outcome::Ok`].
    Ok,
    /// [`Outcome::Refused`].
    Refused,
    /// [`Outcome::Error`].
    Error,
}

impl OutcomeKind {
    /// The stable name: `none`, `ok`, `refused` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::None => "none",
            OutcomeKind::Ok => "ok",
            OutcomeKind::Refused => "refused",
            OutcomeKind::Error => "error",
        }
    }
}

impl Outcome {
    /// The class of this outcome.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::None => OutcomeKind::None,
            Outcome::Ok => OutcomeKind::Ok,
            Outcome::Refused { .. } => OutcomeKind::Refused,
            Outcome::Error { .. } => OutcomeKind::Error,
        }
    }

    /// The refusing rule's id, for a refusal.
    pub fn rule_id(&self) -> Option<&str> {
        match self {
            Outcome::Refused { rule } => Some(rule),
            _ => None,
        }
    }

    /// The error category, for an error.
    pub fn error_category(&self) -> Option<&str> {
        match self {
            Outcome::Error { category } => Some(category),
            _ => None,
        }
    }
}

/// What the server reports about one event. The log adds the sequence number, the time and
/// the chain hash when it appends it (see [`Record`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// What happened.
    pub kind: Kind,
    /// The authenticated principal (or the claimed one, for a failed authentication).
    pub principal: String,
    /// The principal's role (analyst, commissioner, auditor, admin).
    pub role: String,
    /// The approved project the request ran in.
    pub project: String,
    /// The project's purpose, as registered.
    pub purpose: String,
    /// Links the started and completed records of one query.
    pub request_id: u64,
    /// The SQL text, or the report name and parameters.
    pub statement: String,
    /// Hash of the canonical (protected) plan.
    pub plan_hash: String,
    /// Tables the plan reads.
    pub tables_read: Vec<String>,
    /// Columns the plan reads (`table.column`).
    pub columns_read: Vec<String>,
    /// Opt-out filters applied to the plan.
    pub opt_out_filters: Vec<String>,
    /// Rows read from the store.
    pub rows_scanned: u64,
    /// Rows released to the client.
    pub rows_returned: u64,
    /// Rows withheld by output control.
    pub rows_suppressed: u64,
    /// Output-control rules applied (ids).
    pub rules_applied: Vec<String>,
    /// Budget this request spent.
    pub budget_spent: u32,
    /// Budget the project has left afterwards.
    pub budget_remaining: u32,
    /// Hash of the result bytes as streamed to the client.
    pub result_hash: String,
    /// How the request ended.
    pub outcome: Outcome,
    /// Wall time the request took, in milliseconds.
    pub duration_ms: u64,
    /// Anything else, as ordered key/value pairs: `config_hash`, `policy_hash`, `peer`, an
    /// authentication failure reason, recovery details.
    pub detail: Vec<(String, String)>,
}

/// One record of the log: an [`Entry`] with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the log, contiguous from 0.
    pub sequence: u64,
    /// When the log appended it, Unix milliseconds (never decreases along the log).
    pub unix_ms: i64,
    /// The leaf hash of the previous record; all zeros for sequence 0.
    pub prev_hash: [u8; 32],
    /// What happened.
    pub entry: Entry,
}

/// Why an encoded record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record does not decode at byte {at}: {problem}")]
pub struct DecodeError {
    /// Byte position within the record's encoding.
    pub at: usize,
    /// What is wrong.
    pub problem: String,
}

impl Entry {
    /// Appends the encoding of everything after the record header (from `kind` on).
    ///
    /// The server's threads encode their own entries, so the single writer thread only adds
    /// the 49-byte header; see [`Record::encode`].
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.kind.code());
        put_str(out, &self.principal);
        put_str(out, &self.role);
        put_str(out, &self.project);
        put_str(out, &self.purpose);
        out.extend_from_slice(&self.request_id.to_be_bytes());
        put_str(out, &self.statement);
        put_str(out, &self.plan_hash);
        put_list(out, &self.tables_read);
        put_list(out, &self.columns_read);
        put_list(out, &self.opt_out_filters);
        out.extend_from_slice(&self.rows_scanned.to_be_bytes());
        out.extend_from_slice(&self.rows_returned.to_be_bytes());
        out.extend_from_slice(&self.rows_suppressed.to_be_bytes());
        put_list(out, &self.rules_applied);
        out.extend_from_slice(&self.budget_spent.to_be_bytes());
        out.extend_from_slice(&self.budget_remaining.to_be_bytes());
        put_str(out, &self.result_hash);
        match &self.outcome {
            Outcome::None => out.push(0),
            Outcome::Ok => out.push(1),
            Outcome::Refused { rule } => {
                out.push(2);
                put_str(out, rule);
            }
            Outcome::Error { category } => {
                out.push(3);
                put_str(out, category);
            }
        }
        out.extend_from_slice(&self.duration_ms.to_be_bytes());
        put_len(out, self.detail.len());
        for (k, v) in &self.detail {
            put_str(out, k);
            put_str(out, v);
        }
    }

    /// The first value of a `detail` key.
    pub fn detail(&self, key: &str) -> Option<&str> {
        self.detail
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Length of the record header: version, sequence, time, previous hash.
pub(crate) const HEADER_LEN: usize = 1 + 8 + 8 + 32;

/// Encodes the header of a record whose body (see [`Entry::encode_body`]) follows.
pub(crate) fn encode_header(out: &mut Vec<u8>, sequence: u64, unix_ms: i64, prev: &[u8; 32]) {
    out.push(RECORD_VERSION);
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&unix_ms.to_be_bytes());
    out.extend_from_slice(prev);
}

impl Record {
    /// The record's canonical encoding (see the module docs), which is what is framed on disk
    /// and hashed into the chain and the Merkle tree.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        encode_header(&mut out, self.sequence, self.unix_ms, &self.prev_hash);
        self.entry.encode_body(&mut out);
        out
    }

    /// Decodes a record, strictly (see the module docs).
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != RECORD_VERSION {
            return Err(r.err(format!(
                "unknown record version {version} (this build reads {RECORD_VERSION})"
            )));
        }
        let sequence = r.u64()?;
        let unix_ms = r.u64()? as i64;
        let prev_hash = r.hash()?;
        let code = r.u8()?;
        let kind = Kind::from_code(code).ok_or_else(|| r.err(format!("unknown kind {code}")))?;
        let principal = r.str()?;
        let role = r.str()?;
        let project = r.str()?;
        let purpose = r.str()?;
        let request_id = r.u64()?;
        let statement = r.str()?;
        let plan_hash = r.str()?;
        let tables_read = r.list()?;
        let columns_read = r.list()?;
        let opt_out_filters = r.list()?;
        let rows_scanned = r.u64()?;
        let rows_returned = r.u64()?;
        let rows_suppressed = r.u64()?;
        let rules_applied = r.list()?;
        let budget_spent = r.u32()?;
        let budget_remaining = r.u32()?;
        let result_hash = r.str()?;
        let outcome = match r.u8()? {
            0 => Outcome::None,
            1 => Outcome::Ok,
            2 => Outcome::Refused { rule: r.str()? },
            3 => Outcome::Error { category: r.str()? },
            tag => return Err(r.err(format!("unknown outcome tag {tag}"))),
        };
        let duration_ms = r.u64()?;
        let n = r.count()?;
        let mut detail = Vec::with_capacity(n);
        for _ in 0..n {
            let k = r.str()?;
            let v = r.str()?;
            detail.push((k, v));
        }
        if r.at != bytes.len() {
            return Err(r.err(format!("{} trailing bytes", bytes.len() - r.at)));
        }
        Ok(Record {
            sequence,
            unix_ms,
            prev_hash,
            entry: Entry {
                kind,
                principal,
                role,
                project,
                purpose,
                request_id,
                statement,
                plan_hash,
                tables_read,
                columns_read,
                opt_out_filters,
                rows_scanned,
                rows_returned,
                rows_suppressed,
                rules_applied,
                budget_spent,
                budget_remaining,
                result_hash,
                outcome,
                duration_ms,
                detail,
            },
        })
    }

    /// The record's Merkle leaf hash, `SHA-256(0x00 || encode())`. The next record's
    /// `prev_hash` is this value, so the chain and the tree hash the same bytes.
    pub fn leaf_hash(&self) -> [u8; 32] {
        merkle::leaf_hash(&self.encode())
    }

    /// The record as JSON, for auditors' tools: hashes in hex, the time both as Unix ms and
    /// ISO 8601 UTC.
    pub fn to_json(&self) -> serde_json::Value {
        let e = &self.entry;
        json!({
            "sequence": self.sequence,
            "unix_ms": self.unix_ms,
            "time": iso8601(self.unix_ms),
            "prev_hash": hex::encode(self.prev_hash),
            "leaf_hash": hex::encode(self.leaf_hash()),
            "kind": e.kind.as_str(),
            "principal": e.principal,
            "role": e.role,
            "project": e.project,
            "purpose": e.purpose,
            "request_id": e.request_id,
            "statement": e.statement,
            "plan_hash": e.plan_hash,
            "tables_read": e.tables_read,
            "columns_read": e.columns_read,
            "opt_out_filters": e.opt_out_filters,
            "rows_scanned": e.rows_scanned,
            "rows_returned": e.rows_returned,
            "rows_suppressed": e.rows_suppressed,
            "rules_applied": e.rules_applied,
            "budget_spent": e.budget_spent,
            "budget_remaining": e.budget_remaining,
            "result_hash": e.result_hash,
            "outcome": e.outcome.kind().as_str(),
            "rule_id": e.outcome.rule_id(),
            "error_category": e.outcome.error_category(),
            "duration_ms": e.duration_ms,
            "detail": e.detail.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        })
    }
}

/// Formats Unix milliseconds as ISO 8601 UTC with millisecond precision
/// (`2025-03-01T12:00:00.000Z`).
pub fn iso8601(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let rem = unix_ms.rem_euclid(86_400_000);
    let date = i32::try_from(days).map_or_else(|_| "??".to_string(), format_ymd);
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        (rem / 60_000) % 60,
        (rem / 1000) % 60,
        rem % 1000
    )
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Entries are bounded by the frame size limit (far below 4 GiB) before they get here.
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_list(out: &mut Vec<u8>, items: &[String]) {
    put_len(out, items.len());
    for s in items {
        put_str(out, s);
    }
}

/// A bounds-checked cursor over an encoded record.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn err(&self, problem: String) -> DecodeError {
        DecodeError {
            at: self.at,
            problem,
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.bytes.len() - self.at < n {
            return Err(self.err(format!(
                "needs {n} more bytes, {} left",
                self.bytes.len() - self.at
            )));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn hash(&mut self) -> Result<[u8; 32], DecodeError> {
        self.array()
    }

    /// A count of list items; each item takes at least 4 bytes, which bounds the allocation.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > (self.bytes.len() - self.at) / 4 {
            return Err(self.err(format!("count {n} exceeds the bytes left")));
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let start = self.at;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError {
            at: start,
            problem: "string is not UTF-8".into(),
        })
    }

    fn list(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.count()?;
        (0..n).map(|_| self.str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            sequence: 7,
            unix_ms: 1_700_000_000_123,
            prev_hash: [9; 32],
            entry: Entry {
                kind: Kind::QueryRefused,
                principal: "ana".into(),
                tables_read: vec!["gp_events".into(), "hes_apc".into()],
                outcome: Outcome::Refused { rule: "R2".into() },
                detail: vec![("peer".into(), "10.0.0.1".into())],
                ..Entry::default()
            },
        }
    }

    #[test]
    fn round_trips() {
        let r = sample();
        assert_eq!(Record::decode(&r.encode()), Ok(r));
        for o in [
            Outcome::None,
            Outcome::Ok,
            Outcome::Error {
                category: "timeout".into(),
            },
        ] {
            let mut r = sample();
            r.entry.outcome = o;
            assert_eq!(Record::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn kinds_round_trip_through_codes() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::QueryCompleted.as_str(), "query-completed");
    }

    #[test]
    fn rejects_every_truncation_and_trailing_bytes() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Record::decode(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Record::decode(&longer).is_err());
        let mut v2 = bytes;
        v2[0] = 2;
        assert!(Record::decode(&v2).is_err());
    }

    #[test]
    fn header_length_matches() {
        let mut out = Vec::new();
        encode_header(&mut out, 1, 2, &[0; 32]);
        assert_eq!(out.len(), HEADER_LEN);
    }

    #[test]
    fn formats_times() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
    }
}

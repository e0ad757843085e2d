//! The appending side: [`AuditLog::open`] (verify, repair a torn tail, resume) and the single
//! writer thread that makes records durable with group commit.
//!
//! Why one thread: the hash chain and the sequence numbers are inherently serial, and one
//! `fsync` can cover every record queued while the previous one ran. Appenders encode their
//! entries on their own threads, queue them on a channel and wait for an acknowledgement; the
//! writer drains everything queued, adds sequence, time and chain hash, writes the frames with
//! one `write`, calls `fdatasync` once, and only then acknowledges each appender. So when
//! `append` returns `Ok`, the record is on disk; when it returns `Err`, the server releases
//! nothing.
//!
//! Checkpoints are written by the same thread (after the records they cover are durable):
//! every `checkpoint_every_records` records, every `checkpoint_interval` while unsigned records
//! exist, on request, and at shutdown.
//!
//! A failed write or sync poisons the writer: the on-disk state after a failed `fsync` is
//! unknown, so every later append fails until the log is reopened, which re-verifies it and
//! drops any torn tail.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;

use super::checkpoint::Checkpoint;
use super::error::AuditError;
use super::merkle::{self, CompactTree, Hash};
use super::record::{Entry, HEADER_LEN, Kind, encode_header};
use super::segment::{
    self, CHECKPOINTS_FILE, FRAME_HEADER, LOCK_FILE, MAX_FRAME, put_frame, segment_name,
};
use super::verify::{self, ScannedSegment, Truncation};

/// Most messages the writer takes into one group commit: bounds the latency of the first
/// appender in a batch under a flood.
const MAX_BATCH: usize = 4096;

/// How the log behaves; the defaults suit the server.
#[derive(Clone)]
pub struct AuditOptions {
    /// Sign a checkpoint once this many records are unsigned (default 1000).
    pub checkpoint_every_records: u64,
    /// Sign a checkpoint this long after the last one while records are unsigned (default
    /// 10 s), so a quiet server does not leave records unsigned for long.
    pub checkpoint_interval: Duration,
    /// Start a new segment when the current one would grow past this (default 64 MiB).
    pub segment_max_bytes: u64,
    /// The clock, Unix milliseconds; injected so tests are exact.
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            checkpoint_every_records: 1000,
            checkpoint_interval: Duration::from_secs(10),
            segment_max_bytes: 64 << 20,
            clock: Arc::new(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
            }),
        }
    }
}

impl std::fmt::Debug for AuditOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditOptions")
            .field("checkpoint_every_records", &self.checkpoint_every_records)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .finish_non_exhaustive()
    }
}

/// What `open` repaired after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The torn tails dropped (a segment's, the checkpoints file's, or both).
    pub truncated: Vec<Truncation>,
    /// Sequence number of the `recovery` record that reports them.
    pub sequence: u64,
}

/// An open audit log: appends (through the writer thread) and reads. `Send + Sync`; share it
/// in an `Arc`. Dropping it stops the writer cleanly, as [`AuditLog::close`] does, but without
/// reporting errors.
pub struct AuditLog {
    /// State shared with the writer thread (what is durable, counters).
    pub(super) shared: Arc<Shared>,
    /// The writer thread's queue.
    tx: mpsc::Sender<Msg>,
    /// The writer thread, until it is stopped.
    thread: Option<JoinHandle<()>>,
    /// Held (advisory lock) for as long as this log may append.
    _lock: File,
}

/// What readers may see: only what the writer has made durable.
pub(super) struct Shared {
    /// The log directory.
    pub dir: PathBuf,
    /// The durable extent of the log.
    pub durable: RwLock<Durable>,
    /// `fsync`s done, for tests and metrics.
    pub fsyncs: AtomicU64,
}

/// The durable extent of the log, published by the writer after each sync.
#[derive(Debug, Clone)]
pub(super) struct Durable {
    /// Segments in order, with their durable lengths.
    pub segments: Vec<ScannedSegment>,
    /// Durable records.
    pub records: u64,
    /// Durable length of the checkpoints file.
    pub checkpoints_len: u64,
}

impl Shared {
    /// A snapshot of the durable extent.
    pub fn view(&self) -> Durable {
        self.durable
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn publish(&self, f: impl FnOnce(&mut Durable)) {
        f(&mut self
            .durable
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()));
    }
}

/// How the writer acknowledges an append.
enum Ack {
    /// An async appender.
    Async(tokio::sync::oneshot::Sender<Result<u64, AuditError>>),
    /// A blocking appender.
    Blocking(mpsc::SyncSender<Result<u64, AuditError>>),
}

impl Ack {
    fn send(self, r: Result<u64, AuditError>) {
        // An appender that went away (a dropped future) no longer needs the answer; the
        // record is written all the same.
        match self {
            Ack::Async(tx) => {
                let _ = tx.send(r);
            }
            Ack::Blocking(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// A request to the writer thread.
enum Msg {
    /// Append an entry (already encoded, from `kind` on).
    Append { body: Vec<u8>, ack: Ack },
    /// Sign a checkpoint now.
    Checkpoint {
        ack: mpsc::SyncSender<Result<Checkpoint, AuditError>>,
    },
    /// Commit, sign a final checkpoint and stop.
    Shutdown {
        ack: mpsc::SyncSender<Result<(), AuditError>>,
    },
}

impl AuditLog {
    /// Opens (creating if needed, mode 0700) the log in `dir`: takes the writer lock, verifies
    /// the whole log against `key`'s public half exactly as [`verify_log`](super::verify_log)
    /// does, drops a torn tail left by a crash (appending a `recovery` record that says what
    /// was dropped), and starts the writer thread.
    ///
    /// Corruption that is not a torn tail — a bad frame with data after it, a broken chain, a
    /// sequence gap, a checkpoint that does not match — fails with
    /// [`AuditError::Corrupt`], naming the file and offset. Nothing is repaired silently.
    ///
    /// Opening reads the whole log (O(size) time, O(log n) memory).
    pub fn open(
        dir: &Path,
        key: SigningKey,
        opts: AuditOptions,
    ) -> Result<(AuditLog, Option<Recovery>), AuditError> {
        create_private_dir(dir)?;
        let lock = take_lock(dir)?;
        init_if_fresh(dir)?;
        let scan = verify::scan(dir, &key.verifying_key())?;
        for t in &scan.torn {
            let f = OpenOptions::new()
                .write(true)
                .open(&t.file)
                .map_err(|e| AuditError::io(&t.file, e))?;
            f.set_len(t.offset)
                .and_then(|()| f.sync_all())
                .map_err(|e| AuditError::io(&t.file, e))?;
            tracing::warn!(
                file = %t.file.display(),
                offset = t.offset,
                bytes_dropped = t.bytes,
                "audit log: dropped a torn tail left by a crash"
            );
        }
        let last = scan
            .segments
            .last()
            .cloned()
            .ok_or_else(|| AuditError::OutOfRange("no segment after scan".into()))?;
        let segment =
            segment::open_append(&last.path).map_err(|e| AuditError::io(&last.path, e))?;
        let cp_path = dir.join(CHECKPOINTS_FILE);
        let checkpoints =
            segment::open_append(&cp_path).map_err(|e| AuditError::io(&cp_path, e))?;
        let last_ms = scan
            .last_unix_ms
            .into_iter()
            .chain(scan.checkpoints.last().map(|c| c.unix_ms))
            .max()
            .unwrap_or(i64::MIN);
        tracing::info!(
            records = scan.records,
            segments = scan.segments.len(),
            checkpoints = scan.checkpoints.len(),
            "audit log opened"
        );
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            durable: RwLock::new(Durable {
                segments: scan.segments.clone(),
                records: scan.records,
                checkpoints_len: scan.checkpoints_len,
            }),
            fsyncs: AtomicU64::new(0),
        });
        let writer = Writer {
            shared: shared.clone(),
            key,
            every: opts.checkpoint_every_records.max(1),
            interval: opts.checkpoint_interval,
            max_bytes: opts.segment_max_bytes,
            clock: opts.clock,
            segment,
            segment_len: last.len,
            checkpoints,
            next_seq: scan.records,
            last_hash: scan.last_hash,
            last_ms,
            tree: scan.tree,
            signed_size: scan.checkpoints.last().map(|c| c.tree_size),
            last_checkpoint_at: Instant::now(),
            poisoned: None,
            buf: Vec::new(),
            waiting: Vec::new(),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError::io(dir, e))?;
        let log = AuditLog {
            shared,
            tx,
            thread: Some(thread),
            _lock: lock,
        };
        let recovery = if scan.torn.is_empty() {
            None
        } else {
            let mut detail = Vec::new();
            for t in &scan.torn {
                let name = t
                    .file
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                detail.push(("file".to_string(), name));
                detail.push(("offset".to_string(), t.offset.to_string()));
                detail.push(("bytes_dropped".to_string(), t.bytes.to_string()));
            }
            let sequence = log.append_blocking(Entry {
                kind: Kind::Recovery,
                detail,
                ..Entry::default()
            })?;
            Some(Recovery {
                truncated: scan.torn,
                sequence,
            })
        };
        Ok((log, recovery))
    }

    /// Appends an entry; returns its sequence number once it is durable (written and synced,
    /// with group commit across concurrent appenders). If the returned future is dropped
    /// after the entry was queued, the record is still written.
    pub async fn append(&self, entry: Entry) -> Result<u64, AuditError> {
        let body = encode_body(&entry)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Append {
                body,
                ack: Ack::Async(tx),
            })
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// [`AuditLog::append`] for synchronous callers (blocks the thread until durable).
    pub fn append_blocking(&self, entry: Entry) -> Result<u64, AuditError> {
        let body = encode_body(&entry)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Append {
                body,
                ack: Ack::Blocking(tx),
            })
            .map_err(|_| AuditError::Closed)?;
        rx.recv().map_err(|_| AuditError::Closed)?
    }

    /// Signs and stores a checkpoint over every record appended so far, now.
    pub fn checkpoint(&self) -> Result<Checkpoint, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Checkpoint { ack: tx })
            .map_err(|_| AuditError::Closed)?;
        rx.recv().map_err(|_| AuditError::Closed)?
    }

    /// Commits what is queued, signs a final checkpoint (unless the last one already covers
    /// every record) and stops the writer thread.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.shutdown()
    }

    /// Number of `fsync`s (of segments and of the checkpoints file) since open.
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Number of durable records.
    pub fn len(&self) -> u64 {
        self.shared.view().records
    }

    /// Whether the log holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn shutdown(&mut self) -> Result<(), AuditError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let result = match self.tx.send(Msg::Shutdown { ack: tx }) {
            Ok(()) => rx.recv().map_err(|_| AuditError::Closed).and_then(|r| r),
            Err(_) => Err(AuditError::Closed),
        };
        if thread.join().is_err() {
            tracing::error!("audit writer thread panicked");
            return Err(AuditError::Closed);
        }
        result
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "audit log: closing on drop failed");
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// Encodes an entry's body on the caller's thread and checks that it fits a frame.
fn encode_body(entry: &Entry) -> Result<Vec<u8>, AuditError> {
    let mut body = Vec::with_capacity(256);
    entry.encode_body(&mut body);
    let bytes = HEADER_LEN + body.len();
    if bytes > MAX_FRAME as usize {
        return Err(AuditError::TooLarge {
            bytes,
            limit: MAX_FRAME,
        });
    }
    Ok(body)
}

/// Creates `dir` and any missing parents with mode 0700 (they will hold who asked what).
fn create_private_dir(dir: &Path) -> Result<(), AuditError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| AuditError::io(dir, e))
}

fn take_lock(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AuditError::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(AuditError::io(&path, e)),
    }
}

/// Creates the checkpoints file and segment 0 in a new log. The checkpoints file comes first,
/// so a crash in between leaves an empty checkpoints file and no segment, which this function
/// completes next time; a log with segments but no checkpoints file is never created.
fn init_if_fresh(dir: &Path) -> Result<(), AuditError> {
    if !segment::list_segments(dir)?.is_empty() {
        return Ok(());
    }
    let cp = dir.join(CHECKPOINTS_FILE);
    match std::fs::metadata(&cp) {
        // Checkpoints but no segments: records were removed. Let the scan report it.
        Ok(m) if m.len() > 0 => return Ok(()),
        Ok(_) => {}
        Err(_) => {
            segment::create_file(&cp).map_err(|e| AuditError::io(&cp, e))?;
        }
    }
    let first = dir.join(segment_name(0));
    segment::create_file(&first).map_err(|e| AuditError::io(&first, e))?;
    segment::sync_dir(dir).map_err(|e| AuditError::io(dir, e))?;
    tracing::info!("audit log created");
    Ok(())
}

/// The writer thread's state.
struct Writer {
    /// What readers see; updated after each sync.
    shared: Arc<Shared>,
    /// Signs checkpoints.
    key: SigningKey,
    /// Checkpoint after this many unsigned records.
    every: u64,
    /// Checkpoint this long after the last one while records are unsigned.
    interval: Duration,
    /// Segment size limit.
    max_bytes: u64,
    /// Unix ms.
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// The current (last) segment, opened for appending.
    segment: File,
    /// Bytes written to it (durable up to the last sync).
    segment_len: u64,
    /// The checkpoints file, opened for appending.
    checkpoints: File,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Leaf hash of the last record (the next record's `prev_hash`).
    last_hash: Hash,
    /// Latest time given to a record or checkpoint; times never go back.
    last_ms: i64,
    /// Merkle peaks of all records so far.
    tree: CompactTree,
    /// Tree size of the last checkpoint.
    signed_size: Option<u64>,
    /// When the last checkpoint was signed (or the log opened).
    last_checkpoint_at: Instant,
    /// Set by the first failed write; nothing more is accepted.
    poisoned: Option<String>,
    /// Frames of the current batch, not yet written.
    buf: Vec<u8>,
    /// Appenders of the current batch, with their sequence numbers.
    waiting: Vec<(Ack, u64)>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let msg = match self.checkpoint_due() {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(deadline) => {
                    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                }
            };
            let msg = match msg {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.auto_checkpoint();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Every handle is gone without a shutdown: still sign what is there.
                    let _ = self.final_checkpoint();
                    return;
                }
            };
            let mut next = Some(msg);
            let mut taken = 0;
            while let Some(m) = next.take() {
                match m {
                    Msg::Append { body, ack } => self.add(body, ack),
                    Msg::Checkpoint { ack } => {
                        self.commit();
                        let _ = ack.send(self.write_checkpoint());
                    }
                    Msg::Shutdown { ack } => {
                        self.commit();
                        let _ = ack.send(self.final_checkpoint().map(|_| ()));
                        tracing::info!(records = self.next_seq, "audit log closed");
                        return;
                    }
                }
                taken += 1;
                if taken < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.commit();
            if self.unsigned() >= self.every {
                self.auto_checkpoint();
            }
        }
    }

    fn unsigned(&self) -> u64 {
        self.tree.size() - self.signed_size.unwrap_or(0)
    }

    /// When the next timed checkpoint is due, if one will be.
    fn checkpoint_due(&self) -> Option<Instant> {
        (self.poisoned.is_none() && self.unsigned() > 0)
            .then(|| self.last_checkpoint_at + self.interval)
    }

    fn now_ms(&mut self) -> i64 {
        self.last_ms = self.last_ms.max((self.clock)());
        self.last_ms
    }

    fn poison(&mut self, reason: String) {
        tracing::error!(reason = %reason, "audit log: write failed; refusing further appends");
        self.poisoned.get_or_insert(reason);
    }

    /// Adds one record to the batch (rolling to a new segment first if it would not fit).
    fn add(&mut self, body: Vec<u8>, ack: Ack) {
        if let Some(reason) = &self.poisoned {
            ack.send(Err(AuditError::Poisoned {
                reason: reason.clone(),
            }));
            return;
        }
        let seq = self.next_seq;
        let ms = self.now_ms();
        let mut payload = Vec::with_capacity(HEADER_LEN + body.len());
        encode_header(&mut payload, seq, ms, &self.last_hash);
        payload.extend_from_slice(&body);
        let frame_len = FRAME_HEADER + payload.len() as u64;
        let used = self.segment_len + self.buf.len() as u64;
        if used > 0
            && used + frame_len > self.max_bytes
            && let Err(e) = self.roll()
        {
            self.poison(e.to_string());
            ack.send(Err(AuditError::Write {
                reason: e.to_string(),
            }));
            return;
        }
        put_frame(&mut self.buf, &payload);
        self.last_hash = merkle::leaf_hash(&payload);
        self.tree.push(self.last_hash);
        self.next_seq += 1;
        self.waiting.push((ack, seq));
    }

    /// Writes the batch to the current segment and syncs it, publishing the new extent.
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.segment.write_all(&self.buf)?;
            self.segment_len += self.buf.len() as u64;
            self.buf.clear();
        }
        self.segment.sync_data()?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        let (len, records) = (self.segment_len, self.next_seq);
        self.shared.publish(|d| {
            if let Some(s) = d.segments.last_mut() {
                s.len = len;
            }
            d.records = records;
        });
        Ok(())
    }

    /// Syncs the current segment, then starts the next one (named by the next sequence) and
    /// syncs the directory, so an earlier segment is complete before a later one exists.
    fn roll(&mut self) -> std::io::Result<()> {
        self.flush()?;
        let path = self.shared.dir.join(segment_name(self.next_seq));
        self.segment = segment::create_file(&path)?;
        segment::sync_dir(&self.shared.dir)?;
        self.segment_len = 0;
        let first = self.next_seq;
        self.shared.publish(|d| {
            d.segments.push(ScannedSegment {
                first,
                path,
                len: 0,
            });
        });
        tracing::info!(first_sequence = first, "audit log: new segment");
        Ok(())
    }

    /// Makes the batch durable, then acknowledges every appender in it.
    fn commit(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let result = match &self.poisoned {
            Some(reason) => Err(AuditError::Poisoned {
                reason: reason.clone(),
            }),
            None => self.flush().map_err(|e| {
                let reason = e.to_string();
                self.poison(reason.clone());
                AuditError::Write { reason }
            }),
        };
        let n = self.waiting.len();
        for (ack, seq) in self.waiting.drain(..) {
            ack.send(match &result {
                Ok(()) => Ok(seq),
                Err(AuditError::Poisoned { reason }) => Err(AuditError::Poisoned {
                    reason: reason.clone(),
                }),
                Err(e) => Err(AuditError::Write {
                    reason: e.to_string(),
                }),
            });
        }
        tracing::trace!(records = n, "audit group commit");
    }

    /// Signs a checkpoint over every record so far and makes it durable. The caller has
    /// committed the batch first.
    fn write_checkpoint(&mut self) -> Result<Checkpoint, AuditError> {
        if let Some(reason) = &self.poisoned {
            return Err(AuditError::Poisoned {
                reason: reason.clone(),
            });
        }
        let ms = self.now_ms();
        let cp = Checkpoint::sign(self.tree.size(), self.tree.root(), ms, &self.key);
        let mut frame = Vec::with_capacity(FRAME_HEADER as usize + 160);
        put_frame(&mut frame, &cp.to_bytes());
        let written = self
            .checkpoints
            .write_all(&frame)
            .and_then(|()| self.checkpoints.sync_data());
        if let Err(e) = written {
            let reason = e.to_string();
            self.poison(reason.clone());
            return Err(AuditError::Write { reason });
        }
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.shared
            .publish(|d| d.checkpoints_len += frame.len() as u64);
        self.signed_size = Some(cp.tree_size);
        self.last_checkpoint_at = Instant::now();
        tracing::debug!(tree_size = cp.tree_size, "audit checkpoint signed");
        Ok(cp)
    }

    fn auto_checkpoint(&mut self) {
        if let Err(e) = self.write_checkpoint() {
            tracing::error!(error = %e, "audit log: checkpoint failed");
        }
    }

    /// The shutdown checkpoint, skipped when the last one already covers every record.
    fn final_checkpoint(&mut self) -> Result<Option<Checkpoint>, AuditError> {
        if self.signed_size == Some(self.tree.size()) {
            return Ok(None);
        }
        self.write_checkpoint().map(Some)
    }
}

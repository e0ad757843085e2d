//! Audit log: golden vectors, Merkle proofs, tamper, crash and recovery tests, group commit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use fivesafes_server::audit::merkle::{self, Hash};
use fivesafes_server::audit::{
    AuditError, AuditLog, AuditOptions, CHECKPOINTS_FILE, Checkpoint, Entry, Kind, Outcome,
    OutcomeKind, Problem, Record, RecordFilter, VerifyError, records_batch, records_schema,
    segment_name, verify_log,
};

const T0: i64 = 1_700_000_000_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn public() -> VerifyingKey {
    key().verifying_key()
}

/// A clock that starts at `T0` and ticks one millisecond per reading.
fn ticking_clock() -> Arc<dyn Fn() -> i64 + Send + Sync> {
    let t = Arc::new(AtomicI64::new(T0));
    Arc::new(move || t.fetch_add(1, Ordering::SeqCst))
}

fn opts(every: u64) -> AuditOptions {
    AuditOptions {
        checkpoint_every_records: every,
        checkpoint_interval: Duration::from_secs(3600),
        segment_max_bytes: 64 << 20,
        clock: ticking_clock(),
    }
}

fn entry(i: u64) -> Entry {
    Entry {
        kind: Kind::QueryCompleted,
        principal: format!("analyst{}", i % 3),
        role: "analyst".into(),
        project: if i.is_multiple_of(2) { "P1" } else { "P2" }.into(),
        purpose: "diabetes service evaluation".into(),
        request_id: i,
        statement: format!("SELECT COUNT(*) FROM gp_events WHERE year = {i}"),
        plan_hash: format!("{i:064x}"),
        tables_read: vec!["gp_events".into()],
        columns_read: vec!["gp_events.year".into(), "gp_events.person_id".into()],
        opt_out_filters: vec!["national-data-opt-out".into()],
        rows_scanned: 1000 + i,
        rows_returned: 1,
        rows_suppressed: i % 2,
        rules_applied: vec!["suppress-1-7".into(), "round-5".into()],
        budget_spent: 1,
        budget_remaining: 100 - (i as u32 % 100),
        result_hash: format!("{:064x}", i + 1),
        outcome: match i % 3 {
            0 => Outcome::Ok,
            1 => Outcome::Refused {
                rule: "R2-min-max".into(),
            },
            _ => Outcome::Error {
                category: "timeout".into(),
            },
        },
        duration_ms: i,
        detail: vec![("peer".into(), "127.0.0.1:5000".into())],
    }
}

fn open(dir: &Path, o: AuditOptions) -> AuditLog {
    let (log, recovery) = AuditLog::open(dir, key(), o).expect("open audit log");
    assert_eq!(recovery, None, "unexpected recovery");
    log
}

/// A closed log of `n` records, checkpointed every `every` records and at close.
fn sealed_log(dir: &Path, n: u64, every: u64) {
    let log = open(dir, opts(every));
    for i in 0..n {
        log.append_blocking(entry(i)).expect("append");
    }
    log.close().expect("close");
}

fn seg0(dir: &Path) -> PathBuf {
    dir.join(segment_name(0))
}

/// (start, end) of each complete frame in a file's bytes.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let end = at + 8 + len;
        if end > bytes.len() {
            break;
        }
        out.push((at, end));
        at = end;
    }
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write file");
}

/// Re-frames a payload with a correct CRC (what a careful attacker would do).
fn reframe(payload: &[u8]) -> Vec<u8> {
    let mut h = crc32fast::Hasher::new();
    h.update(&(payload.len() as u32).to_be_bytes());
    h.update(payload);
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&h.finalize().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn verify_fails(dir: &Path) -> VerifyError {
    match verify_log(dir, &public()) {
        Ok(s) => panic!("tampered log verified:\n{s}"),
        Err(e) => e,
    }
}

/// The error names the file, and the offset it is about.
fn assert_names(e: &VerifyError, file: &Path, offset: Option<u64>) {
    let msg = e.to_string();
    assert_eq!(e.file(), file, "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    if let Some(o) = offset {
        assert_eq!(e.offset(), Some(o), "{msg}");
        assert!(msg.contains(&format!("offset {o}")), "{msg}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

// ---------------------------------------------------------------------------------------------
// Golden vectors: these fail if the encoding, the hashing or the signing changes.

fn golden_record() -> Record {
    Record {
        sequence: 42,
        unix_ms: T0,
        prev_hash: [0x11; 32],
        entry: Entry {
            kind: Kind::QueryCompleted,
            principal: "ana".into(),
            role: "analyst".into(),
            project: "P001".into(),
            purpose: "audit".into(),
            request_id: 7,
            statement: "SELECT 1".into(),
            plan_hash: "ab".into(),
            tables_read: vec!["gp".into()],
            columns_read: vec!["gp.x".into()],
            opt_out_filters: vec!["ndop".into()],
            rows_scanned: 1000,
            rows_returned: 1,
            rows_suppressed: 2,
            rules_applied: vec!["r5".into()],
            budget_spent: 1,
            budget_remaining: 99,
            result_hash: "cd".into(),
            outcome: Outcome::Refused { rule: "R2".into() },
            duration_ms: 12,
            detail: vec![("peer".into(), "p".into())],
        },
    }
}

// Computed once, and checked against an independent implementation of the encoding (Python
// struct + hashlib + cryptography's Ed25519) before being pasted here.
/// Encoding of `golden_record()`: version 1, sequence 42, time, prev hash 0x11…, kind 5
/// (query-completed), then the entry's fields in order.
const GOLDEN_RECORD: &str = concat!(
    "01000000000000002a0000018bcfe568001111111111111111111111111111111111111111111111",
    "1111111111111111110500000003616e6100000007616e616c797374000000045030303100000005",
    "617564697400000000000000070000000853454c4543542031000000026162000000010000000267",
    "70000000010000000467702e7800000001000000046e646f7000000000000003e800000000000000",
    "01000000000000000200000001000000027235000000010000006300000002636402000000025232",
    "000000000000000c0000000100000004706565720000000170",
);
/// `SHA-256(0x00 || GOLDEN_RECORD)`.
const GOLDEN_LEAF: &str = "bb9fd073ece31c1914fca00b9e9b7e941107b12a3f46ef1b2b3326caa8023248";
/// `SHA-256(0x01 || [0; 32] || [1; 32])`.
const GOLDEN_NODE: &str = "2ad82c3a51e8ed6418cb5bf267c5f9e521b99f7ab4fce657f460a8f1a3e87b2e";
/// Root of the leaves `[0]`, `[1]`, …, `[4]`: `node(node(node(0,1), node(2,3)), 4)`.
const GOLDEN_ROOT5: &str = "b855b42d6c30f5b087e05266783fbd6e394f7b926013ccaa67700a8b0c5a596f";
/// Signed bytes of the checkpoint (5, GOLDEN_ROOT5, T0).
const GOLDEN_CHECKPOINT_SIGNED: &str = concat!(
    "6669766573616665732d61756469742d636865636b706f696e742d76310000000000000005b855b4",
    "2d6c30f5b087e05266783fbd6e394f7b926013ccaa67700a8b0c5a596f0000018bcfe56800",
);
/// Its Ed25519 signature with the key `[7; 32]`.
const GOLDEN_SIGNATURE: &str = concat!(
    "c931670a887dcb76b1eaa852a4ae69e02bc9e093be461224458a8754a384bb5309db730461efc2e7",
    "f1add2a5651c49d8c7af3abf7f2b1b88f1a82582bb99c105",
);

fn five_leaves() -> Vec<Hash> {
    (0u8..5).map(|i| merkle::leaf_hash(&[i])).collect()
}

#[test]
fn golden_vectors() {
    let r = golden_record();
    let root5 = merkle::root(&five_leaves());
    let cp = Checkpoint::sign(5, root5, T0, &key());
    let got = [
        hex::encode(r.encode()),
        hex::encode(r.leaf_hash()),
        hex::encode(merkle::node_hash(&[0; 32], &[1; 32])),
        hex::encode(root5),
        hex::encode(cp.encode()),
        hex::encode(cp.signature),
    ];
    let want = [
        GOLDEN_RECORD,
        GOLDEN_LEAF,
        GOLDEN_NODE,
        GOLDEN_ROOT5,
        GOLDEN_CHECKPOINT_SIGNED,
        GOLDEN_SIGNATURE,
    ];
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w);
    }
    assert_eq!(Record::decode(&r.encode()), Ok(r));
    assert!(cp.verify(&public()));
}

/// The RFC 6962 reference vectors (certificate-transparency test data): our tree is the CT
/// tree, so CT tooling can check our proofs.
#[test]
fn matches_rfc6962_reference_roots() {
    let inputs: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let leaves: Vec<Hash> = inputs.iter().map(|d| merkle::leaf_hash(d)).collect();
    for (n, want) in roots.iter().enumerate() {
        assert_eq!(
            hex::encode(merkle::root(&leaves[..n + 1])),
            *want,
            "size {}",
            n + 1
        );
    }
    assert_eq!(
        hex::encode(merkle::empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

// ---------------------------------------------------------------------------------------------
// Merkle proofs.

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect()
}

#[test]
fn inclusion_proofs_verify_for_all_sizes_and_indices_and_altered_ones_fail() {
    for n in 1..=40usize {
        let l = leaves(n);
        let root = merkle::root(&l);
        for i in 0..n {
            let p = merkle::inclusion_proof(&l, i as u64).expect("in range");
            assert!(p.verify(&l[i], &root), "n={n} i={i}");
            // Another leaf, another root, another index or size: all fail.
            assert!(!p.verify(&l[(i + 1) % n], &root) || n == 1, "n={n} i={i}");
            assert!(!p.verify(&l[i], &merkle::leaf_hash(b"x")));
            if n > 1 {
                let mut q = p.clone();
                q.leaf_index = ((i + 1) % n) as u64;
                assert!(!q.verify(&l[i], &root), "n={n} i={i} moved index");
            }
            // (A larger claimed size can verify with the same path: a sibling hash may stand
            // for a subtree. A size that does not contain the index never does.)
            let mut q = p.clone();
            q.tree_size = i as u64;
            assert!(!q.verify(&l[i], &root), "n={n} i={i} size below index");
            for k in 0..p.path.len() {
                let mut q = p.clone();
                q.path[k][0] ^= 1;
                assert!(!q.verify(&l[i], &root), "n={n} i={i} flipped {k}");
                let mut q = p.clone();
                q.path.remove(k);
                assert!(!q.verify(&l[i], &root), "n={n} i={i} removed {k}");
            }
            let mut q = p.clone();
            q.path.push(root);
            assert!(!q.verify(&l[i], &root), "n={n} i={i} extra hash");
        }
        assert!(merkle::inclusion_proof(&l, n as u64).is_none());
    }
}

#[test]
fn consistency_proofs_verify_for_all_sizes_and_altered_ones_fail() {
    let all = leaves(40);
    for n in 1..=40usize {
        let l = &all[..n];
        let new_root = merkle::root(l);
        for m in 0..=n {
            let old_root = merkle::root(&l[..m]);
            let p = merkle::consistency_proof(l, m as u64).expect("in range");
            assert!(p.verify(&old_root, &new_root), "m={m} n={n}");
            if m > 0 && m < n {
                assert!(
                    !p.verify(&new_root, &new_root),
                    "m={m} n={n} wrong old root"
                );
                assert!(
                    !p.verify(&old_root, &old_root),
                    "m={m} n={n} wrong new root"
                );
                for k in 0..p.path.len() {
                    let mut q = p.clone();
                    q.path[k][31] ^= 0x80;
                    assert!(!q.verify(&old_root, &new_root), "m={m} n={n} flipped {k}");
                    let mut q = p.clone();
                    q.path.remove(k);
                    assert!(!q.verify(&old_root, &new_root), "m={m} n={n} removed {k}");
                }
                let mut q = p.clone();
                q.old_size -= 1;
                assert!(!q.verify(&old_root, &new_root), "m={m} n={n} other size");
                let mut q = p.clone();
                q.path.push(old_root);
                assert!(!q.verify(&old_root, &new_root), "m={m} n={n} extra hash");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Appending, reading, checkpoints.

#[test]
fn appends_reads_and_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let log = open(&dir, opts(1000));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "log directory mode {mode:o}");
    }
    for i in 0..30 {
        assert_eq!(log.append_blocking(entry(i)).expect("append"), i);
    }
    assert_eq!(log.len(), 30);

    let all = log.records(&RecordFilter::default()).expect("records");
    assert_eq!(all.len(), 30);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.sequence, i as u64);
        assert_eq!(r.entry, entry(i as u64));
        let prev = if i == 0 {
            [0; 32]
        } else {
            all[i - 1].leaf_hash()
        };
        assert_eq!(r.prev_hash, prev);
    }
    assert!(all.windows(2).all(|w| w[0].unix_ms <= w[1].unix_ms));

    let by = |f: RecordFilter| -> Vec<u64> {
        log.records(&f)
            .expect("records")
            .iter()
            .map(|r| r.sequence)
            .collect()
    };
    assert_eq!(
        by(RecordFilter {
            principal: Some("analyst1".into()),
            project: Some("P2".into()),
            ..RecordFilter::default()
        }),
        vec![1, 7, 13, 19, 25]
    );
    assert_eq!(
        by(RecordFilter {
            outcome: Some(OutcomeKind::Refused),
            limit: Some(3),
            after_sequence: Some(4),
            ..RecordFilter::default()
        }),
        vec![7, 10, 13]
    );
    let t = all[10].unix_ms;
    assert_eq!(
        by(RecordFilter {
            from_unix_ms: Some(t),
            to_unix_ms: Some(all[13].unix_ms),
            ..RecordFilter::default()
        }),
        vec![10, 11, 12]
    );
    assert_eq!(
        by(RecordFilter {
            after_sequence: Some(28),
            ..RecordFilter::default()
        }),
        vec![29]
    );

    let json = all[1].to_json();
    assert_eq!(json["kind"], "query-completed");
    assert_eq!(json["outcome"], "refused");
    assert_eq!(json["rule_id"], "R2-min-max");

    log.close().expect("close");
    let s = verify_log(&dir, &public()).expect("verify");
    assert_eq!((s.records, s.checkpoints, s.segments), (30, 1, 1));
    assert_eq!(s.unsigned_records, 0);
    let shown = s.to_string();
    assert!(shown.contains("records:     30"), "{shown}");
    assert!(shown.contains("2023-11-14T22:13:20"), "{shown}");
}

#[test]
fn checkpoints_every_n_records_and_at_close() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let log = open(dir, opts(5));
    for i in 0..12 {
        log.append_blocking(entry(i)).expect("append");
    }
    let sizes = |cps: Vec<Checkpoint>| cps.iter().map(|c| c.tree_size).collect::<Vec<_>>();
    assert_eq!(sizes(log.checkpoints().expect("checkpoints")), vec![5, 10]);
    let forced = log.checkpoint().expect("checkpoint");
    assert_eq!(forced.tree_size, 12);
    assert_eq!(forced.root, log.root(12).expect("root"));
    log.append_blocking(entry(12)).expect("append");
    log.close().expect("close");

    let s = verify_log(dir, &public()).expect("verify");
    assert_eq!((s.records, s.checkpoints, s.unsigned_records), (13, 4, 0));
    let log = open(dir, opts(5));
    let cps = log.checkpoints().expect("checkpoints");
    assert_eq!(sizes(cps.clone()), vec![5, 10, 12, 13]);
    for c in &cps {
        assert!(c.verify(&public()));
        assert_eq!(c.root, log.root(c.tree_size).expect("root"));
    }
    // Closing again with nothing new adds no checkpoint.
    log.close().expect("close");
    assert_eq!(verify_log(dir, &public()).expect("verify").checkpoints, 4);
}

#[test]
fn checkpoints_on_a_timer_while_records_are_unsigned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = opts(1000);
    o.checkpoint_interval = Duration::from_millis(20);
    let log = open(tmp.path(), o);
    log.append_blocking(entry(0)).expect("append");
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.checkpoints().expect("checkpoints").is_empty() {
        assert!(Instant::now() < deadline, "no timed checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    let fsyncs = log.fsyncs();
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(log.fsyncs(), fsyncs, "an idle log keeps checkpointing");
    assert_eq!(log.checkpoints().expect("checkpoints").len(), 1);
}

#[test]
fn proofs_from_the_log_verify_against_signed_checkpoints() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open(tmp.path(), opts(7));
    for i in 0..23 {
        log.append_blocking(entry(i)).expect("append");
    }
    let last = log.checkpoint().expect("checkpoint");
    let cps = log.checkpoints().expect("checkpoints");
    assert_eq!(cps.len(), 4);
    let records = log.records(&RecordFilter::default()).expect("records");
    for cp in &cps {
        for r in &records[..cp.tree_size as usize] {
            let p = log
                .inclusion_proof(r.sequence, cp.tree_size)
                .expect("inclusion proof");
            assert!(p.verify(&r.leaf_hash(), &cp.root), "seq {}", r.sequence);
            assert!(!p.verify(&records[0].leaf_hash(), &cp.root) || r.sequence == 0);
        }
    }
    for w in cps.windows(2) {
        let p = log
            .consistency_proof(w[0].tree_size, w[1].tree_size)
            .expect("consistency proof");
        assert!(p.verify(&w[0].root, &w[1].root));
    }
    assert!(matches!(
        log.inclusion_proof(23, 23),
        Err(AuditError::OutOfRange(_))
    ));
    assert!(matches!(
        log.inclusion_proof(0, last.tree_size + 1),
        Err(AuditError::OutOfRange(_))
    ));
}

#[test]
fn records_batch_has_the_documented_schema() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open(tmp.path(), opts(1000));
    for i in 0..4 {
        log.append_blocking(entry(i)).expect("append");
    }
    let records = log.records(&RecordFilter::default()).expect("records");
    let batch = records_batch(&records).expect("batch");
    assert_eq!(batch.num_rows(), 4);
    assert_eq!(batch.schema(), records_schema());
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names.join(","),
        "sequence,time,kind,principal,role,project,purpose,request_id,statement,plan_hash,\
         tables_read,columns_read,opt_out_filters,rows_scanned,rows_returned,rows_suppressed,\
         rules_applied,budget_spent,budget_remaining,result_hash,outcome,rule_id,\
         error_category,duration_ms,detail,prev_hash,leaf_hash"
    );
    let shown = datafusion::arrow::util::pretty::pretty_format_batches(&[batch])
        .expect("format")
        .to_string();
    assert!(shown.contains("query-completed"), "{shown}");
    assert!(shown.contains("R2-min-max"), "{shown}");
    assert!(shown.contains("2023-11-14T22:13:20"), "{shown}");
}

#[test]
fn segments_roll_over_and_sort() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut o = opts(10);
    o.segment_max_bytes = 2048;
    let log = open(dir, o.clone());
    for i in 0..40 {
        log.append_blocking(entry(i)).expect("append");
    }
    assert_eq!(
        log.records(&RecordFilter::default())
            .expect("records")
            .len(),
        40
    );
    assert_eq!(
        log.records(&RecordFilter {
            after_sequence: Some(30),
            ..RecordFilter::default()
        })
        .expect("records")
        .len(),
        9
    );
    log.close().expect("close");
    let s = verify_log(dir, &public()).expect("verify");
    assert!(s.segments > 5, "{s}");
    // Every segment is named by its first sequence number and stays under the limit.
    let mut first = 0;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("segment-"))
        .collect();
    names.sort();
    for n in &names {
        assert_eq!(*n, segment_name(first));
        let bytes = read(&dir.join(n));
        assert!(bytes.len() <= 2048);
        first += frames(&bytes).len() as u64;
    }
    assert_eq!(first, 40);
    let log = open(dir, o);
    assert_eq!(log.append_blocking(entry(40)).expect("append"), 40);
    log.close().expect("close");
    assert_eq!(verify_log(dir, &public()).expect("verify").records, 41);
}

#[test]
fn time_filters_skip_old_segments_but_miss_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Times step by 1 ms every 7 readings, so equal times straddle segment boundaries.
    let ticks = Arc::new(AtomicI64::new(0));
    let mut o = opts(1000);
    o.segment_max_bytes = 1500;
    o.clock = Arc::new(move || T0 + ticks.fetch_add(1, Ordering::SeqCst) / 7);
    let log = open(tmp.path(), o);
    for i in 0..60 {
        log.append_blocking(entry(i)).expect("append");
    }
    let all = log.records(&RecordFilter::default()).expect("records");
    for t in T0 - 1..=all[59].unix_ms + 1 {
        let got: Vec<u64> = log
            .records(&RecordFilter {
                from_unix_ms: Some(t),
                ..RecordFilter::default()
            })
            .expect("records")
            .iter()
            .map(|r| r.sequence)
            .collect();
        let want: Vec<u64> = all
            .iter()
            .filter(|r| r.unix_ms >= t)
            .map(|r| r.sequence)
            .collect();
        assert_eq!(got, want, "from {t}");
    }
    log.close().expect("close");
    assert!(verify_log(tmp.path(), &public()).expect("verify").segments > 10);
}

#[test]
fn a_second_writer_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open(tmp.path(), opts(1000));
    assert!(matches!(
        AuditLog::open(tmp.path(), key(), opts(1000)),
        Err(AuditError::Locked { .. })
    ));
    drop(log);
    let (again, _) = AuditLog::open(tmp.path(), key(), opts(1000)).expect("reopen");
    again.close().expect("close");
}

// ---------------------------------------------------------------------------------------------
// Group commit.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_across_concurrent_appenders() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(tmp.path(), opts(1000)));
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                seqs.push(log.append(entry(t * 50 + i)).await.expect("append"));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.expect("task");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "a task's records out of order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (0..1600).collect::<Vec<u64>>());
    let fsyncs = log.fsyncs();
    assert!(
        fsyncs < 1600,
        "{fsyncs} fsyncs for 1600 records: no group commit"
    );
    let log = Arc::into_inner(log).expect("last handle");
    log.close().expect("close");
    let s = verify_log(tmp.path(), &public()).expect("verify");
    assert_eq!(s.records, 1600);
    println!("group commit: 1600 records, {fsyncs} fsyncs");
}

// ---------------------------------------------------------------------------------------------
// Tampering: verify_log fails and says where.

#[test]
fn tamper_flipped_byte_is_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 10, 4);
    let path = seg0(dir);
    let mut bytes = read(&path);
    let (start, end) = frames(&bytes)[3];
    bytes[(start + end) / 2] ^= 0x01;
    write(&path, &bytes);
    let e = verify_fails(dir);
    assert_names(&e, &path, Some(start as u64));
    assert!(matches!(e.problem(), Problem::BadFrame { .. }), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[test]
fn tamper_edited_record_with_recomputed_crc_breaks_the_chain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 10, 4);
    let path = seg0(dir);
    let bytes = read(&path);
    let f = frames(&bytes);
    // Record 5: checkpoints cover 4 and 8 records, so the chain is what catches it first.
    let (start, end) = f[5];
    let mut record = Record::decode(&bytes[start + 8..end]).expect("decode");
    record.entry.rows_returned = 1_000_000;
    let mut edited = bytes[..start].to_vec();
    edited.extend(reframe(&record.encode()));
    edited.extend_from_slice(&bytes[end..]);
    write(&path, &edited);
    let e = verify_fails(dir);
    // Record 6 no longer chains to record 5.
    assert_names(&e, &path, Some(f[6].0 as u64));
    assert_eq!(e.sequence(), Some(6));
    assert!(matches!(e.problem(), Problem::ChainBroken { .. }), "{e}");
    assert!(e.to_string().contains("sequence 6"), "{e}");
}

#[test]
fn tamper_edited_last_record_is_caught_by_the_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 10, 4);
    let path = seg0(dir);
    let bytes = read(&path);
    let (start, end) = *frames(&bytes).last().expect("frames");
    let mut record = Record::decode(&bytes[start + 8..end]).expect("decode");
    record.entry.principal = "someone-else".into();
    let mut edited = bytes[..start].to_vec();
    edited.extend(reframe(&record.encode()));
    write(&path, &edited);
    let e = verify_fails(dir);
    assert_names(&e, &dir.join(CHECKPOINTS_FILE), None);
    assert!(matches!(e.problem(), Problem::CheckpointRoot { .. }), "{e}");
}

#[test]
fn tamper_deleted_record_is_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 10, 4);
    let path = seg0(dir);
    let bytes = read(&path);
    let f = frames(&bytes);
    let mut cut = bytes[..f[3].0].to_vec();
    cut.extend_from_slice(&bytes[f[3].1..]);
    write(&path, &cut);
    let e = verify_fails(dir);
    assert_names(&e, &path, Some(f[3].0 as u64));
    assert_eq!(e.sequence(), Some(3));
    assert!(
        matches!(
            e.problem(),
            Problem::SequenceGap {
                expected: 3,
                found: 4
            }
        ),
        "{e}"
    );
}

#[test]
fn tamper_swapped_records_are_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 10, 4);
    let path = seg0(dir);
    let bytes = read(&path);
    let f = frames(&bytes);
    let mut swapped = bytes[..f[5].0].to_vec();
    swapped.extend_from_slice(&bytes[f[6].0..f[6].1]);
    swapped.extend_from_slice(&bytes[f[5].0..f[5].1]);
    swapped.extend_from_slice(&bytes[f[6].1..]);
    write(&path, &swapped);
    let e = verify_fails(dir);
    assert_names(&e, &path, Some(f[5].0 as u64));
    assert!(e.to_string().contains("sequence 5"), "{e}");
    assert!(matches!(e.problem(), Problem::SequenceGap { .. }), "{e}");
}

#[test]
fn tamper_bytes_cut_from_the_middle_of_a_segment_are_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 10, 4);
    let path = seg0(dir);
    let bytes = read(&path);
    let f = frames(&bytes);
    for (from, len) in [(f[4].0 + 20, 30), (f[4].0 + 2, 100), (f[4].0, 5)] {
        let mut cut = bytes[..from].to_vec();
        cut.extend_from_slice(&bytes[from + len..]);
        write(&path, &cut);
        let e = verify_fails(dir);
        assert_names(&e, &path, Some(f[4].0 as u64));
        assert!(matches!(e.problem(), Problem::BadFrame { .. }), "{e}");
        assert!(e.to_string().contains("not a torn write"), "{e}");
        // And the server refuses to start on it, changing nothing.
        assert!(matches!(
            AuditLog::open(dir, key(), opts(4)),
            Err(AuditError::Corrupt(_))
        ));
        assert_eq!(read(&path), cut);
    }
}

#[test]
fn tamper_dropped_signed_records_are_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 10, 4);
    let path = seg0(dir);
    let bytes = read(&path);
    let f = frames(&bytes);
    // Whole frames removed from the end: the chain is intact, the checkpoint is not.
    write(&path, &bytes[..f[8].0]);
    let e = verify_fails(dir);
    assert_names(&e, &dir.join(CHECKPOINTS_FILE), None);
    assert!(
        matches!(
            e.problem(),
            Problem::CheckpointBeyondLog {
                tree_size: 10,
                records: 8,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        AuditLog::open(dir, key(), opts(4)),
        Err(AuditError::Corrupt(_))
    ));
}

fn replace_checkpoint(dir: &Path, index: usize, f: impl Fn(&Checkpoint) -> Checkpoint) -> u64 {
    let path = dir.join(CHECKPOINTS_FILE);
    let bytes = read(&path);
    let fr = frames(&bytes);
    let (start, end) = fr[index];
    let old = Checkpoint::from_bytes(&bytes[start + 8..end]).expect("checkpoint");
    let mut out = bytes[..start].to_vec();
    out.extend(reframe(&f(&old).to_bytes()));
    out.extend_from_slice(&bytes[end..]);
    write(&path, &out);
    start as u64
}

#[test]
fn tamper_checkpoint_signed_by_another_key_is_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 10, 4);
    let other = SigningKey::from_bytes(&[8; 32]);
    let offset = replace_checkpoint(dir, 1, |c| {
        Checkpoint::sign(c.tree_size, c.root, c.unix_ms, &other)
    });
    let e = verify_fails(dir);
    assert_names(&e, &dir.join(CHECKPOINTS_FILE), Some(offset));
    assert!(
        matches!(e.problem(), Problem::CheckpointSignature { index: 1, .. }),
        "{e}"
    );
}

#[test]
fn tamper_checkpoint_with_a_wrong_root_is_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 10, 4);
    // Even signed with the real key (a stolen key rewriting one checkpoint).
    let offset = replace_checkpoint(dir, 1, |c| {
        Checkpoint::sign(c.tree_size, [0xaa; 32], c.unix_ms, &key())
    });
    let e = verify_fails(dir);
    assert_names(&e, &dir.join(CHECKPOINTS_FILE), Some(offset));
    assert!(
        matches!(e.problem(), Problem::CheckpointRoot { index: 1, .. }),
        "{e}"
    );
}

#[test]
fn tamper_removed_segment_is_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut o = opts(1000);
    o.segment_max_bytes = 2048;
    let log = open(dir, o);
    for i in 0..40 {
        log.append_blocking(entry(i)).expect("append");
    }
    log.close().expect("close");
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("segment-"))
        .collect();
    names.sort();
    std::fs::remove_file(&names[1]).expect("remove");
    let e = verify_fails(dir);
    assert_names(&e, &names[2], None);
    assert!(
        matches!(e.problem(), Problem::SegmentOutOfPlace { .. }),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Crashes: a torn tail is dropped and reported, everything else is refused.

/// A crash image: a log with `signed` records under a checkpoint and `unsigned` after it,
/// copied while the writer was still running (so no shutdown checkpoint).
fn crash_image(dir: &Path, signed: u64, unsigned: u64) {
    let live = dir.with_extension("live");
    let log = open(&live, opts(1000));
    for i in 0..signed {
        log.append_blocking(entry(i)).expect("append");
    }
    log.checkpoint().expect("checkpoint");
    for i in signed..signed + unsigned {
        log.append_blocking(entry(i)).expect("append");
    }
    copy_dir(&live, dir);
    log.close().expect("close");
}

#[test]
fn crash_torn_last_frame_at_every_offset_is_recovered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("image");
    crash_image(&image, 6, 3);
    let bytes = read(&seg0(&image));
    let (start, end) = *frames(&bytes).last().expect("frames");
    // Every cut inside the last frame, a flipped byte in it, and zeros after it.
    let mut cases: Vec<Vec<u8>> = (start + 1..end).map(|cut| bytes[..cut].to_vec()).collect();
    let mut flipped = bytes.clone();
    flipped[end - 1] ^= 0xff;
    cases.push(flipped);
    let mut zeroed = bytes[..start].to_vec();
    zeroed.extend(std::iter::repeat_n(0u8, 300));
    cases.push(zeroed);
    for (n, torn) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case{n}"));
        copy_dir(&image, &dir);
        write(&seg0(&dir), torn);
        // verify_log accepts the crashed log as it is, reporting the tail.
        let s = verify_log(&dir, &public()).expect("verify crashed log");
        assert_eq!(
            (s.records, s.unsigned_records, s.torn.len()),
            (8, 2, 1),
            "{s}"
        );
        let (log, recovery) = AuditLog::open(&dir, key(), opts(1000)).expect("open crashed log");
        let recovery = recovery.expect("a recovery");
        assert_eq!(recovery.sequence, 8);
        assert_eq!(recovery.truncated.len(), 1);
        assert_eq!(recovery.truncated[0].offset, start as u64);
        assert_eq!(
            recovery.truncated[0].bytes,
            (torn.len() - start) as u64,
            "case {n}"
        );
        let rec = log
            .records(&RecordFilter {
                kind: Some(Kind::Recovery),
                ..RecordFilter::default()
            })
            .expect("records");
        assert_eq!(rec.len(), 1);
        assert_eq!(
            rec[0].entry.detail("bytes_dropped"),
            Some((torn.len() - start).to_string().as_str())
        );
        assert_eq!(log.append_blocking(entry(100)).expect("append"), 9);
        log.close().expect("close");
        let s = verify_log(&dir, &public()).expect("verify recovered log");
        assert_eq!((s.records, s.unsigned_records, s.torn.len()), (10, 0, 0));
    }
}

#[test]
fn crash_torn_checkpoint_is_recovered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("image");
    crash_image(&dir, 6, 3);
    let path = dir.join(CHECKPOINTS_FILE);
    let bytes = read(&path);
    write(&path, &bytes[..bytes.len() - 10]);
    let (log, recovery) = AuditLog::open(&dir, key(), opts(1000)).expect("open");
    let recovery = recovery.expect("a recovery");
    assert_eq!(recovery.truncated[0].file, path);
    assert_eq!(recovery.truncated[0].offset, 0);
    log.close().expect("close");
    let s = verify_log(&dir, &public()).expect("verify");
    assert_eq!((s.records, s.checkpoints), (10, 1));
}

#[test]
fn crash_never_drops_signed_records() {
    // A torn last frame that a checkpoint covers is not a crash's unacknowledged write.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    sealed_log(dir, 5, 1000);
    let path = seg0(dir);
    let bytes = read(&path);
    write(&path, &bytes[..bytes.len() - 3]);
    let e = verify_fails(dir);
    assert!(
        matches!(e.problem(), Problem::CheckpointBeyondLog { .. }),
        "{e}"
    );
    assert!(matches!(
        AuditLog::open(dir, key(), opts(1000)),
        Err(AuditError::Corrupt(_))
    ));
}

#[test]
fn crash_corruption_inside_a_segment_fails_open_without_repair() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("image");
    crash_image(&dir, 2, 6);
    let path = seg0(&dir);
    let mut bytes = read(&path);
    let f = frames(&bytes);
    bytes[f[4].0 + 12] ^= 0x20;
    write(&path, &bytes);
    let err = AuditLog::open(&dir, key(), opts(1000)).expect_err("open must fail");
    let AuditError::Corrupt(e) = &err else {
        panic!("wrong error: {err}");
    };
    assert_names(e, &path, Some(f[4].0 as u64));
    assert!(err.to_string().contains("not a torn write"), "{err}");
    assert_eq!(read(&path), bytes, "open changed a corrupt log");

    // A length that runs past the end of the file, hiding valid frames after it, is not a
    // torn tail either.
    let mut bytes = read(&seg0(&tmp.path().join("image.live")));
    let f = frames(&bytes);
    let (start, _) = f[f.len() - 3];
    bytes[start + 1] = 0x10; // length += 1 MiB
    write(&path, &bytes);
    let err = AuditLog::open(&dir, key(), opts(1000)).expect_err("open must fail");
    assert!(err.to_string().contains("runs past the end"), "{err}");
}

/// Not a test on its own: the child process of `crash_kill_mid_append_recovers`, appending
/// from four threads until it is killed.
#[test]
#[ignore = "helper process for crash_kill_mid_append_recovers"]
fn kill_helper_appends_forever() {
    let Some(dir) = std::env::var_os("FIVESAFES_AUDIT_KILL_DIR") else {
        return;
    };
    let mut o = opts(50);
    o.segment_max_bytes = 16 << 10;
    let (log, _) = AuditLog::open(Path::new(&dir), key(), o).expect("open");
    let log = Arc::new(log);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    log.append_blocking(entry(i)).expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
}

fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn crash_kill_mid_append_recovers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let exe = std::env::current_exe().expect("current exe");
    let mut records = 0;
    for round in 0..3 {
        let start = log_bytes(&dir);
        let mut child = Command::new(&exe)
            .args([
                "audit::kill_helper_appends_forever",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("FIVESAFES_AUDIT_KILL_DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn helper");
        let deadline = Instant::now() + Duration::from_secs(60);
        while log_bytes(&dir) < start + (48 << 10) {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("helper exited early: {status}");
            }
            assert!(Instant::now() < deadline, "helper made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");

        let (log, recovery) = AuditLog::open(&dir, key(), opts(50)).expect("open after kill");
        assert!(log.len() > records, "round {round}: no progress");
        let seq = log.append_blocking(entry(0)).expect("append after kill");
        records = seq + 1;
        log.close().expect("close");
        let s = verify_log(&dir, &public()).expect("verify after kill");
        assert_eq!(s.records, records);
        assert_eq!(s.unsigned_records, 0);
        println!("round {round}: {s}\nrecovery: {recovery:?}");
    }
}

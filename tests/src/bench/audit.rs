//! The cost of the audit log (issue 4: throughput with and without it on the same workload).
//!
//! The server has no way to run without its audit log, and gets none here: a server that
//! could be configured to skip audit records would be a way to release results untraced.
//! The benchmark instead measures, in the same process and over the same server state:
//!
//! 1. **with audit**: workers calling the server's own run path
//!    ([`fivesafes_server::run::run_sql`]) in a loop: policy, budget, `query-started` record
//!    (durable), execution, encoding, result hash, `query-completed` record (durable);
//! 2. **without audit**: the same workers calling [`run_without_audit`], a copy of that path
//!    in this benchmark crate that does every step except the two appends. It exists only
//!    here; nothing in the server can call it.
//!
//! and, separately, the raw append rate of an [`AuditLog`] in a scratch directory: one
//! appender (each append waits for its own `fdatasync`) and many concurrent appenders
//! (group commit: one sync covers every record queued meanwhile).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use fivesafes_engine::keys;
use fivesafes_policies::query;
use fivesafes_server::audit::{AuditLog, AuditOptions, Entry, Kind, Outcome};
use fivesafes_server::error::status_of_query_error;
use fivesafes_server::run::{self, META_RULES, META_SUPPRESSION, SUPPRESSION_NOTE};
use fivesafes_server::state::{Caller, State};
use futures::TryStreamExt;
use serde::Serialize;
use tonic::Status;

/// The server's run path for a query in a data project minus the two audit appends: plan
/// and protect, charge the budget, wait for a query slot, execute under the timeout, attach
/// the result metadata, encode as Flight data and hash. Returns the rows released.
/// Benchmark only: it is the control of the audit measurement.
pub async fn run_without_audit(state: &State, caller: &Caller, sql: &str) -> Result<u64, Status> {
    let request_id = state.request_id();
    let cx = state.context(&caller.project).await?;
    let prepared = cx
        .prepare(sql)
        .await
        .map_err(|e| status_of_query_error(&e, request_id))?;
    state.budgets.charge(state.today(), &caller.project)?;
    let (batches, schema) = {
        let _permit = state.slot().await?;
        let timeout = Duration::from_secs(state.config.limits.query_timeout_secs);
        let work = async {
            let physical = prepared.physical_plan(&cx).await?;
            let schema = physical.schema();
            let batches: Vec<RecordBatch> = query::execute(&physical, &cx)?.try_collect().await?;
            let _scanned = query::rows_scanned(&physical);
            Ok::<_, query::QueryError>((batches, schema))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(status_of_query_error(&e, request_id)),
            Err(_) => return Err(Status::deadline_exceeded("timeout")),
        }
    };
    let _suppressed = prepared.rows_suppressed();
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let mut meta: HashMap<String, String> = schema.metadata().clone();
    if !prepared.rules_applied.is_empty() {
        meta.insert(META_SUPPRESSION.into(), SUPPRESSION_NOTE.into());
    }
    meta.insert(META_RULES.into(), prepared.rules_applied.join(","));
    let schema: SchemaRef = Arc::new(Schema::new_with_metadata(schema.fields().clone(), meta));
    let batches: Vec<RecordBatch> = batches
        .into_iter()
        .map(|b| b.with_schema(Arc::clone(&schema)))
        .collect::<Result<_, _>>()
        .map_err(|e| Status::internal(e.to_string()))?;
    let messages = run::encode(schema, batches)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let _hash = run::result_hash(&messages);
    Ok(rows)
}

/// Throughput of one closed-loop run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Queries completed.
    pub queries: u64,
    /// Queries that failed.
    pub errors: u64,
    /// Wall time, seconds.
    pub secs: f64,
    /// Completed queries per second.
    pub qps: f64,
}

/// `workers` tasks run `queries` round robin through the server's run path (`audited`) or
/// through [`run_without_audit`] for `secs` seconds.
pub async fn throughput(
    state: &Arc<State>,
    caller: &Caller,
    queries: &'static [&'static str],
    workers: usize,
    secs: f64,
    audited: bool,
) -> Result<Throughput> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let (state, caller) = (Arc::clone(state), caller.clone());
        let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < end {
                let sql = queries[i % queries.len()];
                let ok = if audited {
                    run::run_sql(&state, &caller, sql).await.is_ok()
                } else {
                    run_without_audit(&state, &caller, sql).await.is_ok()
                };
                let counter = if ok { &done } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let queries = done.load(Ordering::Relaxed);
    Ok(Throughput {
        queries,
        errors: failed.load(Ordering::Relaxed),
        secs,
        qps: queries as f64 / secs,
    })
}

/// The raw append rate of the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AppendRate {
    /// Concurrent appenders.
    pub appenders: usize,
    /// Records appended (each durable before its append returned).
    pub records: u64,
    /// Records per second.
    pub per_sec: f64,
    /// Mean latency of one append, ms.
    pub mean_latency_ms: f64,
    /// `fdatasync` calls per record (1 without group commit).
    pub syncs_per_record: f64,
}

/// A record the size of a real `query-completed` record (no data values, as always).
fn sample_entry(i: u64) -> Entry {
    Entry {
        kind: Kind::QueryCompleted,
        principal: "analyst".into(),
        role: "analyst".into(),
        project: "diabetes-research".into(),
        purpose: "Type 2 diabetes outcomes and hospital use".into(),
        request_id: i,
        statement: super::queries::LOAD_MIX[(i % 4) as usize].into(),
        plan_hash: "0".repeat(64),
        tables_read: vec!["patients".into()],
        columns_read: vec!["patients.patient_id".into(), "patients.sex".into()],
        opt_out_filters: vec!["national_opt_out: only persons recorded as not opted out".into()],
        rows_scanned: 1_000_000,
        rows_returned: 3,
        rows_suppressed: 0,
        rules_applied: vec!["FS-3".into(), "FS-4".into(), "FS-5".into()],
        budget_spent: 1,
        budget_remaining: 499,
        result_hash: "f".repeat(64),
        outcome: Outcome::Ok,
        duration_ms: 12,
        detail: Vec::new(),
    }
}

/// Appends from `appenders` concurrent tasks for `secs` seconds to a fresh log in `dir`
/// (removed first), signed with the audit key in `keys_dir`.
pub async fn append_rate(
    dir: &Path,
    keys_dir: &Path,
    appenders: usize,
    secs: f64,
) -> Result<AppendRate> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let signing = keys::load_audit_signing_key(keys_dir)?;
    let (log, _) = AuditLog::open(dir, signing, AuditOptions::default())?;
    let log = Arc::new(log);
    let syncs_before = log.fsyncs();
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::with_capacity(appenders);
    for a in 0..appenders {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut waited = Duration::ZERO;
            while Instant::now() < end {
                let t = Instant::now();
                log.append(sample_entry(a as u64 * 1_000_000 + n)).await?;
                waited += t.elapsed();
                n += 1;
            }
            Ok::<_, anyhow::Error>((n, waited))
        }));
    }
    let (mut records, mut waited) = (0u64, Duration::ZERO);
    for t in tasks {
        let (n, w) = t.await??;
        records += n;
        waited += w;
    }
    let secs = started.elapsed().as_secs_f64();
    let syncs = log.fsyncs() - syncs_before;
    if let Ok(log) = Arc::try_unwrap(log) {
        log.close()?;
    }
    std::fs::remove_dir_all(dir)?;
    Ok(AppendRate {
        appenders,
        records,
        per_sec: records as f64 / secs,
        mean_latency_ms: super::ms(waited) / records.max(1) as f64,
        syncs_per_record: syncs as f64 / records.max(1) as f64,
    })
}

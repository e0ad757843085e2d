//! Running one SQL statement for a caller: policy checks, budget, audit records, execution
//! under the server's limits, and the encoded result.
//!
//! The whole result is computed before anything is released: it is a small set of protected
//! cells, and computing it first means the result schema (carrying which output rules
//! applied) is known when `GetFlightInfo` answers, and the audit
//! record holding the hash of exactly the bytes the client will receive is durable before
//! the first byte leaves.
//!
//! Audit records per statement: `query-refused` (refused or invalid; nothing ran), or
//! `query-started` (before execution) followed by `query-completed` (outcome, rows,
//! suppressed cells, result hash, duration).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::datasource::MemTable;
use fivesafes_policies::query::{self, QueryError};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::audit::{self, Entry, Kind, Outcome};
use crate::error::{error_category, status_of_query_error};
use crate::state::{Caller, State};

/// Schema metadata key: how suppression was applied. The NUMBER of suppressed cells is not
/// released: for a query whose only cell isolates a few persons it would say whether such
/// persons exist (1 suppressed cell versus none), so it goes to the audit log only.
pub const META_SUPPRESSION: &str = "fivesafes.suppression";

/// The value of [`META_SUPPRESSION`] on protected results.
pub const SUPPRESSION_NOTE: &str = "cells backed by 7 or fewer persons, or fewer than the \
    cell's noisy threshold, are omitted; how many were omitted is recorded in the audit log \
    and not released";
/// Schema metadata key: comma-separated ids of the output-control rules applied.
pub const META_RULES: &str = "fivesafes.rules_applied";
/// Schema metadata key: the audit sequence number of the `query-completed` record.
pub const META_AUDIT: &str = "fivesafes.audit_sequence";

/// A released result, encoded and recorded.
#[derive(Debug)]
pub struct Released {
    /// The schema of every message (with the metadata above).
    pub schema: SchemaRef,
    /// The Flight data messages, in order: schema, then batches.
    pub messages: Vec<FlightData>,
    /// Rows released.
    pub rows: u64,
    /// Cells suppressed.
    pub suppressed: u64,
    /// Rules applied.
    pub rules: Vec<String>,
    /// Audit sequence of the `query-completed` record.
    pub audit_sequence: u64,
}

/// SHA-256 (hex) of Flight data messages as streamed: for each message in order, the
/// big-endian u64 length of its IPC header, the header, the u64 length of its body, the
/// body. A client can recompute it from the messages it received.
pub fn result_hash(messages: &[FlightData]) -> String {
    let mut h = Sha256::new();
    for m in messages {
        h.update((m.data_header.len() as u64).to_be_bytes());
        h.update(&m.data_header);
        h.update((m.data_body.len() as u64).to_be_bytes());
        h.update(&m.data_body);
    }
    hex::encode(h.finalize())
}

fn base_entry(caller: &Caller, request_id: u64, sql: &str) -> Entry {
    Entry {
        principal: caller.principal.clone(),
        role: caller.role.as_str().into(),
        project: caller.project.id.clone(),
        purpose: caller.project.purpose.clone(),
        request_id,
        statement: sql.into(),
        ..Entry::default()
    }
}

/// Records a statement refused before it ran (policy refusal, invalid SQL, forbidden
/// request kind) and returns the status for the client.
pub async fn refuse(
    state: &State,
    caller: &Caller,
    request_id: u64,
    sql: &str,
    outcome: Outcome,
    status: Status,
) -> Status {
    let entry = Entry {
        kind: Kind::QueryRefused,
        outcome,
        ..base_entry(caller, request_id, sql)
    };
    match state.append(entry).await {
        Ok(_) => status,
        Err(s) => s,
    }
}

/// Plans `sql` in the audit project's session: the statement gate, then the bound on the
/// strings it computes (a string grown past memory ends the server process).
async fn audit_plan(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Result<datafusion::logical_expr::LogicalPlan, QueryError> {
    let plan = fivesafes_policies::gate::plan_query(ctx, sql).await?;
    fivesafes_policies::growth::check(&plan)?;
    Ok(plan)
}

/// Checks a statement without running it (for `CreatePreparedStatement`): returns the
/// schema its result will have. A refusal is recorded like any refused statement.
pub async fn check(state: &State, caller: &Caller, sql: &str) -> Result<SchemaRef, Status> {
    let request_id = state.request_id();
    if caller.in_audit_project() {
        let ctx = audit_session(state)?;
        return match audit_plan(&ctx, sql).await {
            Ok(plan) => Ok(Arc::new(plan.schema().as_arrow().clone())),
            Err(e) => Err(refuse_query_error(state, caller, request_id, sql, &e).await),
        };
    }
    let cx = state.context(&caller.project).await?;
    match cx.prepare(sql).await {
        Ok(p) => Ok(Arc::new(p.plan.schema().as_arrow().clone())),
        Err(e) => Err(refuse_query_error(state, caller, request_id, sql, &e).await),
    }
}

async fn refuse_query_error(
    state: &State,
    caller: &Caller,
    request_id: u64,
    sql: &str,
    e: &QueryError,
) -> Status {
    let outcome = match e {
        QueryError::Refused(r) => Outcome::Refused {
            rule: r.rule.id().into(),
        },
        other => Outcome::Error {
            category: error_category(other).into(),
        },
    };
    let status = status_of_query_error(e, request_id);
    refuse(state, caller, request_id, sql, outcome, status).await
}

/// What ran, for the `query-started` record.
struct Plan {
    plan_hash: String,
    tables: Vec<String>,
    columns: Vec<String>,
    opt_out: Vec<String>,
    rules: Vec<String>,
}

/// Runs `sql` for `caller` and returns the encoded, recorded result.
pub async fn run_sql(state: &State, caller: &Caller, sql: &str) -> Result<Released, Status> {
    let request_id = state.request_id();
    let started = Instant::now();

    // Plan and protect (nothing runs yet).
    enum Ready {
        Data(
            Arc<fivesafes_policies::query::ProjectContext>,
            query::Prepared,
        ),
        Audit(
            datafusion::prelude::SessionContext,
            datafusion::logical_expr::LogicalPlan,
        ),
    }
    let (ready, plan) = if caller.in_audit_project() {
        let ctx = audit_session(state)?;
        match audit_plan(&ctx, sql).await {
            Ok(lp) => {
                let plan = Plan {
                    plan_hash: hex::encode(Sha256::digest(lp.display_indent_schema().to_string())),
                    tables: vec![AUDIT_TABLE.into()],
                    columns: Vec::new(),
                    opt_out: Vec::new(),
                    rules: Vec::new(),
                };
                (Ready::Audit(ctx, lp), plan)
            }
            Err(e) => {
                return Err(refuse_query_error(state, caller, request_id, sql, &e).await);
            }
        }
    } else {
        let cx = state.context(&caller.project).await?;
        match cx.prepare(sql).await {
            Ok(p) => {
                let plan = Plan {
                    plan_hash: p.plan_hash.clone(),
                    tables: p.tables_read.clone(),
                    columns: p.columns_read.clone(),
                    opt_out: p.opt_out_filters.clone(),
                    rules: p.rules_applied.clone(),
                };
                (Ready::Data(cx, p), plan)
            }
            Err(e) => return Err(refuse_query_error(state, caller, request_id, sql, &e).await),
        }
    };

    // Budget.
    let (_, remaining) = match state.budgets.charge(state.today(), &caller.project) {
        Ok(b) => b,
        Err(status) => {
            let outcome = Outcome::Refused {
                rule: "FS-8".into(),
            };
            return Err(refuse(state, caller, request_id, sql, outcome, status).await);
        }
    };

    let base = Entry {
        plan_hash: plan.plan_hash.clone(),
        tables_read: plan.tables.clone(),
        columns_read: plan.columns.clone(),
        opt_out_filters: plan.opt_out.clone(),
        rules_applied: plan.rules.clone(),
        budget_spent: 1,
        budget_remaining: remaining,
        ..base_entry(caller, request_id, sql)
    };
    state
        .append(Entry {
            kind: Kind::QueryStarted,
            ..base.clone()
        })
        .await?;

    // Execute under the limits.
    let permit = state.slot().await;
    let timeout = Duration::from_secs(state.config.limits.query_timeout_secs);
    let outcome: Result<(Vec<RecordBatch>, SchemaRef, u64, u64), Status> = match permit {
        Err(s) => Err(s),
        Ok(_permit) => {
            let work = async {
                match &ready {
                    Ready::Data(cx, p) => {
                        let physical = p.physical_plan(cx).await.map_err(|e| {
                            (error_category(&e), status_of_query_error(&e, request_id))
                        })?;
                        let schema = physical.schema();
                        let batches: Vec<RecordBatch> = query::execute(&physical, cx)
                            .map_err(|e| {
                                (error_category(&e), status_of_query_error(&e, request_id))
                            })?
                            .try_collect()
                            .await
                            .map_err(|e| {
                                let e = QueryError::Execution(e);
                                (error_category(&e), status_of_query_error(&e, request_id))
                            })?;
                        Ok((
                            batches,
                            schema,
                            p.rows_suppressed(),
                            query::rows_scanned(&physical),
                        ))
                    }
                    Ready::Audit(ctx, lp) => {
                        let df = ctx.execute_logical_plan(lp.clone()).await.map_err(|e| {
                            let e = QueryError::Execution(e);
                            (error_category(&e), status_of_query_error(&e, request_id))
                        })?;
                        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                        let batches = df.collect().await.map_err(|e| {
                            let e = QueryError::Execution(e);
                            (error_category(&e), status_of_query_error(&e, request_id))
                        })?;
                        let scanned = 0;
                        Ok((batches, schema, 0, scanned))
                    }
                }
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err((category, status))) => {
                    record_failure(state, &base, category, started).await?;
                    return Err(status);
                }
                Err(_) => {
                    record_failure(state, &base, "timeout", started).await?;
                    return Err(Status::deadline_exceeded(format!(
                        "the query ran longer than the server's limit of {} s",
                        timeout.as_secs()
                    )));
                }
            }
        }
    };
    let (batches, schema, suppressed, scanned) = match outcome {
        Ok(v) => v,
        Err(status) => {
            record_failure(state, &base, "busy", started).await?;
            return Err(status);
        }
    };

    // Encode with the metadata, hash, record, release.
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let mut meta: HashMap<String, String> = schema.metadata().clone();
    if !plan.rules.is_empty() {
        meta.insert(META_SUPPRESSION.into(), SUPPRESSION_NOTE.into());
    }
    meta.insert(META_RULES.into(), plan.rules.join(","));
    let schema: SchemaRef = Arc::new(Schema::new_with_metadata(schema.fields().clone(), meta));
    let batches: Vec<RecordBatch> = batches
        .into_iter()
        .map(|b| b.with_schema(Arc::clone(&schema)))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            tracing::error!(request_id, error = %e, "result schema");
            Status::internal(format!(
                "the query failed inside the server (request {request_id})"
            ))
        })?;
    let messages = encode(Arc::clone(&schema), batches).await.map_err(|e| {
        tracing::error!(request_id, error = %e, "encoding the result");
        Status::internal(format!(
            "the query failed inside the server (request {request_id})"
        ))
    })?;
    let hash = result_hash(&messages);
    let audit_sequence = state
        .append(Entry {
            kind: Kind::QueryCompleted,
            rows_scanned: scanned,
            rows_returned: rows,
            rows_suppressed: suppressed,
            result_hash: hash,
            outcome: Outcome::Ok,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..base
        })
        .await?;
    tracing::info!(request_id, rows, suppressed, "query released");
    Ok(Released {
        schema,
        messages,
        rows,
        suppressed,
        rules: plan.rules,
        audit_sequence,
    })
}

async fn record_failure(
    state: &State,
    base: &Entry,
    category: &str,
    started: Instant,
) -> Result<(), Status> {
    state
        .append(Entry {
            kind: Kind::QueryCompleted,
            outcome: Outcome::Error {
                category: category.into(),
            },
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..base.clone()
        })
        .await
        .map(|_| ())
}

/// Encodes batches as Flight data messages (schema first).
pub async fn encode(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Vec<FlightData>, arrow_flight::error::FlightError> {
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The name of the audit log as a table in the audit project.
pub const AUDIT_TABLE: &str = "audit_log";

/// A session whose only table is a snapshot of the audit log (for auditors' SQL).
pub fn audit_session(state: &State) -> Result<datafusion::prelude::SessionContext, Status> {
    let ctx = fivesafes_policies::view::restricted_context_in(
        Arc::clone(&state.runtime),
        &state.session_opts,
    );
    let records = state
        .audit
        .records(&audit::RecordFilter::default())
        .map_err(|e| {
            tracing::error!(error = %e, "reading the audit log");
            Status::internal("the audit log could not be read")
        })?;
    let batch = audit::records_batch(&records).map_err(|e| {
        tracing::error!(error = %e, "audit table");
        Status::internal("the audit log could not be read")
    })?;
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(|e| {
        tracing::error!(error = %e, "audit table");
        Status::internal("the audit log could not be read")
    })?;
    ctx.register_table(AUDIT_TABLE, Arc::new(table))
        .map_err(|e| {
            tracing::error!(error = %e, "audit table");
            Status::internal("the audit log could not be read")
        })?;
    Ok(ctx)
}

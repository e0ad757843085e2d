//! `fivesafes.v1.Reports`: canned reports for commissioners, run through the policy layer in
//! the caller's project, charged to its budget and recorded in the audit log (`report-run`)
//! before anything is returned.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::ipc::writer::StreamWriter;
use fivesafes_policies::reports::{
    ReportError, ReportRegistry, ReportResult, run_report, to_csv, to_html, to_png, to_svg,
    to_table_text,
};
use fivesafes_proto::v1::reports_server::{Reports, ReportsServer};
use fivesafes_proto::v1::{
    ListReportsRequest, ListReportsResponse, OutputSummary, ReportInfo, ReportParameter,
    RunReportRequest, RunReportResponse,
};
use tonic::{Request, Response, Status};

use crate::audit::{Entry, Kind, Outcome};
use crate::state::{Caller, Need, State};

/// The service.
pub struct ReportsService {
    /// Shared server state.
    pub state: Arc<State>,
    /// The report definitions.
    pub registry: Arc<ReportRegistry>,
}

/// A finished report run.
pub struct Ran {
    /// The released result.
    pub result: ReportResult,
    /// The audit sequence of the `report-run` record.
    pub audit_sequence: u64,
}

/// The rendering of a result in `format`: (bytes, media type).
pub fn render(
    ran: &ReportResult,
    registry: &ReportRegistry,
    format: &str,
) -> Result<(Vec<u8>, &'static str), Status> {
    let def = registry
        .get(&ran.report)
        .ok_or_else(|| Status::internal("report definition missing"))?;
    Ok(match format {
        "" => (Vec::new(), ""),
        "csv" => (to_csv(ran).into_bytes(), "text/csv; charset=utf-8"),
        "table" => (
            to_table_text(ran, def).into_bytes(),
            "text/plain; charset=utf-8",
        ),
        "html" => (to_html(ran, def).into_bytes(), "text/html; charset=utf-8"),
        "svg" => (to_svg(ran, def).into_bytes(), "image/svg+xml"),
        "png" => (
            to_png(ran, def).map_err(|e| {
                tracing::error!(error = %e, "png");
                Status::internal("the chart could not be rendered")
            })?,
            "image/png",
        ),
        other => {
            return Err(Status::invalid_argument(format!(
                "format {other:?} is not one of csv, table, html, svg, png"
            )));
        }
    })
}

fn report_status(e: &ReportError, request_id: u64) -> Status {
    match e {
        ReportError::UnknownReport { .. }
        | ReportError::UnknownParameter { .. }
        | ReportError::MissingParameter { .. }
        | ReportError::InvalidParameter { .. } => Status::invalid_argument(e.to_string()),
        ReportError::Query { error, .. } => crate::error::status_of_query_error(error, request_id),
        other => {
            tracing::error!(request_id, error = %other, "report failed");
            Status::internal(format!(
                "the report failed inside the server (request {request_id})"
            ))
        }
    }
}

/// Validates, runs, charges and records one report for `caller`.
pub async fn run(
    state: &State,
    registry: &ReportRegistry,
    caller: &Caller,
    name: &str,
    params: &BTreeMap<String, String>,
) -> Result<Ran, Status> {
    let request_id = state.request_id();
    let started = Instant::now();
    let statement = format!(
        "report {name} {}",
        params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let base = Entry {
        kind: Kind::ReportRun,
        principal: caller.principal.clone(),
        role: caller.role.as_str().into(),
        project: caller.project.id.clone(),
        purpose: caller.project.purpose.clone(),
        request_id,
        statement: statement.chars().take(4096).collect(),
        ..Entry::default()
    };
    let bound = match registry.validate(name, params) {
        Ok(b) => b,
        Err(e) => {
            let status = report_status(&e, request_id);
            state
                .append(Entry {
                    outcome: Outcome::Error {
                        category: "invalid".into(),
                    },
                    ..base
                })
                .await?;
            return Err(status);
        }
    };
    let (_, remaining) = match state.budgets.charge(state.today(), &caller.project) {
        Ok(b) => b,
        Err(status) => {
            state
                .append(Entry {
                    outcome: Outcome::Refused {
                        rule: "FS-8".into(),
                    },
                    ..base
                })
                .await?;
            return Err(status);
        }
    };
    let cx = state.context(&caller.project).await?;
    let _permit = state.slot().await?;
    let timeout = std::time::Duration::from_secs(state.config.limits.query_timeout_secs);
    let outcome = tokio::time::timeout(timeout, run_report(&cx, &bound)).await;
    let base = Entry {
        statement: bound.statement(),
        budget_spent: 1,
        budget_remaining: remaining,
        ..base
    };
    let result = match outcome {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let status = report_status(&e, request_id);
            let outcome = match &e {
                ReportError::Query {
                    error: fivesafes_policies::query::QueryError::Refused(r),
                    ..
                } => Outcome::Refused {
                    rule: r.rule.id().into(),
                },
                _ => Outcome::Error {
                    category: "execution".into(),
                },
            };
            state.append(Entry { outcome, ..base }).await?;
            return Err(status);
        }
        Err(_) => {
            state
                .append(Entry {
                    outcome: Outcome::Error {
                        category: "timeout".into(),
                    },
                    ..base
                })
                .await?;
            return Err(Status::deadline_exceeded(
                "the report ran longer than the server's limit",
            ));
        }
    };
    let audit_sequence = state
        .append(Entry {
            plan_hash: result.plan_hash(),
            tables_read: result.tables_read(),
            columns_read: result.columns_read(),
            opt_out_filters: result.opt_out_filters(),
            rows_scanned: result.rows_scanned(),
            rows_returned: result.rows.len() as u64,
            rows_suppressed: result.rows_suppressed,
            rules_applied: result.rules_applied.clone(),
            result_hash: hex::encode(sha2::Sha256::digest(to_csv(&result).as_bytes())),
            outcome: Outcome::Ok,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..base
        })
        .await?;
    Ok(Ran {
        result,
        audit_sequence,
    })
}

use sha2::Digest as _;

#[tonic::async_trait]
impl Reports for ReportsService {
    async fn list_reports(
        &self,
        request: Request<ListReportsRequest>,
    ) -> Result<Response<ListReportsResponse>, Status> {
        self.state.caller(request.metadata(), Need::Reports).await?;
        let reports = self
            .registry
            .list()
            .iter()
            .map(|d| ReportInfo {
                name: d.name.clone(),
                title: d.title.clone(),
                description: d.description.clone(),
                definition: d.definition_text(),
                parameters: d
                    .parameters
                    .iter()
                    .map(|p| ReportParameter {
                        name: p.name.clone(),
                        description: p.description.clone(),
                        r#type: p.type_name().into(),
                        allowed: p.allowed().to_vec(),
                        default: p.default.clone().unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(ListReportsResponse { reports }))
    }

    async fn run_report(
        &self,
        request: Request<RunReportRequest>,
    ) -> Result<Response<RunReportResponse>, Status> {
        let caller = self.state.caller(request.metadata(), Need::Reports).await?;
        let r = request.into_inner();
        let params: BTreeMap<String, String> = r.parameters.into_iter().collect();
        let ran = run(&self.state, &self.registry, &caller, &r.name, &params).await?;
        let (rendered, media_type) = render(&ran.result, &self.registry, &r.format)?;
        let mut ipc = Vec::new();
        {
            let schema = ran.result.schema();
            let mut w = StreamWriter::try_new(&mut ipc, &schema)
                .map_err(|_| Status::internal("the result could not be encoded"))?;
            for b in &ran.result.batches {
                w.write(b)
                    .map_err(|_| Status::internal("the result could not be encoded"))?;
            }
            w.finish()
                .map_err(|_| Status::internal("the result could not be encoded"))?;
        }
        Ok(Response::new(RunReportResponse {
            arrow_ipc_stream: ipc,
            output: Some(OutputSummary {
                rows_suppressed: ran.result.rows_suppressed,
                rows_returned: ran.result.rows.len() as u64,
                rules_applied: ran.result.rules_applied.clone(),
            }),
            audit_sequence: ran.audit_sequence,
            rendered,
            media_type: media_type.into(),
        }))
    }
}

/// The service to mount in tonic.
pub fn service(state: Arc<State>, registry: Arc<ReportRegistry>) -> ReportsServer<ReportsService> {
    ReportsServer::new(ReportsService { state, registry })
}

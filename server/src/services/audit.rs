//! `fivesafes.v1.Audit`: records, signed checkpoints and inclusion proofs for auditors, with
//! the exact encoded bytes so they can be verified independently of the server.

use std::sync::Arc;

use fivesafes_proto::v1::audit_server::{Audit, AuditServer};
use fivesafes_proto::v1::{
    AuditRecord, Checkpoint as PbCheckpoint, InclusionProofRequest, InclusionProofResponse,
    ListCheckpointsRequest, ListCheckpointsResponse, ListRecordsRequest, ListRecordsResponse,
};
use tonic::{Request, Response, Status};

use crate::audit::{AuditError, OutcomeKind, RecordFilter};
use crate::state::{Need, State};

/// Most records one `ListRecords` call returns.
pub const MAX_RECORDS: u32 = 10_000;
/// Records returned when the request sets no limit.
pub const DEFAULT_RECORDS: u32 = 1_000;

/// The service.
pub struct AuditService {
    /// Shared server state.
    pub state: Arc<State>,
}

fn internal(e: &AuditError) -> Status {
    tracing::error!(error = %e, "audit read");
    Status::internal("the audit log could not be read")
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn list_records(
        &self,
        request: Request<ListRecordsRequest>,
    ) -> Result<Response<ListRecordsResponse>, Status> {
        self.state.caller(request.metadata(), Need::Audit).await?;
        let r = request.into_inner();
        let outcome = match r.outcome.as_str() {
            "" => None,
            "ok" => Some(OutcomeKind::Ok),
            "refused" => Some(OutcomeKind::Refused),
            "error" => Some(OutcomeKind::Error),
            "none" => Some(OutcomeKind::None),
            other => {
                return Err(Status::invalid_argument(format!(
                    "outcome {other:?} is not one of ok, refused, error, none"
                )));
            }
        };
        let limit = match r.limit {
            0 => DEFAULT_RECORDS,
            n => n.min(MAX_RECORDS),
        };
        let filter = RecordFilter {
            from_unix_ms: (r.from_unix_ms != 0).then_some(r.from_unix_ms),
            to_unix_ms: (r.to_unix_ms != 0).then_some(r.to_unix_ms),
            principal: (!r.principal.is_empty()).then_some(r.principal),
            project: (!r.project.is_empty()).then_some(r.project),
            outcome,
            after_sequence: (r.after_sequence != 0).then_some(r.after_sequence),
            limit: Some(limit as usize),
            ..RecordFilter::default()
        };
        let records = self
            .state
            .audit
            .records(&filter)
            .map_err(|e| internal(&e))?;
        Ok(Response::new(ListRecordsResponse {
            records: records
                .into_iter()
                .map(|rec| AuditRecord {
                    sequence: rec.sequence,
                    unix_ms: rec.unix_ms,
                    kind: rec.entry.kind.as_str().into(),
                    principal: rec.entry.principal.clone(),
                    role: rec.entry.role.clone(),
                    project: rec.entry.project.clone(),
                    outcome: match rec.entry.outcome.kind() {
                        OutcomeKind::None => String::new(),
                        k => k.as_str().into(),
                    },
                    json: rec.to_json().to_string(),
                    leaf_hash: rec.leaf_hash().to_vec(),
                    encoded: rec.encode(),
                })
                .collect(),
        }))
    }

    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        self.state.caller(request.metadata(), Need::Audit).await?;
        let cps = self.state.audit.checkpoints().map_err(|e| internal(&e))?;
        Ok(Response::new(ListCheckpointsResponse {
            checkpoints: cps
                .into_iter()
                .map(|c| PbCheckpoint {
                    tree_size: c.tree_size,
                    root_hash: c.root.to_vec(),
                    unix_ms: c.unix_ms,
                    encoded: c.encode(),
                    signature: c.signature.to_vec(),
                })
                .collect(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<InclusionProofRequest>,
    ) -> Result<Response<InclusionProofResponse>, Status> {
        self.state.caller(request.metadata(), Need::Audit).await?;
        let r = request.into_inner();
        let proof = self
            .state
            .audit
            .inclusion_proof(r.sequence, r.tree_size)
            .map_err(|e| match e {
                AuditError::OutOfRange(m) => Status::out_of_range(m),
                other => internal(&other),
            })?;
        let records = self
            .state
            .audit
            .records(&RecordFilter {
                after_sequence: r.sequence.checked_sub(1),
                limit: Some(1),
                ..RecordFilter::default()
            })
            .map_err(|e| internal(&e))?;
        let leaf = records
            .iter()
            .find(|rec| rec.sequence == r.sequence)
            .map(|rec| rec.leaf_hash())
            .ok_or_else(|| Status::out_of_range("no such record"))?;
        let root = self
            .state
            .audit
            .root(r.tree_size)
            .map_err(|e| internal(&e))?;
        Ok(Response::new(InclusionProofResponse {
            leaf_hash: leaf.to_vec(),
            path: proof.path.iter().map(|h| h.to_vec()).collect(),
            root_hash: root.to_vec(),
        }))
    }
}

/// The service to mount in tonic.
pub fn service(state: Arc<State>) -> AuditServer<AuditService> {
    AuditServer::new(AuditService { state })
}

//! Arrow Flight SQL for analysts (and auditors in the audit project).
//!
//! Surface: `Handshake` (Basic → bearer token), `GetSqlInfo`, `CommandStatementQuery`
//! (`GetFlightInfo` + `DoGet`), prepared statements (create, execute, close), `GetCatalogs`,
//! `GetDbSchemas`, `GetTables` (with and without schemas, the project's tables only) and
//! `GetTableTypes`. Substrait plans, updates and ingestion answer `PERMISSION_DENIED`;
//! everything else `UNIMPLEMENTED`.
//!
//! `GetFlightInfo` runs the statement to completion through the policy layer
//! ([`crate::run`]) and answers with one endpoint whose ticket is an opaque random handle:
//! single use, bound to the principal, expiring after the configured time. The schema in the
//! `FlightInfo` is the schema of every streamed message.

mod metadata;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementIngest, CommandStatementQuery, CommandStatementSubstraitPlan,
    CommandStatementUpdate, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::Stream;
use prost::Message;
use rand::RngCore as _;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::audit::Outcome;
use crate::run;
use crate::state::{Need, PreparedEntry, State, TicketEntry};

/// The Flight SQL service.
#[derive(Clone)]
pub struct FlightSql {
    /// Shared server state.
    pub state: Arc<State>,
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

fn handle() -> Vec<u8> {
    let mut h = vec![0u8; 32];
    rand::rng().fill_bytes(&mut h);
    h
}

impl FlightSql {
    fn ttl(&self) -> Duration {
        Duration::from_secs(self.state.config.limits.ticket_ttl_secs)
    }

    /// Runs `sql` for the request's caller and answers with a FlightInfo holding the ticket.
    async fn statement_info<T>(
        &self,
        request: &Request<T>,
        sql: &str,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.state.caller(request.metadata(), Need::Sql).await?;
        let released = run::run_sql(&self.state, &caller, sql).await?;
        let h = handle();
        self.state.sweep();
        let info = FlightInfo::new()
            .try_with_schema(&released.schema)
            .map_err(|_| Status::internal("the result schema could not be encoded"))?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(
                    TicketStatementQuery {
                        statement_handle: h.clone().into(),
                    }
                    .as_any()
                    .encode_to_vec(),
                )),
            )
            .with_descriptor(descriptor)
            .with_total_records(i64::try_from(released.rows).unwrap_or(-1))
            .with_ordered(true);
        self.state
            .tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                h,
                TicketEntry {
                    principal: caller.principal,
                    messages: released.messages,
                    expires: Instant::now() + self.ttl(),
                },
            );
        Ok(Response::new(info))
    }

    /// Records and refuses a request kind analysts may never send.
    async fn forbidden<T>(&self, request: &Request<T>, what: &str) -> Status {
        match self.state.caller(request.metadata(), Need::Any).await {
            Err(s) => s,
            Ok(caller) => {
                let status = Status::permission_denied(format!(
                    "{what} are not accepted: send SQL text (read-only queries only)"
                ));
                let id = self.state.request_id();
                run::refuse(
                    &self.state,
                    &caller,
                    id,
                    &format!("<{what}>"),
                    Outcome::Refused {
                        rule: "FS-G1".into(),
                    },
                    status,
                )
                .await
            }
        }
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // The caller must name valid credentials; the project is checked on each call.
        self.authenticated(&request).await?;
        // Basic credentials carry the token as password; answer with the bearer form.
        let token = match bearer_or_basic_token(request.metadata()) {
            Some(t) => t,
            None => return Err(Status::unauthenticated("invalid credentials")),
        };
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::unauthenticated("invalid credentials"))?;
        let out = futures::stream::iter(vec![Ok(HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into_bytes().into(),
        })]);
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(out));
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let descriptor = request.get_ref().clone();
        self.statement_info(&request, &query.query, descriptor)
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.state.caller(request.metadata(), Need::Sql).await?;
        let entry = self.prepared(&cmd.prepared_statement_handle, &caller.principal)?;
        if entry.project != caller.project.id {
            return Err(Status::permission_denied(
                "the prepared statement belongs to another project",
            ));
        }
        let descriptor = request.get_ref().clone();
        self.statement_info(&request, &entry.sql, descriptor).await
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(self.forbidden(&request, "Substrait plans").await)
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = self.authenticated(&request).await?;
        let key = ticket.statement_handle.to_vec();
        let entry = {
            let mut tickets = self.state.tickets.lock().unwrap_or_else(|p| p.into_inner());
            match tickets.get(&key) {
                None => None,
                Some(t) if t.principal != principal => {
                    return Err(Status::permission_denied(
                        "this ticket was issued to another principal",
                    ));
                }
                Some(_) => tickets.remove(&key),
            }
        };
        let entry = entry
            .filter(|t| t.expires > Instant::now())
            .ok_or_else(|| {
                Status::not_found("unknown, already used or expired ticket: run the query again")
            })?;
        let stream = futures::stream::iter(entry.messages.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn do_get_prepared_statement(
        &self,
        _query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authenticated(&request).await?;
        Err(Status::not_found(
            "fetch prepared statement results with the ticket from GetFlightInfo",
        ))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.state.caller(request.metadata(), Need::Sql).await?;
        let schema = run::check(&self.state, &caller, &query.query).await?;
        let IpcMessage(schema_bytes) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|_| Status::internal("the result schema could not be encoded"))?;
        let h = handle();
        self.state.sweep();
        self.state
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                h.clone(),
                PreparedEntry {
                    principal: caller.principal,
                    project: caller.project.id,
                    sql: query.query,
                    expires: Instant::now() + self.ttl() * 12,
                },
            );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: h.into(),
            dataset_schema: schema_bytes,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let principal = self.authenticated(&request).await?;
        let key = query.prepared_statement_handle.to_vec();
        let mut map = self
            .state
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match map.get(&key) {
            Some(e) if e.principal == principal => {
                map.remove(&key);
                Ok(())
            }
            Some(_) => Err(Status::permission_denied(
                "the prepared statement belongs to another principal",
            )),
            None => Ok(()),
        }
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(self.forbidden(&request, "updates").await)
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(self.forbidden(&request, "ingestion requests").await)
    }

    async fn do_put_substrait_plan(
        &self,
        _ticket: CommandStatementSubstraitPlan,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(self.forbidden(&request, "Substrait plans").await)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.state.caller(request.metadata(), Need::Any).await?;
        metadata::info(
            query.as_any(),
            &query.into_builder().schema(),
            request.into_inner(),
        )
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.state.caller(request.metadata(), Need::Any).await?;
        metadata::catalogs(query).await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.state.caller(request.metadata(), Need::Any).await?;
        metadata::info(
            query.as_any(),
            &query.clone().into_builder().schema(),
            request.into_inner(),
        )
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.state.caller(request.metadata(), Need::Any).await?;
        metadata::schemas(query).await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.state.caller(request.metadata(), Need::Any).await?;
        metadata::info(
            query.as_any(),
            &query.clone().into_builder().schema(),
            request.into_inner(),
        )
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.state.caller(request.metadata(), Need::Any).await?;
        let tables = metadata::project_tables(&self.state, &caller).await?;
        metadata::tables(query, tables).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.state.caller(request.metadata(), Need::Any).await?;
        metadata::info(
            query.as_any(),
            &query.into_builder().schema(),
            request.into_inner(),
        )
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.state.caller(request.metadata(), Need::Any).await?;
        metadata::table_types(query).await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.state.caller(request.metadata(), Need::Any).await?;
        metadata::info(
            query.as_any(),
            &query.clone().into_builder(metadata::sql_info()).schema(),
            request.into_inner(),
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.state.caller(request.metadata(), Need::Any).await?;
        metadata::sql_info_batches(query).await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl FlightSql {
    /// The authenticated principal of a request (no project needed: tickets and handles are
    /// bound to principals).
    async fn authenticated<T>(&self, request: &Request<T>) -> Result<String, Status> {
        match self.state.auth.authenticate(request.metadata()) {
            Ok(p) => Ok(p),
            Err(_) => Err(self
                .state
                .caller(request.metadata(), Need::Any)
                .await
                .err()
                .unwrap_or_else(|| Status::unauthenticated("invalid credentials"))),
        }
    }

    fn prepared(&self, handle: &[u8], principal: &str) -> Result<PreparedEntry, Status> {
        let map = self
            .state
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match map.get(handle) {
            Some(e) if e.expires <= Instant::now() => Err(Status::not_found(
                "the prepared statement has expired; prepare it again",
            )),
            Some(e) if e.principal == principal => Ok(e.clone()),
            Some(_) => Err(Status::permission_denied(
                "the prepared statement belongs to another principal",
            )),
            None => Err(Status::not_found("unknown prepared statement")),
        }
    }
}

/// The token of a request's Bearer or Basic credentials.
fn bearer_or_basic_token(md: &tonic::metadata::MetadataMap) -> Option<String> {
    use base64::Engine as _;
    let v = md.get("authorization")?.to_str().ok()?.trim();
    let lower = v.to_ascii_lowercase();
    if lower.starts_with("bearer ") {
        return Some(v[7..].trim().to_string());
    }
    if lower.starts_with("basic ") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v[6..].trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        return text.split_once(':').map(|(_, t)| t.to_string());
    }
    None
}

/// The Flight service to mount in tonic.
pub fn service(
    state: Arc<State>,
) -> arrow_flight::flight_service_server::FlightServiceServer<FlightSql> {
    arrow_flight::flight_service_server::FlightServiceServer::new(FlightSql { state })
        .max_decoding_message_size(16 << 20)
}

//! Flight SQL metadata calls: catalogs, schemas, tables (only the project's) and table
//! types, and the server's SQL info.

use std::sync::OnceLock;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    Any, CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, SqlInfo,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use futures::TryStreamExt;
use prost::Message;
use tonic::{Response, Status};

use super::DoGetStream;
use crate::run::{AUDIT_TABLE, audit_session};
use crate::state::{Caller, State};

/// The catalog every table lives in.
pub const CATALOG: &str = "fivesafes";
/// The schema every table lives in.
pub const SCHEMA: &str = "public";
/// The only table type.
pub const TABLE_TYPE: &str = "TABLE";

/// The server's SQL info.
pub fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "fivesafes");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        match b.build() {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(error = %e, "sql info");
                #[allow(clippy::expect_used)]
                SqlInfoDataBuilder::new()
                    .build()
                    .expect("empty sql info builds")
            }
        }
    })
}

/// A FlightInfo whose ticket is the command itself (metadata results are cheap to
/// recompute and carry no data about persons).
pub fn info(
    cmd: Any,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|_| Status::internal("schema could not be encoded"))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(cmd.encode_to_vec())))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn stream(schema: SchemaRef, batch: RecordBatch) -> Result<Response<DoGetStream>, Status> {
    let s = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(s)))
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "metadata");
    Status::internal("metadata could not be built")
}

/// `GetCatalogs`.
pub async fn catalogs(query: CommandGetCatalogs) -> Result<Response<DoGetStream>, Status> {
    let mut b = query.into_builder();
    b.append(CATALOG);
    let schema = b.schema();
    stream(schema, b.build().map_err(internal)?)
}

/// `GetDbSchemas`.
pub async fn schemas(query: CommandGetDbSchemas) -> Result<Response<DoGetStream>, Status> {
    let mut b = query.into_builder();
    b.append(CATALOG, SCHEMA);
    let schema = b.schema();
    stream(schema, b.build().map_err(internal)?)
}

/// `GetTableTypes`.
pub async fn table_types(query: CommandGetTableTypes) -> Result<Response<DoGetStream>, Status> {
    let mut b = query.into_builder();
    b.append(TABLE_TYPE);
    let schema = b.schema();
    stream(schema, b.build().map_err(internal)?)
}

/// `GetSqlInfo`.
pub async fn sql_info_batches(query: CommandGetSqlInfo) -> Result<Response<DoGetStream>, Status> {
    let b = query.into_builder(sql_info());
    let schema = b.schema();
    stream(schema, b.build().map_err(internal)?)
}

/// The tables the caller's project can see, with their schemas (as the project sees them).
pub async fn project_tables(
    state: &State,
    caller: &Caller,
) -> Result<Vec<(String, SchemaRef)>, Status> {
    let ctx = if caller.in_audit_project() {
        audit_session(state)?
    } else if caller.project.tables.is_empty() {
        return Ok(Vec::new());
    } else {
        state.context(&caller.project).await?.session().clone()
    };
    let names: Vec<String> = if caller.in_audit_project() {
        vec![AUDIT_TABLE.to_string()]
    } else {
        caller
            .project
            .tables
            .iter()
            .map(|t| t.name.clone())
            .collect()
    };
    let mut out = Vec::new();
    for name in names {
        let provider = ctx.table_provider(name.as_str()).await.map_err(internal)?;
        out.push((name, provider.schema()));
    }
    Ok(out)
}

/// `GetTables`, filtered by the command's patterns.
pub async fn tables(
    query: CommandGetTables,
    tables: Vec<(String, SchemaRef)>,
) -> Result<Response<DoGetStream>, Status> {
    let mut b = query.into_builder();
    for (name, schema) in tables {
        b.append(CATALOG, SCHEMA, &name, TABLE_TYPE, &schema)
            .map_err(internal)?;
    }
    let schema = b.schema();
    stream(schema, b.build().map_err(internal)?)
}

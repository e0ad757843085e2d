//! The command-line client (`fivesafes query`, `fivesafes tables`): Arrow Flight SQL over
//! tonic with a bearer token and the project header, results printed as a table, CSV or
//! JSON lines.

use std::path::PathBuf;

use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::arrow::array::RecordBatch;
use futures::TryStreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use fivesafes_proto::v1::reports_client::ReportsClient;

use crate::auth::PROJECT_HEADER;

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `http://host:port` or `https://host:port`.
    pub server: String,
    /// The API token.
    pub token: String,
    /// The project (header `x-fivesafes-project`), when the principal has several.
    pub project: Option<String>,
    /// PEM CA certificate to trust (for `https://`).
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate and key (mutual TLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("cannot connect to {server}: {reason}")]
    Connect {
        /// The server URL.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// Arrow or Flight decoding failed.
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// The Flight protocol failed.
    #[error("{0}")]
    Flight(String),
    /// Reading certificates failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Connection {
    /// A connected channel.
    pub async fn channel(&self) -> Result<Channel, ClientError> {
        let connect = |reason: String| ClientError::Connect {
            server: self.server.clone(),
            reason,
        };
        let mut endpoint =
            Endpoint::from_shared(self.server.clone()).map_err(|e| connect(e.to_string()))?;
        if self.server.starts_with("https://") || self.ca_cert.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_cert {
                tls = tls.ca_certificate(Certificate::from_pem(std::fs::read(ca)?));
            }
            if let Some((cert, key)) = &self.client_identity {
                tls = tls.identity(Identity::from_pem(
                    std::fs::read(cert)?,
                    std::fs::read(key)?,
                ));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| connect(e.to_string()))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|e| connect(format!("{e} ({})", source_chain(&e))))
    }

    /// A Flight SQL client with the token and project header set.
    pub async fn flight_sql(&self) -> Result<FlightSqlServiceClient<Channel>, ClientError> {
        let mut client = FlightSqlServiceClient::new(self.channel().await?);
        client.set_token(self.token.clone());
        if let Some(p) = &self.project {
            client.set_header(PROJECT_HEADER, p.clone());
        }
        Ok(client)
    }

    /// Runs `sql` and returns its batches.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, ClientError> {
        let mut client = self.flight_sql().await?;
        let info = client
            .execute(sql.to_string(), None)
            .await
            .map_err(flight)?;
        collect(&mut client, info).await
    }

    /// The project's tables (with their schemas).
    pub async fn tables(&self) -> Result<Vec<RecordBatch>, ClientError> {
        let mut client = self.flight_sql().await?;
        let info = client
            .get_tables(CommandGetTables {
                include_schema: false,
                ..CommandGetTables::default()
            })
            .await
            .map_err(flight)?;
        collect(&mut client, info).await
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

impl Connection {
    fn request<T>(&self, msg: T) -> Result<tonic::Request<T>, ClientError> {
        let mut r = tonic::Request::new(msg);
        let bad = |_| ClientError::Flight("the token or project is not valid header text".into());
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().map_err(bad)?,
        );
        if let Some(p) = &self.project {
            r.metadata_mut()
                .insert(PROJECT_HEADER, p.parse().map_err(bad)?);
        }
        Ok(r)
    }

    /// The reports the caller's project may run.
    pub async fn list_reports(&self) -> Result<Vec<fivesafes_proto::v1::ReportInfo>, ClientError> {
        let mut c = ReportsClient::new(self.channel().await?);
        let req = self.request(fivesafes_proto::v1::ListReportsRequest {})?;
        Ok(c.list_reports(req).await?.into_inner().reports)
    }

    /// Runs a report, asking for `format` ("" for Arrow only).
    pub async fn run_report(
        &self,
        name: &str,
        parameters: std::collections::HashMap<String, String>,
        format: &str,
    ) -> Result<fivesafes_proto::v1::RunReportResponse, ClientError> {
        let mut c = ReportsClient::new(self.channel().await?);
        let req = self.request(fivesafes_proto::v1::RunReportRequest {
            name: name.into(),
            parameters,
            format: format.into(),
        })?;
        Ok(c.run_report(req).await?.into_inner())
    }
}

/// Turns a Flight error back into the server's status where there is one.
fn flight(e: arrow_flight::error::FlightError) -> ClientError {
    use arrow_flight::error::FlightError;
    match e {
        FlightError::Tonic(status) => ClientError::Status(*status),
        FlightError::Arrow(a) => ClientError::Arrow(a),
        other => ClientError::Flight(other.to_string()),
    }
}

async fn collect(
    client: &mut FlightSqlServiceClient<Channel>,
    info: arrow_flight::FlightInfo,
) -> Result<Vec<RecordBatch>, ClientError> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            continue;
        };
        let stream = client.do_get(ticket).await.map_err(flight)?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(flight)?;
        out.extend(batches);
    }
    Ok(out)
}

/// Output formats of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Renders batches in `format`.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, ClientError> {
    match format {
        Format::Table => {
            Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

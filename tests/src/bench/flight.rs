//! A Flight SQL client that keeps one connection (one HTTP/2 channel) across queries, as a
//! real analyst tool does, so that a query's latency does not include connecting.

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::arrow::array::RecordBatch;
use fivesafes_server::client::{ClientError, Connection};
use futures::TryStreamExt;
use tonic::transport::Channel;

/// A connected Flight SQL client with the token and project header set.
pub struct FlightClient {
    /// The client; its channel stays connected between queries.
    client: FlightSqlServiceClient<Channel>,
}

impl FlightClient {
    /// Connects.
    pub async fn connect(conn: &Connection) -> Result<FlightClient, ClientError> {
        Ok(FlightClient {
            client: conn.flight_sql().await?,
        })
    }

    /// Runs `sql` (`GetFlightInfo`, then `DoGet` of every ticket) and returns the number of
    /// rows received.
    pub async fn query(&mut self, sql: &str) -> Result<usize, FlightError> {
        let info = self.client.execute(sql.to_string(), None).await?;
        let mut rows = 0;
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let batches: Vec<RecordBatch> = self.client.do_get(ticket).await?.try_collect().await?;
            rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        }
        Ok(rows)
    }
}

/// A short, data-free label of a failed call (the gRPC status code), for error counts.
pub fn error_label(e: &FlightError) -> String {
    match e {
        FlightError::Tonic(status) => format!("{:?}", status.code()),
        FlightError::Arrow(_) => "arrow".into(),
        FlightError::NotYetImplemented(_) => "not-implemented".into(),
        FlightError::ProtocolError(_) => "protocol".into(),
        FlightError::DecodeError(_) => "decode".into(),
        FlightError::ExternalError(_) => "external".into(),
    }
}

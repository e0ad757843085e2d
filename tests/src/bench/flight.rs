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

/// A short, data-free label of a failed call, for error counts: the gRPC status code, and for
/// `RESOURCE_EXHAUSTED` its cause (queue timeout, memory, budget).
pub fn error_label(e: &FlightError) -> String {
    match e {
        FlightError::Tonic(status) if status.code() == tonic::Code::ResourceExhausted => {
            // Three causes share this status; a memory regression must not hide among
            // queue timeouts.
            let cause = match status.message() {
                m if m == fivesafes_server::state::BUSY => "queue timeout",
                m if m == fivesafes_server::error::OUT_OF_MEMORY => "memory",
                m if m.contains("queries for today") => "budget",
                _ => "other",
            };
            format!("ResourceExhausted ({cause})")
        }
        FlightError::Tonic(status) => format!("{:?}", status.code()),
        FlightError::Arrow(_) => "arrow".into(),
        FlightError::NotYetImplemented(_) => "not-implemented".into(),
        FlightError::ProtocolError(_) => "protocol".into(),
        FlightError::DecodeError(_) => "decode".into(),
        FlightError::ExternalError(_) => "external".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_exhausted_is_labelled_by_cause() {
        let label = |code, msg: &str| {
            error_label(&FlightError::Tonic(Box::new(tonic::Status::new(code, msg))))
        };
        use tonic::Code::{Internal, ResourceExhausted};
        assert_eq!(
            label(ResourceExhausted, fivesafes_server::state::BUSY),
            "ResourceExhausted (queue timeout)"
        );
        assert_eq!(
            label(ResourceExhausted, fivesafes_server::error::OUT_OF_MEMORY),
            "ResourceExhausted (memory)"
        );
        // The budget's text names the project and its limit (server/src/state.rs).
        assert_eq!(
            label(
                ResourceExhausted,
                "project p has used its 10 queries for today (UTC); the budget resets at midnight"
            ),
            "ResourceExhausted (budget)"
        );
        assert_eq!(label(Internal, "x"), "Internal");
    }
}

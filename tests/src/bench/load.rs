//! Concurrent load: N Flight SQL clients, each on its own connection, send the
//! [`LOAD_MIX`](super::queries::LOAD_MIX) queries back to back for a fixed time.
//! Reports throughput, p50/p99 latency of successful queries and errors by status code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use fivesafes_server::client::Connection;
use serde::Serialize;

use super::flight::{FlightClient, error_label};
use super::{ms, percentile};

/// What a load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Concurrent clients.
    pub clients: usize,
    /// Wall time of the run, seconds.
    pub secs: f64,
    /// Successful queries.
    pub queries: u64,
    /// Successful queries per second.
    pub throughput_qps: f64,
    /// Median latency of successful queries, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of successful queries, ms.
    pub p99_ms: f64,
    /// Failed queries by gRPC status code.
    pub errors: BTreeMap<String, u64>,
}

impl LoadResult {
    /// All failed queries.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Runs `clients` clients over `queries` for `secs` seconds.
pub async fn run(
    conn: &Connection,
    queries: &'static [&'static str],
    clients: usize,
    secs: f64,
) -> Result<LoadResult> {
    // Connect everyone first, so connecting is not part of the measured window.
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(FlightClient::connect(conn).await?);
    }
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::with_capacity(clients);
    for (c, mut client) in connected.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut i = c;
            while Instant::now() < end {
                let t = Instant::now();
                match client.query(queries[i % queries.len()]).await {
                    Ok(_) => latencies.push(ms(t.elapsed())),
                    Err(e) => *errors.entry(error_label(&e)).or_default() += 1,
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        for (k, n) in e {
            *errors.entry(k).or_default() += n;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(LoadResult {
        clients,
        secs: elapsed,
        queries: all.len() as u64,
        throughput_qps: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        errors,
    })
}

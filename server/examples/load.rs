//! Load benchmark: N concurrent Flight SQL clients (default 32) for a fixed time (default
//! 60 s) against a server on loopback over a prepared synthetic store. Prints throughput,
//! p50/p99 latency and the error count. A benchmark, not a test: nothing is asserted.
//!
//! `cargo run --release -p fivesafes-server --example load -- [SECONDS] [CLIENTS] [PATIENTS]`

use std::time::{Duration, Instant};

use fivesafes_server::client::Connection;
use fivesafes_server::config::ServerConfig;
use fivesafes_server::{demo, serve, state};

const QUERIES: [&str; 4] = [
    "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex",
    "SELECT imd_decile, COUNT(DISTINCT patient_id) AS persons FROM patients GROUP BY imd_decile",
    "SELECT admimeth, COUNT(*) AS spells FROM hes_apc GROUP BY admimeth",
    "SELECT aearrivalmode, COUNT(*) AS n FROM hes_ae GROUP BY aearrivalmode",
];

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: u64 = args.first().map_or(Ok(60), |s| s.parse())?;
    let clients: usize = args.get(1).map_or(Ok(32), |s| s.parse())?;
    let patients: u64 = args.get(2).map_or(Ok(20_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let d = demo::prepare(&dir.path().join("demo"), patients, Some("127.0.0.1:0"))?;
    // The benchmark project may run as many queries as the load sends.
    let register = d.dir.join("projects.toml");
    let text = std::fs::read_to_string(&register)?
        .replace("queries_per_day = 500", "queries_per_day = 100000000");
    std::fs::write(&register, text)?;
    let config = ServerConfig::load(&d.config())?;
    let pool = config.limits.max_concurrent_queries;
    let tokens = demo::read_tokens(&d)?;
    let running = serve::start(config, state::system_clock()).await?;
    let conn = Connection {
        server: format!("http://{}", running.addr),
        token: tokens.tokens["analyst"].clone(),
        project: Some("diabetes-research".into()),
        ca_cert: None,
        client_identity: None,
    };
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = c;
            while Instant::now() < end {
                let t = Instant::now();
                match conn.query(QUERIES[i % QUERIES.len()]).await {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        eprintln!("error: {e}");
                    }
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!("load: {clients} clients for {secs} s, {patients} patients, {pool} query slots");
    println!("queries   {}", all.len());
    println!("errors    {errors}");
    println!("throughput {:.1} queries/s", all.len() as f64 / elapsed);
    println!("p50       {:.1} ms", pct(0.50).as_secs_f64() * 1e3);
    println!("p99       {:.1} ms", pct(0.99).as_secs_f64() * 1e3);
    running.shutdown().await?;
    Ok(())
}

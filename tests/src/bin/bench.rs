//! `bench`: the one benchmark command. Generates seeded synthetic extracts if they are not
//! already there, measures, prints tables and writes every figure as JSON.
//!
//! ```text
//! cargo run --release --locked -p fivesafes-tests --bin bench -- --patients 1000000
//! ```
//!
//! In order (each step's figures are medians of `--runs` timed runs after an untimed
//! warm-up, except the fixed-time load and audit runs):
//!
//! 1. ingest against a plain CSV-to-Parquet conversion of the same files (same crates,
//!    writer settings and threads);
//! 2. a server started in this process on a free loopback port over the ingested store, with
//!    the default limits (memory pool 2 GiB, 4 concurrent queries) and a fresh audit log;
//! 3. each analyst query (`fivesafes_tests::bench::queries`): through the policy layer,
//!    unprotected over the same project view, through the server's run path, and end to end
//!    over Flight SQL; the fixed cost Flight SQL adds to a query over in-process execution,
//!    measured on a query over public reference data;
//! 4. every canned report with its default parameters;
//! 5. `--clients` concurrent Flight SQL clients for `--load-secs`;
//! 6. the audit log's cost: the run path with and without its audit appends, and the raw
//!    append rate (see `fivesafes_tests::bench::audit` for what exactly is compared);
//! 7. peak resident memory of this process (which hosts the server) from step 2 on, and the
//!    peak reservation of the memory pool, against the configured pool.
//!
//! With each query of step 3 runs its rule 7 floor (`BenchQuery::floor`): less work than
//! low-effect detection obliges any exact implementation to do, as one plain query, timed
//! in the same runs as the unprotected query (the machine's speed drifts), so that
//! floor/unprotected bounds the protected/unprotected ratio from below.
//!
//! Figures are printed, never asserted. Nothing printed or logged holds a data value: names,
//! times, row counts and status codes only.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use fivesafes_engine::ingest::{self, IngestOptions};
use fivesafes_engine::keys::Keys;
use fivesafes_engine::synth::{self, SynthOptions};
use fivesafes_policies::query;
use fivesafes_server::run::run_sql;
use fivesafes_tests::bench::audit::{append_rate, throughput};
use fivesafes_tests::bench::env::{self, ANALYST_PROJECT, Env, REPORTS_PROJECT};
use fivesafes_tests::bench::flight::FlightClient;
use fivesafes_tests::bench::memory::{self, Sampler};
use fivesafes_tests::bench::queries::{
    LOAD_MIX, QUERIES, QueryTiming, TRIVIAL, protected, unprotected,
};
use fivesafes_tests::bench::{CpuTimes, Figure, Machine, load, median, ms, plain_convert, reports};
use futures::TryStreamExt;

/// Benchmarks of fivesafes; prints every figure and writes them as JSON.
#[derive(Debug, Parser)]
struct Args {
    /// Synthetic patients.
    #[arg(long, default_value_t = 1_000_000)]
    patients: u64,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where generated data, keys, stores and the audit log live (data and stores are reused
    /// between runs).
    #[arg(long, default_value = "bench-data")]
    data: PathBuf,
    /// Timed repetitions of each step (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Seconds of the concurrent-clients run.
    #[arg(long, default_value_t = 30.0)]
    load_secs: f64,
    /// Concurrent Flight SQL clients of the load run (and workers of the audit runs).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of each audit throughput run (with and without audit appends, `--runs` each).
    #[arg(long, default_value_t = 10.0)]
    audit_secs: f64,
    /// The server's memory pool in MiB (default: the server's default, 2048).
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Do not time ingest; reuse the store of an earlier run (ingested once if missing).
    #[arg(long)]
    skip_ingest: bool,
    /// Measure only data generation and ingest (against the plain conversion), then print
    /// and write those figures and stop.
    #[arg(long, conflicts_with_all = ["skip_ingest", "profile"])]
    ingest_only: bool,
    /// Skip the canned reports.
    #[arg(long)]
    skip_reports: bool,
    /// Skip the concurrent-clients run.
    #[arg(long)]
    skip_load: bool,
    /// Skip the audit log measurements.
    #[arg(long)]
    skip_audit: bool,
    /// Instead of the figures: run the named query (a benchmark query's name, `load0`… for
    /// the load mix's queries, or SQL) once (protected, then unprotected) and
    /// print each physical plan with its operators' metrics (rows and time), followed by the
    /// subplans of the shared results it reads (rule 7's measurement, computed once and shown
    /// as leaves in the plan), to find what a protected query spends its time on. Synthetic data only: the metrics hold counts.
    /// Before that, the protected query runs `--runs` − 1 times in the same process, each
    /// time printed (a query that slows down run after run keeps something of earlier runs).
    /// Reuses the store of an earlier run, as `--skip-ingest` does.
    #[arg(long, value_name = "QUERY")]
    profile: Option<String>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let runs = args.runs.max(1);
    let machine = Machine::detect();
    println!("machine: {machine}");
    let cpu_at_start = CpuTimes::read();
    std::fs::create_dir_all(&args.data).with_context(|| args.data.display().to_string())?;
    let mut figures: Vec<Figure> = Vec::new();

    // 1. Data and ingest.
    let extracts = ensure_extracts(&args, &mut figures)?;
    let keys_dir = env::ensure_keys(&args.data)?;
    let keys = Keys::load(&keys_dir)?;
    let store = args
        .data
        .join(format!("store-{}-{}", args.patients, args.seed));
    // `--profile` times nothing but its query: like `--skip-ingest`, it reuses the store.
    let reuse_store = args.skip_ingest || args.profile.is_some();
    if reuse_store && store.join("CURRENT").exists() {
        println!("reusing the store in {}", store.display());
    } else if reuse_store {
        println!("ingesting once (not timed) into {}", store.display());
        ingest::ingest(&quiet(IngestOptions::new(&extracts, &store)), &keys)?;
    } else {
        time_ingest(&args, &extracts, &store, &keys, runs, &mut figures)?;
    }
    if args.ingest_only {
        let json = serde_json::json!({
            "machine": machine,
            "patients": args.patients,
            "seed": args.seed,
            "runs": runs,
            "figures": figures,
        });
        push_steal(cpu_at_start, &mut figures);
        return write_figures(&figures, &json, &args.json);
    }

    // 2. The server, in this process.
    let env = Env::start(&args.data, &store, &keys_dir, args.memory_mib).await?;
    let pool_mib = env.config.limits.memory_mib;
    println!(
        "server on {} (memory pool {} MiB, {} query slots)",
        env.running.addr, pool_mib, env.config.limits.max_concurrent_queries
    );
    let state = std::sync::Arc::clone(&env.running.state);
    let sampler = Sampler::start(std::sync::Arc::clone(&state.runtime.memory_pool));
    let analyst = env.analyst()?;
    let cx = state
        .context(env.project(ANALYST_PROJECT)?)
        .await
        .map_err(|s| anyhow!("{}", s.message()))?;

    if let Some(name) = &args.profile {
        return profile_query(&cx, name, runs).await;
    }

    // 3. Analyst queries, four ways.
    let mut flight = FlightClient::connect(&env.analyst_connection()).await?;
    let mut timings: Vec<QueryTiming> = Vec::new();
    println!(
        "\n{:<26} {:>11} {:>11} {:>6} {:>10} {:>6} {:>10} {:>10} {:>10} {:>6}",
        "query (ms, median)",
        "protected",
        "unprotect.",
        "ratio",
        "floor",
        "ratio",
        "server",
        "flight",
        "overhead",
        "cells"
    );
    // A query that fails (e.g. exceeds the server's time limit) is reported and skipped; the
    // other figures are still measured.
    let mut failures: Vec<serde_json::Value> = Vec::new();
    for q in QUERIES {
        let fail = |what: &str, e: String| anyhow!("{what}: {e}");
        let measured: Result<QueryTiming> = async {
            // Untimed warm-up, which also checks that every path accepts the query.
            let rows_released = protected(&cx, q.sql)
                .await
                .map_err(|e| fail("policy layer", e.to_string()))?;
            let rows_unprotected = unprotected(&cx, q.sql)
                .await
                .map_err(|e| fail("unprotected", e.to_string()))?;
            unprotected(&cx, q.floor)
                .await
                .map_err(|e| fail("floor", e.to_string()))?;
            run_sql(&state, &analyst, q.sql)
                .await
                .map_err(|s| fail("server run path", s.message().to_string()))?;
            flight
                .query(q.sql)
                .await
                .map_err(|e| fail("Flight SQL", e.to_string()))?;
            let (mut p, mut u, mut s, mut f) = (vec![], vec![], vec![], vec![]);
            let mut fl = vec![];
            for _ in 0..runs {
                let t = Instant::now();
                protected(&cx, q.sql).await?;
                p.push(ms(t.elapsed()));
                let t = Instant::now();
                unprotected(&cx, q.sql).await?;
                u.push(ms(t.elapsed()));
                let t = Instant::now();
                unprotected(&cx, q.floor).await?;
                fl.push(ms(t.elapsed()));
                let t = Instant::now();
                run_sql(&state, &analyst, q.sql)
                    .await
                    .map_err(|s| fail("server run path", s.message().to_string()))?;
                s.push(ms(t.elapsed()));
                let t = Instant::now();
                flight.query(q.sql).await?;
                f.push(ms(t.elapsed()));
            }
            let (p, u, s, f) = (
                median(&mut p),
                median(&mut u),
                median(&mut s),
                median(&mut f),
            );
            let fl = median(&mut fl);
            Ok(QueryTiming {
                name: q.name.into(),
                protected_ms: p,
                unprotected_ms: u,
                ratio: p / u,
                floor_ms: fl,
                floor_ratio: fl / u,
                server_ms: s,
                flight_ms: f,
                flight_overhead_ms: f - p,
                rows_released,
                rows_unprotected,
            })
        }
        .await;
        let t = match measured {
            Ok(t) => t,
            Err(e) => {
                println!("{:<26} failed: {e}", q.name);
                failures.push(serde_json::json!({ "query": q.name, "error": e.to_string() }));
                continue;
            }
        };
        println!(
            "{:<26} {:>11.1} {:>11.1} {:>6.2} {:>10.1} {:>6.2} {:>10.1} {:>10.1} {:>10.1} {:>6}",
            t.name,
            t.protected_ms,
            t.unprotected_ms,
            t.ratio,
            t.floor_ms,
            t.floor_ratio,
            t.server_ms,
            t.flight_ms,
            t.flight_overhead_ms,
            t.rows_released
        );
        timings.push(t);
    }
    // The fixed cost of a query over Flight SQL: a query over public reference data.
    let trivial_runs = (runs * 5).max(10);
    let (mut tp, mut ts, mut tf) = (vec![], vec![], vec![]);
    protected(&cx, TRIVIAL).await?;
    flight.query(TRIVIAL).await?;
    for _ in 0..trivial_runs {
        let t = Instant::now();
        protected(&cx, TRIVIAL).await?;
        tp.push(ms(t.elapsed()));
        let t = Instant::now();
        run_sql(&state, &analyst, TRIVIAL)
            .await
            .map_err(|s| anyhow!("{}", s.message()))?;
        ts.push(ms(t.elapsed()));
        let t = Instant::now();
        flight.query(TRIVIAL).await?;
        tf.push(ms(t.elapsed()));
    }
    let (tp, ts, tf) = (median(&mut tp), median(&mut ts), median(&mut tf));
    println!(
        "{:<26} {:>11.1} {:>11} {:>6} {:>10.1} {:>10.1} {:>10.1}",
        "(public reference query)",
        tp,
        "",
        "",
        ts,
        tf,
        tf - tp
    );
    if !timings.is_empty() {
        query_figures(&timings, tp, ts, tf, &mut figures);
    }

    // 4. Canned reports.
    let mut report_timings = Vec::new();
    if !args.skip_reports {
        let rcx = state
            .context(env.project(REPORTS_PROJECT)?)
            .await
            .map_err(|s| anyhow!("{}", s.message()))?;
        report_timings = reports::time_all(&rcx, runs).await?;
        println!(
            "\n{:<36} {:>10} {:>6}",
            "canned report (default parameters)", "ms", "rows"
        );
        for r in &report_timings {
            println!("{:<36} {:>10.1} {:>6}", r.name, r.median_ms, r.rows);
            figures.push(Figure::new(
                &format!("report: {}", r.name),
                r.median_ms,
                "ms",
            ));
        }
    }

    // 5. Concurrent clients.
    let mut load_result = None;
    if !args.skip_load {
        println!(
            "\nload: {} clients for {} s (queries: {})",
            args.clients,
            args.load_secs,
            LOAD_MIX.len()
        );
        let l = load::run(
            &env.analyst_connection(),
            &LOAD_MIX,
            args.clients,
            args.load_secs,
        )
        .await?;
        let c = args.clients;
        figures.push(Figure::new(
            &format!("load {c} clients: throughput"),
            l.throughput_qps,
            "q/s",
        ));
        figures.push(Figure::new(
            &format!("load {c} clients: p50 latency"),
            l.p50_ms,
            "ms",
        ));
        figures.push(Figure::new(
            &format!("load {c} clients: p99 latency"),
            l.p99_ms,
            "ms",
        ));
        figures.push(
            Figure::new(
                &format!("load {c} clients: errors"),
                l.error_count() as f64,
                "",
            )
            .target("0"),
        );
        if !l.errors.is_empty() {
            println!("load errors by status: {:?}", l.errors);
        }
        load_result = Some(l);
    }

    // 6. Audit log cost.
    let mut audit_json = serde_json::Value::Null;
    if !args.skip_audit {
        println!(
            "\naudit: {} workers, {} s per run, with and without audit appends",
            args.clients, args.audit_secs
        );
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let mut errors = 0;
        for _ in 0..runs {
            let w = throughput(
                &state,
                &analyst,
                &LOAD_MIX,
                args.clients,
                args.audit_secs,
                false,
            )
            .await?;
            let a = throughput(
                &state,
                &analyst,
                &LOAD_MIX,
                args.clients,
                args.audit_secs,
                true,
            )
            .await?;
            println!("  without {:.1} q/s, with {:.1} q/s", w.qps, a.qps);
            errors += w.errors + a.errors;
            without.push(w.qps);
            with.push(a.qps);
        }
        let (with, without) = (median(&mut with), median(&mut without));
        let overhead = 100.0 * (1.0 - with / without);
        figures.push(Figure::new("audit: run path without audit", without, "q/s"));
        figures.push(Figure::new("audit: run path with audit", with, "q/s"));
        figures.push(Figure::new("audit: throughput cost", overhead, "%").target("<= 10"));
        if errors > 0 {
            figures.push(Figure::new("audit: failed queries", errors as f64, ""));
        }
        let scratch = args.data.join("audit-append-bench");
        let one = append_rate(&scratch, &keys_dir, 1, 2.0).await?;
        let many = append_rate(&scratch, &keys_dir, args.clients, 2.0).await?;
        figures.push(Figure::new(
            "audit: appends/s, 1 appender",
            one.per_sec,
            "rec/s",
        ));
        figures.push(Figure::new(
            "audit: append latency, 1 appender",
            one.mean_latency_ms,
            "ms",
        ));
        figures.push(Figure::new(
            &format!("audit: appends/s, {} appenders", many.appenders),
            many.per_sec,
            "rec/s",
        ));
        figures.push(Figure::new(
            &format!("audit: syncs/record, {} appenders", many.appenders),
            many.syncs_per_record,
            "",
        ));
        audit_json = serde_json::json!({
            "run_path_qps_without_audit": without,
            "run_path_qps_with_audit": with,
            "throughput_cost_percent": overhead,
            "append_one": one,
            "append_many": many,
        });
    }

    // 7. Memory.
    let peaks = sampler.stop();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    figures.push(
        Figure::new("memory: peak RSS (server process)", mib(peaks.rss), "MiB")
            .target(&format!("<= {pool_mib} (pool)")),
    );
    figures.push(Figure::new(
        "memory: peak pool reservation",
        mib(peaks.pool),
        "MiB",
    ));
    env.stop().await?;
    push_steal(cpu_at_start, &mut figures);

    let json = serde_json::json!({
        "machine": machine,
        "patients": args.patients,
        "seed": args.seed,
        "runs": runs,
        "memory_pool_mib": pool_mib,
        "figures": figures,
        "queries": timings,
        "query_failures": failures,
        "reports": report_timings,
        "load": load_result,
        "audit": audit_json,
    });
    write_figures(&figures, &json, &args.json)
}

/// The share of the machine's CPU time the host gave to other guests since `start` (on a
/// shared virtual machine: the same run takes longer the larger it is).
fn push_steal(start: Option<CpuTimes>, figures: &mut Vec<Figure>) {
    if let Some(share) = start
        .zip(CpuTimes::read())
        .and_then(|(a, b)| b.steal_since(&a))
    {
        figures.push(Figure::new(
            "machine: CPU time stolen by the host",
            share,
            "%",
        ));
    }
}

/// Prints the figures as a table and writes `json` to `path`.
fn write_figures(figures: &[Figure], json: &serde_json::Value, path: &Path) -> Result<()> {
    println!();
    println!("{:<36} {:>14} {:<7} target", "figure", "value", "unit");
    for f in figures {
        println!("{f}");
    }
    std::fs::write(path, serde_json::to_vec_pretty(json)?)
        .with_context(|| path.display().to_string())?;
    println!("figures written to {}", path.display());
    Ok(())
}

/// `--profile`: the named query's protected and unprotected physical plans, run once each,
/// with their metrics.
async fn profile_query(cx: &query::ProjectContext, name: &str, runs: usize) -> Result<()> {
    let sql = match QUERIES.iter().find(|q| q.name == name) {
        Some(q) => q.sql,
        // The load mix's queries by number, or any SQL.
        None => match name
            .strip_prefix("load")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) if i < LOAD_MIX.len() => LOAD_MIX[i],
            _ if ["SELECT", "WITH"]
                .iter()
                .any(|k| name.trim_start().to_uppercase().starts_with(k)) =>
            {
                name
            }
            _ => {
                let names: Vec<&str> = QUERIES.iter().map(|q| q.name).collect();
                return Err(anyhow!(
                    "no benchmark query {name:?}; give one of {}, load0..load{}, or SQL",
                    names.join(", "),
                    LOAD_MIX.len() - 1
                ));
            }
        },
    };
    // Repeated runs in one process first: a query that gets slower run after run holds
    // something of the earlier runs.
    for run in 1..runs {
        let t = Instant::now();
        protected(cx, sql).await?;
        println!("{name}, protected, run {run}: {:.0} ms", ms(t.elapsed()));
    }
    let t = Instant::now();
    let prepared = cx.prepare(sql).await?;
    let prepare_ms = ms(t.elapsed());
    let t = Instant::now();
    let protected = prepared.physical_plan(cx).await?;
    println!(
        "{name}, protected: prepare {prepare_ms:.0} ms, physical planning {:.0} ms",
        ms(t.elapsed())
    );
    let unprotected = cx
        .session()
        .state()
        .create_physical_plan(&cx.plan_unprotected(sql).await?)
        .await?;
    for (what, plan) in [("protected", protected), ("unprotected", unprotected)] {
        let t = Instant::now();
        let _: Vec<datafusion::arrow::array::RecordBatch> =
            query::execute(&plan, cx)?.try_collect().await?;
        let elapsed = ms(t.elapsed());
        println!("\n== {name}, {what}: {elapsed:.0} ms\n");
        let display = |p: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>| {
            datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(p.as_ref())
                .indent(true)
                .to_string()
        };
        println!("{}", display(&plan));
        // Rule 7's shared results (computed once, shown as leaves above).
        for (i, shared) in query::shared_subplans(&plan).iter().enumerate() {
            println!("-- {name}, {what}, shared subplan {}:\n", i + 1);
            println!("{}", display(shared));
        }
    }
    Ok(())
}

/// The summary figures of the query measurements.
fn query_figures(t: &[QueryTiming], tp: f64, ts: f64, tf: f64, figures: &mut Vec<Figure>) {
    let mut ratios: Vec<f64> = t.iter().map(|q| q.ratio).collect();
    let mut overheads: Vec<f64> = t.iter().map(|q| q.flight_overhead_ms).collect();
    figures.push(
        Figure::new(
            "queries: protected/unprotected, median",
            median(&mut ratios),
            "×",
        )
        .target("<= 1.3"),
    );
    let mut floors: Vec<f64> = t
        .iter()
        .map(|q| q.floor_ratio)
        .filter(|r| r.is_finite())
        .collect();
    figures.push(Figure::new(
        "queries: rule 7's floor/unprotected, median",
        median(&mut floors),
        "×",
    ));
    figures.push(Figure::new(
        "queries: protected/unprotected, max",
        max_of(t.iter().map(|q| q.ratio)),
        "×",
    ));
    figures.push(
        Figure::new(
            "queries: slowest, protected",
            max_of(t.iter().map(|q| q.protected_ms)),
            "ms",
        )
        .target("< 2000 (at 1M)"),
    );
    figures.push(Figure::new(
        "queries: slowest, Flight SQL",
        max_of(t.iter().map(|q| q.flight_ms)),
        "ms",
    ));
    // The per-query difference subtracts separate runs of the same query, so for queries of
    // seconds it is mostly their run-to-run spread (it can be negative); the fixed cost that
    // Flight SQL adds to every query is measured on the public reference query.
    figures.push(Figure::new(
        "Flight SQL − in process, p50",
        median(&mut overheads),
        "ms",
    ));
    figures.push(Figure::new("Flight SQL overhead (public query)", tf - tp, "ms").target("<= 50"));
    figures.push(Figure::new("public query: in process", tp, "ms"));
    figures.push(Figure::new("public query: server run path", ts, "ms"));
    figures.push(Figure::new("public query: Flight SQL", tf, "ms"));
}

/// The largest of some values (NaN when there are none).
fn max_of(xs: impl Iterator<Item = f64>) -> f64 {
    xs.fold(f64::NAN, f64::max)
}

/// Generates the extracts once per (patients, seed); returns their directory.
fn ensure_extracts(args: &Args, figures: &mut Vec<Figure>) -> Result<PathBuf> {
    let extracts = args
        .data
        .join(format!("extracts-{}-{}", args.patients, args.seed));
    let marker = extracts.join(".complete");
    if !marker.exists() {
        println!(
            "generating {} synthetic patients (seed {}) …",
            args.patients, args.seed
        );
        let t = Instant::now();
        let summary = synth::generate(&SynthOptions {
            patients: args.patients,
            seed: args.seed,
            out: extracts.clone(),
            progress: true,
        })?;
        let secs = t.elapsed().as_secs_f64();
        figures.push(Figure::new("synth: generation time", secs, "s"));
        figures.push(Figure::new(
            "synth: extract size",
            summary.bytes as f64 / (1 << 20) as f64,
            "MiB",
        ));
        std::fs::write(&marker, b"").with_context(|| marker.display().to_string())?;
    }
    Ok(extracts)
}

fn quiet(mut opts: IngestOptions) -> IngestOptions {
    opts.progress = false;
    opts
}

/// Ingest against the plain conversion, interleaved so that both see the same machine
/// state; leaves the last ingested store in `store`.
fn time_ingest(
    args: &Args,
    extracts: &Path,
    store: &Path,
    keys: &Keys,
    runs: usize,
    figures: &mut Vec<Figure>,
) -> Result<()> {
    let rows: u64 = dir_rows(extracts)?;
    let bytes: u64 = ingest::EXTRACTS
        .iter()
        .map(|n| {
            std::fs::metadata(extracts.join(n))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    println!(
        "extracts: {} data rows, {:.1} MiB in {}",
        rows,
        bytes as f64 / (1 << 20) as f64,
        extracts.display()
    );
    let mut ingest_secs = Vec::new();
    let mut plain_secs = Vec::new();
    let mut store_bytes = 0u64;
    for run in 0..runs {
        let out = args.data.join("plain");
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        plain_convert(extracts, &out)?;
        plain_secs.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&out);

        let _ = std::fs::remove_dir_all(store);
        let t = Instant::now();
        let report = ingest::ingest(&quiet(IngestOptions::new(extracts, store)), keys)?;
        ingest_secs.push(t.elapsed().as_secs_f64());
        store_bytes = report
            .version
            .manifest
            .tables
            .iter()
            .flat_map(|t| &t.files)
            .map(|f| f.bytes)
            .sum();
        println!(
            "run {}: plain {:.2}s, ingest {:.2}s",
            run + 1,
            plain_secs[run],
            ingest_secs[run]
        );
    }
    let ingest_peak = memory::status_bytes("VmHWM").unwrap_or(0);
    let (ingest_t, plain_t) = (median(&mut ingest_secs), median(&mut plain_secs));
    figures.push(Figure::new("ingest: time", ingest_t, "s"));
    figures.push(Figure::new(
        "ingest: throughput",
        rows as f64 / ingest_t,
        "rows/s",
    ));
    figures.push(Figure::new("plain CSV→Parquet: time", plain_t, "s"));
    figures.push(Figure::new(
        "plain CSV→Parquet: throughput",
        rows as f64 / plain_t,
        "rows/s",
    ));
    figures
        .push(Figure::new("ingest speed / plain speed", plain_t / ingest_t, "×").target(">= 0.7"));
    figures.push(Figure::new(
        "store size",
        store_bytes as f64 / (1 << 20) as f64,
        "MiB",
    ));
    figures.push(Figure::new(
        "memory: peak RSS of ingest",
        ingest_peak as f64 / (1u64 << 20) as f64,
        "MiB",
    ));
    Ok(())
}

/// Data rows of all extracts (lines minus headers; no extract field holds a newline).
fn dir_rows(dir: &Path) -> Result<u64> {
    let mut n = 0u64;
    for name in ingest::EXTRACTS {
        let bytes = std::fs::read(dir.join(name)).with_context(|| name.to_string())?;
        n += bytecount(&bytes).saturating_sub(1);
    }
    Ok(n)
}

fn bytecount(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

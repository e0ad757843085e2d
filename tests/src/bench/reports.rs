//! The canned reports: every built-in definition with its default parameters, run through
//! the policy layer in the commissioners' project (`run_report`: the area list, numerator
//! and denominator queries, then rates and totals), as the Reports service runs them.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use fivesafes_policies::query::ProjectContext;
use fivesafes_policies::reports::{ReportRegistry, run_report};
use serde::Serialize;

use super::{median, ms};

/// One report's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ReportTiming {
    /// The report's name.
    pub name: String,
    /// Median latency, ms.
    pub median_ms: f64,
    /// Rows of the report (cells and totals).
    pub rows: usize,
    /// Rows scanned by its three queries.
    pub rows_scanned: u64,
}

/// Runs every built-in report `runs` times (after one untimed warm-up run) in `cx`.
pub async fn time_all(cx: &ProjectContext, runs: usize) -> Result<Vec<ReportTiming>> {
    let registry = ReportRegistry::builtin()?;
    let mut out = Vec::new();
    for def in registry.list() {
        let bound = registry.validate(&def.name, &BTreeMap::new())?;
        let warm = run_report(cx, &bound)
            .await
            .with_context(|| format!("report {}", def.name))?;
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            run_report(cx, &bound).await?;
            samples.push(ms(t.elapsed()));
        }
        out.push(ReportTiming {
            name: def.name.clone(),
            median_ms: median(&mut samples),
            rows: warm.rows.len(),
            rows_scanned: warm.rows_scanned(),
        });
    }
    Ok(out)
}

//! The report chart as a standalone SVG document: the rate of every area as horizontal bars,
//! for the last period of the report that has a released rate ([`chart_period`]), with a
//! dashed line at that period's total (the total of released cells), and, when the report
//! covers more than one period, the total's rate by period as a line below.
//!
//! Suppressed areas keep their row, with a grey marker and `*` instead of a bar, so the
//! chart never suggests a zero. Text uses a generic sans-serif font stack; the shapes alone
//! carry the chart when no font is available (see [`super::png`]).

use std::fmt::Write as _;

use super::super::definition::ReportDef;
use super::super::run::{ReportResult, ReportRow};
use super::{SUPPRESSED_MARK, escape, rate_text};
use crate::output::round_sig;

/// Width of the chart in pixels.
pub const WIDTH: f64 = 960.0;
/// At most this many areas are drawn as bars (the table always has all of them).
pub const MAX_BARS: usize = 300;

const FONT: &str = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";
const LABEL_W: f64 = 260.0;
const RIGHT_W: f64 = 90.0;
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 15.0;
const BLUE: &str = "#005eb8";
const GREY: &str = "#aeb7bd";
const RED: &str = "#d5281b";
const INK: &str = "#212b32";
const TREND_H: f64 = 200.0;

/// A step of 1, 2 or 5 × 10^k close to `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let base = 10f64.powf(raw.log10().floor());
    let f = raw / base;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * base
}

/// (axis maximum, tick step) for values up to `max`.
fn axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let step = nice_step(max / 5.0);
    ((max / step).ceil().max(1.0) * step, step)
}

/// A tick label without floating-point noise.
fn tick(v: f64) -> String {
    format!("{}", round_sig(v, 6))
}

/// Text element.
fn text(out: &mut String, x: f64, y: f64, size: f64, anchor: &str, extra: &str, s: &str) {
    let _ = write!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" fill="{INK}"{extra}>{}</text>"#,
        escape(s)
    );
}

/// The label of an area row: code and, when known, a shortened name.
fn area_label(r: &ReportRow) -> String {
    match &r.area_name {
        Some(n) if !n.is_empty() => {
            let short: String = n.chars().take(26).collect();
            let ell = if n.chars().count() > 26 { "…" } else { "" };
            format!("{} {short}{ell}", r.area)
        }
        _ => r.area.clone(),
    }
}

/// The period the bars show: the last one with at least one released rate, else the last.
pub fn chart_period(result: &ReportResult) -> Option<String> {
    result
        .periods
        .iter()
        .rev()
        .find(|p| {
            result
                .cells()
                .any(|r| r.period == p.label && r.rate.is_some())
        })
        .or(result.periods.last())
        .map(|p| p.label.clone())
}

/// The chart of `result` as an SVG document (see the module documentation).
pub fn to_svg(result: &ReportResult, def: &ReportDef) -> String {
    let period = chart_period(result);
    let rows: Vec<&ReportRow> = result
        .cells()
        .filter(|r| Some(&r.period) == period.as_ref())
        .collect();
    let shown = &rows[..rows.len().min(MAX_BARS)];
    let total = result.totals().find(|r| Some(&r.period) == period.as_ref());
    let totals: Vec<&ReportRow> = result.totals().collect();
    let trend = totals.len() > 1;

    let top = 78.0;
    let bars_h = (shown.len().max(1) as f64) * ROW_H;
    let axis_y = top + bars_h + 6.0;
    let mut height = axis_y + 40.0;
    let trend_top = height + 30.0;
    if trend {
        height = trend_top + TREND_H + 60.0;
    }
    height += 24.0;

    let mut out = String::new();
    let title = &def.title;
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" role="img" aria-label="{}" font-family="{FONT}">"#,
        escape(title)
    );
    let _ = write!(
        out,
        "<title>{}</title><desc>{} by {}, {}; {}</desc>",
        escape(title),
        escape(&def.rate_unit),
        escape(result.area_level.label()),
        escape(period.as_deref().unwrap_or("no period")),
        escape("suppressed areas are marked * and drawn without a bar")
    );
    let _ = write!(
        out,
        r##"<rect class="background" x="0" y="0" width="{WIDTH}" height="{height:.0}" fill="#ffffff"/>"##
    );
    text(
        &mut out,
        16.0,
        26.0,
        16.0,
        "start",
        r#" font-weight="bold""#,
        title,
    );
    let subtitle = format!(
        "{} by {}, {} ({})",
        def.label("rate"),
        result.area_level.label(),
        period.as_deref().unwrap_or("no period"),
        def.rate_unit
    );
    text(&mut out, 16.0, 46.0, 12.0, "start", "", &subtitle);

    // Bars.
    let plot_w = WIDTH - LABEL_W - RIGHT_W;
    let max = shown
        .iter()
        .filter_map(|r| r.rate)
        .chain(total.and_then(|t| t.rate))
        .fold(0.0f64, f64::max);
    let (axis_max, step) = axis(max);
    let x_of = |v: f64| LABEL_W + (v / axis_max).clamp(0.0, 1.0) * plot_w;
    let mut t = 0.0;
    while t <= axis_max * (1.0 + 1e-9) {
        let x = x_of(t);
        let _ = write!(
            out,
            r##"<line class="grid" x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{axis_y:.1}" stroke="#e8edee" stroke-width="1"/>"##
        );
        text(&mut out, x, axis_y + 16.0, 11.0, "middle", "", &tick(t));
        t += step;
    }
    let _ = write!(
        out,
        r##"<line class="axis" x1="{LABEL_W:.1}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="{INK}" stroke-width="1"/>"##,
        LABEL_W + plot_w
    );
    for (i, r) in shown.iter().enumerate() {
        let y = top + i as f64 * ROW_H;
        let _ = write!(
            out,
            r#"<g class="row" data-area="{}" data-rate="{}">"#,
            escape(&r.area),
            escape(&rate_text(r.rate))
        );
        text(
            &mut out,
            LABEL_W - 8.0,
            y + BAR_H - 3.0,
            12.0,
            "end",
            "",
            &area_label(r),
        );
        match r.rate {
            Some(rate) => {
                let w = (x_of(rate) - LABEL_W).max(0.5);
                let _ = write!(
                    out,
                    r#"<rect class="bar" x="{LABEL_W:.1}" y="{y:.1}" width="{w:.1}" height="{BAR_H}" fill="{BLUE}"/>"#
                );
                text(
                    &mut out,
                    LABEL_W + w + 4.0,
                    y + BAR_H - 3.0,
                    11.0,
                    "start",
                    "",
                    &rate_text(Some(rate)),
                );
            }
            None => {
                let _ = write!(
                    out,
                    r#"<rect class="suppressed-marker" x="{LABEL_W:.1}" y="{:.1}" width="10" height="10" fill="{GREY}"/>"#,
                    y + 2.5
                );
                text(
                    &mut out,
                    LABEL_W + 16.0,
                    y + BAR_H - 3.0,
                    11.0,
                    "start",
                    r##" fill-opacity="0.8""##,
                    &format!("{SUPPRESSED_MARK} suppressed"),
                );
            }
        }
        out.push_str("</g>");
    }
    if shown.is_empty() {
        text(
            &mut out,
            LABEL_W + plot_w / 2.0,
            top + 14.0,
            12.0,
            "middle",
            "",
            "no areas",
        );
    }
    if rows.len() > shown.len() {
        text(
            &mut out,
            LABEL_W,
            axis_y + 32.0,
            11.0,
            "start",
            "",
            &format!(
                "first {} of {} areas shown; the table lists all",
                shown.len(),
                rows.len()
            ),
        );
    }
    if let Some(rate) = total.and_then(|t| t.rate) {
        let x = x_of(rate);
        let _ = write!(
            out,
            r#"<line class="overall" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{axis_y:.1}" stroke="{RED}" stroke-width="2" stroke-dasharray="6 4"/>"#,
            top - 8.0
        );
        text(
            &mut out,
            x,
            top - 12.0,
            11.0,
            "middle",
            "",
            &format!("total of released areas: {}", rate_text(Some(rate))),
        );
    }

    // The total's rate by period.
    if trend {
        trend_panel(&mut out, def, &totals, trend_top);
    }
    text(
        &mut out,
        16.0,
        height - 10.0,
        10.0,
        "start",
        "",
        &format!(
            "{SUPPRESSED_MARK} suppressed (small numbers or none). Totals add up released cells only."
        ),
    );
    out.push_str("</svg>");
    out
}

fn trend_panel(out: &mut String, def: &ReportDef, totals: &[&ReportRow], top: f64) {
    text(
        out,
        16.0,
        top - 8.0,
        13.0,
        "start",
        r#" font-weight="bold""#,
        &format!("Total of released areas: {} by period", def.label("rate")),
    );
    let left = LABEL_W;
    let plot_w = WIDTH - LABEL_W - RIGHT_W;
    let bottom = top + TREND_H;
    let max = totals.iter().filter_map(|r| r.rate).fold(0.0f64, f64::max);
    let (axis_max, step) = axis(max);
    let y_of = |v: f64| bottom - (v / axis_max).clamp(0.0, 1.0) * (TREND_H - 10.0);
    let n = totals.len();
    let x_of = |i: usize| {
        if n <= 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let mut t = 0.0;
    while t <= axis_max * (1.0 + 1e-9) {
        let y = y_of(t);
        let _ = write!(
            out,
            r##"<line class="grid" x1="{left:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e8edee" stroke-width="1"/>"##,
            left + plot_w
        );
        text(out, left - 8.0, y + 4.0, 11.0, "end", "", &tick(t));
        t += step;
    }
    // One polyline per run of released totals.
    let mut run: Vec<String> = Vec::new();
    let flush = |out: &mut String, run: &mut Vec<String>| {
        if run.len() > 1 {
            let _ = write!(
                out,
                r#"<polyline class="trend" points="{}" fill="none" stroke="{BLUE}" stroke-width="2"/>"#,
                run.join(" ")
            );
        }
        run.clear();
    };
    for (i, r) in totals.iter().enumerate() {
        match r.rate {
            Some(v) => run.push(format!("{:.1},{:.1}", x_of(i), y_of(v))),
            None => flush(out, &mut run),
        }
    }
    flush(out, &mut run);
    let every = n.div_ceil(12).max(1);
    for (i, r) in totals.iter().enumerate() {
        let x = x_of(i);
        match r.rate {
            Some(v) => {
                let _ = write!(
                    out,
                    r#"<circle class="point" cx="{x:.1}" cy="{:.1}" r="3.5" fill="{BLUE}"/>"#,
                    y_of(v)
                );
            }
            None => {
                text(out, x, bottom - 4.0, 11.0, "middle", "", SUPPRESSED_MARK);
            }
        }
        if i % every == 0 || i + 1 == n {
            text(out, x, bottom + 16.0, 11.0, "middle", "", &r.period);
        }
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{left:.1}" y1="{bottom:.1}" x2="{:.1}" y2="{bottom:.1}" stroke="{INK}" stroke-width="1"/>"#,
        left + plot_w
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_nice() {
        let close = |(a, b): (f64, f64), (x, y): (f64, f64)| {
            assert!(
                (a - x).abs() < 1e-9 && (b - y).abs() < 1e-9,
                "{a},{b} vs {x},{y}"
            );
        };
        close(axis(0.0), (1.0, 0.2));
        close(axis(476.0), (500.0, 100.0));
        close(axis(44.7), (50.0, 10.0));
        close(axis(9.0), (10.0, 2.0));
        assert_eq!(tick(0.2 + 0.1), "0.3");
    }
}

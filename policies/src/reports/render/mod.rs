//! Renderers of a [`ReportResult`]: machine-readable CSV, a plain-text table for terminals,
//! a self-contained HTML page, the chart as SVG, and the chart as PNG.
//!
//! They only format what the result already holds (released values), so they cannot
//! release anything more than the result does. Suppressed values are blank in CSV and `*`
//! elsewhere; every human-facing rendering carries the suppression legend.

pub mod html;
pub mod png;
pub mod svg;
pub mod text;

pub use html::to_html;
pub use png::{PngOptions, to_png, to_png_with};
pub use svg::to_svg;
pub use text::{to_csv, to_table_text};

use super::run::ReportResult;

/// The marker shown for a suppressed value in human-facing renderings.
pub const SUPPRESSED_MARK: &str = "*";

/// A released count with thousands separators (`12,345`), or [`SUPPRESSED_MARK`].
pub(crate) fn count_text(v: Option<u64>) -> String {
    match v {
        None => SUPPRESSED_MARK.to_string(),
        Some(n) => {
            let digits = n.to_string();
            let mut out = String::with_capacity(digits.len() + digits.len() / 3);
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }
    }
}

/// A released rate as its shortest exact decimal (rates are already rounded to significant
/// figures: `476`, `44.7`, `0.0123`), or [`SUPPRESSED_MARK`].
pub(crate) fn rate_text(v: Option<f64>) -> String {
    match v {
        None => SUPPRESSED_MARK.to_string(),
        Some(r) => format!("{r}"),
    }
}

/// The disclosure-control legend, one sentence per item.
pub(crate) fn legend(result: &ReportResult) -> Vec<String> {
    let oc = &result.output_control;
    let low = oc.min_persons;
    let high = oc.min_persons + oc.noise_extra_threshold;
    vec![
        format!(
            "{SUPPRESSED_MARK} = suppressed: a count backed by fewer than {low} to {high} \
             persons (the exact threshold varies by cell) is withheld, and so is a count of no \
             records at all — the two are not distinguished."
        ),
        format!(
            "Released counts carry a small deterministic perturbation (at most ±2) and are \
             rounded to the nearest {}.",
            oc.rounding_base
        ),
        format!(
            "Rates are computed from the released numerator and denominator, to {} \
             significant figures; a rate is withheld when either is suppressed.",
            oc.significant_figures
        ),
        "Total rows add up only the released counts of the areas whose rate is released \
         (their name says how many); they are not separately computed totals, so no \
         suppressed value can be recovered by subtraction."
            .to_string(),
    ]
}

/// The parameters as `name = value` pairs joined by `, `.
pub(crate) fn parameters_text(result: &ReportResult) -> String {
    result
        .parameters
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Escapes text for HTML and XML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts_rates_and_escapes() {
        assert_eq!(count_text(Some(0)), "0");
        assert_eq!(count_text(Some(999)), "999");
        assert_eq!(count_text(Some(1000)), "1,000");
        assert_eq!(count_text(Some(1234567)), "1,234,567");
        assert_eq!(count_text(None), "*");
        assert_eq!(rate_text(Some(476.0)), "476");
        assert_eq!(rate_text(Some(44.7)), "44.7");
        assert_eq!(rate_text(None), "*");
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

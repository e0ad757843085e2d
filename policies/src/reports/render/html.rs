//! The report as one self-contained HTML page: title and parameters, the chart (inline SVG),
//! the table, the disclosure-control legend and the indicator definition. No external
//! stylesheet, script, font or image is referenced, so the page can be saved and mailed.
//!
//! A short inline script checks in the browser that the table has its rows and the chart
//! has been laid out, and records what it found on `<body data-rendered="table,chart">`
//! (used by the headless-browser test). The page is complete without it: under a Content
//! Security Policy that forbids inline scripts only that marker is missing.

use std::fmt::Write as _;

use super::super::definition::ReportDef;
use super::super::run::ReportResult;
use super::{count_text, escape, legend, rate_text, svg::to_svg};

const STYLE: &str = "\
body{font-family:'DejaVu Sans','Liberation Sans',Arial,Helvetica,sans-serif;color:#212b32;\
margin:24px auto;max-width:1000px;padding:0 16px;line-height:1.4}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em}\
.params{color:#4c6272;margin-top:0}\
.chart svg{max-width:100%;height:auto;border:1px solid #d8dde0}\
table.report{border-collapse:collapse;width:100%;font-size:.9em}\
table.report th,table.report td{border-bottom:1px solid #d8dde0;padding:4px 8px;text-align:left}\
table.report td.num,table.report th.num{text-align:right;font-variant-numeric:tabular-nums}\
table.report tr.total td{font-weight:bold;border-bottom:2px solid #212b32}\
table.report td:nth-child(3){white-space:nowrap}\
table.report tr.suppressed td.rate{color:#768692}\
dl.definition dt{font-weight:bold;margin-top:.6em}dl.definition dd{margin-left:0}\
footer{margin-top:2em;color:#4c6272;font-size:.8em}";

const SCRIPT: &str = "\
(function(){var done=[];\
var t=document.querySelector('table.report');\
var want=t?parseInt(t.getAttribute('data-rows'),10):-1;\
if(t&&t.tBodies.length&&t.tBodies[0].rows.length===want&&want>0){done.push('table');}\
var s=document.querySelector('.chart svg');\
if(s){var b=s.getBoundingClientRect();\
var marks=s.querySelectorAll('rect.bar,rect.suppressed-marker').length;\
if(b.width>0&&b.height>0&&marks>0){done.push('chart');}}\
document.body.setAttribute('data-rendered',done.join(','));})();";

/// A multiplier as readers write it: `1,000`, `100,000`, `100`.
fn multiplier_text(m: f64) -> String {
    if m.fract() == 0.0 && (1.0..1e15).contains(&m) {
        count_text(Some(m as u64))
    } else {
        format!("{m}")
    }
}

/// The report as a self-contained HTML page (see the module documentation).
pub fn to_html(result: &ReportResult, def: &ReportDef) -> String {
    let mut h = String::new();
    let title = escape(&def.title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n\
         <body data-report=\"{}\"><header><h1>{title}</h1><p class=\"params\">",
        escape(&def.name)
    );
    let params: Vec<String> = result
        .parameters
        .iter()
        .map(|(k, v)| {
            format!(
                "<span data-param=\"{0}\">{0}: <b>{1}</b></span>",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let _ = writeln!(
        h,
        "{} · {}</p><p>{}</p></header>",
        params.join(" · "),
        escape(&def.rate_unit),
        escape(def.description.trim())
    );

    let _ = writeln!(
        h,
        "<section class=\"chart\"><h2>Chart</h2>{}</section>",
        to_svg(result, def)
    );

    // The table.
    let _ = write!(
        h,
        "<section><h2>Results</h2><table class=\"report\" data-rows=\"{}\"><thead><tr>\
         <th>{}</th><th>{}</th><th>{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th>\
         <th class=\"num\">{}</th></tr></thead><tbody>",
        result.rows.len(),
        escape(result.area_level.label()),
        escape(def.label("area_name")),
        escape(def.label("period")),
        escape(def.label("numerator")),
        escape(def.label("denominator")),
        escape(def.label("rate")),
    );
    for r in &result.rows {
        let mut class = Vec::new();
        if r.total {
            class.push("total");
        }
        if r.suppressed {
            class.push("suppressed");
        }
        let _ = write!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num rate\">{}</td></tr>",
            class.join(" "),
            escape(&r.area),
            escape(r.area_name.as_deref().unwrap_or_default()),
            escape(&r.period),
            count_text(r.numerator),
            count_text(r.denominator),
            rate_text(r.rate)
        );
    }
    h.push_str("</tbody></table></section>\n");

    // Legend.
    h.push_str("<section class=\"legend\"><h2>Disclosure control</h2><ul>");
    for l in legend(result) {
        let _ = write!(h, "<li>{}</li>", escape(&l));
    }
    h.push_str("</ul></section>\n");

    // Definition.
    let ind = &def.indicator;
    let _ = writeln!(
        h,
        "<section><h2>Definition</h2><dl class=\"definition\">\
         <dt>Numerator: {}</dt><dd>{}</dd>\
         <dt>Denominator: {}</dt><dd>{}</dd>\
         <dt>Rate</dt><dd>numerator ÷ denominator × {} ({})</dd>\
         <dt>Indicator</dt><dd>{} — {}</dd>\
         <dt>Method</dt><dd>{}</dd>\
         <dt>Reference</dt><dd>{}</dd></dl></section>",
        escape(&def.numerator.label),
        escape(def.numerator.description.trim()),
        escape(&def.denominator.label),
        escape(def.denominator.description.trim()),
        escape(&multiplier_text(def.multiplier)),
        escape(&def.rate_unit),
        escape(&ind.name),
        escape(&ind.source),
        escape(ind.method.trim()),
        escape(&ind.reference)
    );
    let _ = write!(
        h,
        "<footer>Report <code>{}</code>. Output-control rules applied: {}.</footer>\n\
         <script>{SCRIPT}</script></body></html>\n",
        escape(&result.statement),
        escape(&result.rules_applied.join(", "))
    );
    h
}

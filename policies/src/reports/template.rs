//! The placeholders of a report's SQL, parsed once when the definition is loaded.
//!
//! A report's SQL is fixed text written by the operator, with placeholders in double braces
//! that binding replaces by SQL generated from *validated* parameter values only — never by
//! caller text:
//!
//! | placeholder | becomes |
//! |---|---|
//! | `{{area(p)}}` | the area column of the `practices` table aliased `p`: `p.practice_code`, `p.sub_icb_code` or `p.region`, chosen by the `by` parameter |
//! | `{{period(t.col)}}` | an expression giving the period label (`2023-04` or `2023-24`) of the date column `t.col`, chosen by the `period` parameter |
//! | `{{periods}}` | a `VALUES` table of the report's periods: `(period, period_start, period_end, midpoint)` |
//! | `{{name}}` | the literal of parameter `name`: `DATE '2023-04-01'`, an integer, or a quoted enumeration value |
//!
//! Arguments of `area(…)` and `period(…)` are checked to be plain (optionally qualified)
//! identifiers when the definition is loaded.

/// One piece of a parsed SQL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Literal SQL text.
    Text(String),
    /// `{{area(alias)}}`: the area column of the `practices` table under `alias`.
    Area(String),
    /// `{{period(column)}}`: the period label of a date column.
    Period(String),
    /// `{{periods}}`: the table of the report's periods.
    Periods,
    /// `{{name}}`: a parameter's SQL literal.
    Param(String),
}

/// A parsed SQL template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Template {
    /// The pieces, in order.
    pub(crate) segments: Vec<Segment>,
}

/// Whether `s` is a lower-case SQL identifier (`[a-z_][a-z0-9_]*`).
fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `s` is `ident` or `ident.ident`.
fn column_ref(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = parts.next().is_some_and(identifier);
    match (parts.next(), parts.next()) {
        (None, _) => ok,
        (Some(c), None) => ok && identifier(c),
        _ => false,
    }
}

impl Template {
    /// Parses `sql`; the error says which placeholder is wrong.
    pub(crate) fn parse(sql: &str) -> Result<Template, String> {
        let mut segments = Vec::new();
        let mut rest = sql;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| "a `{{` without a closing `}}`".to_string())?;
            let inner = after[..close].trim();
            if inner.contains("{{") {
                return Err("a `{{` without a closing `}}`".into());
            }
            segments.push(Self::placeholder(inner)?);
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err("a `}}` without an opening `{{`".into());
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_string()));
        }
        Ok(Template { segments })
    }

    fn placeholder(inner: &str) -> Result<Segment, String> {
        if let Some(args) = inner.strip_suffix(')') {
            let (func, arg) = args
                .split_once('(')
                .ok_or_else(|| format!("placeholder {{{{{inner}}}}} is malformed"))?;
            let arg = arg.trim();
            return match func.trim() {
                "area" if identifier(arg) => Ok(Segment::Area(arg.to_string())),
                "period" if column_ref(arg) => Ok(Segment::Period(arg.to_string())),
                "area" | "period" => Err(format!(
                    "placeholder {{{{{inner}}}}}: the argument must be a table alias or \
                     alias.column"
                )),
                other => Err(format!(
                    "unknown placeholder function {other:?} (known: area(alias), period(column))"
                )),
            };
        }
        match inner {
            "periods" => Ok(Segment::Periods),
            name if identifier(name) => Ok(Segment::Param(name.to_string())),
            _ => Err(format!("placeholder {{{{{inner}}}}} is malformed")),
        }
    }

    /// The parameter names the template refers to directly.
    pub(crate) fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(p.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_placeholders() {
        let t = Template::parse(
            "SELECT {{area(p)}} AS area, {{ period(a.admidate) }} FROM x JOIN {{periods}} \
             WHERE d >= {{from}}",
        )
        .expect("parses");
        assert_eq!(
            t.segments,
            vec![
                Segment::Text("SELECT ".into()),
                Segment::Area("p".into()),
                Segment::Text(" AS area, ".into()),
                Segment::Period("a.admidate".into()),
                Segment::Text(" FROM x JOIN ".into()),
                Segment::Periods,
                Segment::Text(" WHERE d >= ".into()),
                Segment::Param("from".into()),
            ]
        );
        assert_eq!(t.params().collect::<Vec<_>>(), vec!["from"]);
    }

    #[test]
    fn refuses_malformed_placeholders() {
        for bad in [
            "SELECT {{area(p.x; DROP)}}",
            "SELECT {{period(1)}}",
            "SELECT {{frobnicate(p)}}",
            "SELECT {{from",
            "SELECT from}}",
            "SELECT {{Bad Name}}",
            "SELECT {{area p}}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}

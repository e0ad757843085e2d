//! The project register: the "safe projects" of the Five Safes.
//!
//! A TOML file (see `policies/projects.example.toml`, the operators' reference) lists every
//! project of the environment: its purpose, whether the national data opt-out applies, its
//! expiry, an optional date window, its daily budgets, the tables and columns it is approved
//! for, output-control parameters that may only be stricter than the DESIGN.md floors, and
//! the principals who may work in it with their roles.
//!
//! The server loads it once at start-up with [`Register::load`]. Loading is all or nothing:
//! the first problem found fails the load with the file, the 1-based line and a reason an
//! operator can act on. Syntax and shape errors (unknown keys, wrong types, missing keys) take
//! their position from the TOML parser; semantic errors take it from [`toml::Spanned`] fields
//! of the raw (serde) structs below, which mirror the file one to one and are then validated
//! into the public types.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use fivesafes_engine::catalog::{self, PRIVACY_UNIT, TableClass, TableDef};
use fivesafes_engine::dates;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::RegisterError;

/// Largest `noise_extra_threshold` a project may set: beyond this the noisy threshold stops
/// being a small perturbation of `min_persons` and should be expressed as `min_persons`.
pub const MAX_NOISE_EXTRA_THRESHOLD: u32 = 10;

/// Largest `low_effect_spread` a project may set: beyond this a condition that leaves out a
/// few dozen persons of a cell could be ignored, and the answers stop being about the
/// question asked.
pub const MAX_LOW_EFFECT_SPREAD: u32 = 30;

/// All projects of the environment, validated. Built once at start-up and shared read-only.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    /// Projects in file order (ids are unique).
    projects: Vec<Project>,
}

/// One approved project.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// Unique id, `[a-z0-9-]{3,64}`; what clients name when they open a session.
    pub id: String,
    /// The approved purpose, shown to members and recorded in the audit log.
    pub purpose: String,
    /// Whether the national data opt-out is applied to this project's queries.
    pub opt_out: OptOut,
    /// Last day (Date32, days since 1970-01-01) on which the project may be used.
    pub expires: i32,
    /// Inclusive (from, to) Date32 range of event dates the project may see, if restricted.
    pub date_window: Option<(i32, i32)>,
    /// Daily query budget (at least 1).
    pub queries_per_day: u32,
    /// Daily differential-privacy budget, when the project runs in that mode (> 0).
    pub epsilon_per_day: Option<f64>,
    /// Approved tables, in the store's table order.
    pub tables: Vec<ApprovedTable>,
    /// Output-control parameters, never looser than [`OutputControl::default`].
    pub output: OutputControl,
    /// Who may work in the project, in file order; at least one.
    pub members: Vec<Member>,
}

impl Project {
    /// Whether the project has expired on day `today` (Date32): `expires` is the last day of
    /// use, so a project expiring on 2027-03-31 may still be used on that day.
    pub fn is_expired(&self, today: i32) -> bool {
        today > self.expires
    }

    /// The roles `principal` holds in this project (empty when not a member), in file order.
    pub fn role_of(&self, principal: &str) -> Vec<Role> {
        self.members
            .iter()
            .filter(|m| m.principal == principal)
            .map(|m| m.role)
            .collect()
    }

    /// The approval of table `name`, if the project is approved for it.
    pub fn table(&self, name: &str) -> Option<&ApprovedTable> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// How the national data opt-out applies to a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptOut {
    /// Opted-out persons (and persons of unknown status) are removed from every personal
    /// table at query time. The default.
    Applies,
    /// The project's purpose is exempt (for example, s251 support), on this legal basis.
    Exempt {
        /// The legal basis as written in the register, recorded in the audit log.
        legal_basis: String,
    },
}

/// A table a project is approved for, and which of its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedTable {
    /// Table name as in the store catalogue.
    pub name: String,
    /// Approved columns in stored order; never a secret column. For a personal table this
    /// always includes the privacy unit `patient_id`.
    pub columns: Vec<String>,
    /// Whether the table is personal data (rows about persons, privacy unit `patient_id`).
    pub personal: bool,
}

impl ApprovedTable {
    /// Whether `column` is approved.
    pub fn allows(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }
}

/// Output-control parameters of a project (DESIGN.md rules 3 and 5). The defaults are the
/// floors: a project may only make them stricter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputControl {
    /// A cell backed by fewer than `min_persons + t` distinct persons is suppressed
    /// (floor 8: "7 or fewer suppressed").
    pub min_persons: u32,
    /// Released counts are rounded to a multiple of this (floor 5; always a multiple of 5).
    pub rounding_base: u32,
    /// `t` in `0..=noise_extra_threshold`, drawn from the cell key, is added to
    /// `min_persons` (floor 2, at most [`MAX_NOISE_EXTRA_THRESHOLD`]).
    pub noise_extra_threshold: u32,
    /// Sums and means are released to this many significant figures (1..=3; fewer is
    /// stricter).
    pub significant_figures: u32,
    /// Rule 7's low-effect threshold of a condition in a cell is drawn from the keys of the
    /// persons it decides, from `min_persons + 1 + noise_extra_threshold` up to this much
    /// more (floor 3, at most [`MAX_LOW_EFFECT_SPREAD`]; larger is stricter): a condition
    /// aimed at the lowest threshold tips with the target present in one probe in
    /// `low_effect_spread + 1`, and conditions that change a cell by up to the highest
    /// threshold may be ignored ([`crate::output::low_effect_threshold`]).
    pub low_effect_spread: u32,
}

impl Default for OutputControl {
    /// The DESIGN.md defaults, which are also the loosest values allowed.
    fn default() -> Self {
        Self {
            min_persons: 8,
            rounding_base: 5,
            noise_extra_threshold: 2,
            significant_figures: 3,
            low_effect_spread: 3,
        }
    }
}

/// What a member may do in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs SQL through Flight SQL; gets protected aggregates.
    Analyst,
    /// Runs canned reports.
    Commissioner,
    /// Reads and verifies the audit log.
    Auditor,
    /// Administers the environment.
    Admin,
}

impl Role {
    /// The role's name as written in the register (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analyst => "analyst",
            Self::Commissioner => "commissioner",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A principal's role in a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The authenticated principal name, `[a-z0-9_.-]{1,64}`.
    pub principal: String,
    /// What the principal may do in the project.
    pub role: Role,
}

impl Register {
    /// Parses and validates a register. `source_name` (usually the path) prefixes every error.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Register, RegisterError> {
        let ctx = Ctx { text, source_name };
        let raw: RawRegister = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| ctx.line_of(s.start));
            ctx.error_at_line(line, e.message().trim_end().to_owned())
        })?;
        if raw.project.is_empty() {
            return Err(ctx.error_at_line(
                1,
                "no projects: the register must define at least one [[project]]".to_owned(),
            ));
        }
        let mut projects: Vec<Project> = Vec::with_capacity(raw.project.len());
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for raw_project in raw.project {
            let id_line = ctx.line_of(raw_project.id.span().start);
            let project = ctx.project(raw_project)?;
            if let Some(first) = first_line.get(&project.id) {
                return Err(ctx.error_at_line(
                    id_line,
                    format!(
                        "duplicate project id \"{}\" (first defined on line {first}); project ids must be unique",
                        project.id
                    ),
                ));
            }
            first_line.insert(project.id.clone(), id_line);
            projects.push(project);
        }
        Ok(Register { projects })
    }

    /// Reads and validates the register at `path`; errors name the path.
    pub fn load(path: &Path) -> Result<Register, RegisterError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegisterError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The project with this id.
    pub fn project(&self, id: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    /// All projects, in file order.
    pub fn projects(&self) -> &[Project] {
        &self.projects
    }

    /// Every principal that is a member of some project, sorted, once each.
    pub fn principals(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&str> = self
            .projects
            .iter()
            .flat_map(|p| p.members.iter().map(|m| m.principal.as_str()))
            .collect();
        set.into_iter().map(String::from).collect()
    }

    /// Projects where `principal` holds `role`, in file order.
    pub fn projects_of(&self, principal: &str, role: Role) -> Vec<&Project> {
        self.projects
            .iter()
            .filter(|p| {
                p.members
                    .iter()
                    .any(|m| m.principal == principal && m.role == role)
            })
            .collect()
    }

    /// A stable hex SHA-256 of the register's [canonical](Register::canonical) form: the same
    /// projects give the same hash whatever the file's formatting and comments. Recorded in
    /// the audit log at start-up so auditors can tell which policy was in force.
    pub fn policy_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }

    /// A deterministic text form of the register's content, to be hashed into the policy
    /// hash recorded in the audit log at start-up.
    ///
    /// It depends only on the validated content: comments, formatting, key order, the order
    /// of projects, tables, columns and members, the spelling of dates (TOML date or string)
    /// and whether default output-control values are written out or left implicit make no
    /// difference. Every field is written with defaults resolved, projects sorted by id,
    /// tables and columns in stored order, members sorted by principal then role, dates as
    /// `YYYY-MM-DD`, free text quoted with `\` escapes. The first line names the format
    /// version; change it if the format ever changes.
    pub fn canonical(&self) -> String {
        let mut projects: Vec<&Project> = self.projects.iter().collect();
        projects.sort_by(|a, b| a.id.cmp(&b.id));
        let mut out = String::from("fivesafes-project-register v2\n");
        for p in projects {
            out.push_str(&format!("project {}\n", p.id));
            out.push_str(&format!("  purpose {}\n", quote(&p.purpose)));
            match &p.opt_out {
                OptOut::Applies => out.push_str("  national_opt_out applies\n"),
                OptOut::Exempt { legal_basis } => {
                    out.push_str(&format!(
                        "  national_opt_out exempt {}\n",
                        quote(legal_basis)
                    ));
                }
            }
            out.push_str(&format!("  expires {}\n", dates::format_ymd(p.expires)));
            match p.date_window {
                Some((from, to)) => out.push_str(&format!(
                    "  date_window {} {}\n",
                    dates::format_ymd(from),
                    dates::format_ymd(to)
                )),
                None => out.push_str("  date_window none\n"),
            }
            out.push_str(&format!("  queries_per_day {}\n", p.queries_per_day));
            match p.epsilon_per_day {
                // `Display` of f64 is the shortest text that round-trips: stable.
                Some(eps) => out.push_str(&format!("  epsilon_per_day {eps}\n")),
                None => out.push_str("  epsilon_per_day none\n"),
            }
            let o = &p.output;
            out.push_str(&format!(
                "  output min_persons {} rounding_base {} noise_extra_threshold {} significant_figures {} low_effect_spread {}\n",
                o.min_persons,
                o.rounding_base,
                o.noise_extra_threshold,
                o.significant_figures,
                o.low_effect_spread
            ));
            for t in &p.tables {
                out.push_str(&format!("  table {} {}\n", t.name, t.columns.join(",")));
            }
            let mut members: Vec<(&str, &str)> = p
                .members
                .iter()
                .map(|m| (m.principal.as_str(), m.role.as_str()))
                .collect();
            members.sort_unstable();
            for (principal, role) in members {
                out.push_str(&format!("  member {principal} {role}\n"));
            }
        }
        out
    }
}

/// Quotes free text for the canonical form: `"`, `\` and control characters escaped.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => q.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

// ---------------------------------------------------------------------------------------------
// The file as written (serde), with spans for everything validated semantically.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    #[serde(default)]
    project: Vec<RawProject>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    id: Spanned<String>,
    purpose: Spanned<String>,
    national_opt_out: Option<Spanned<RawOptOut>>,
    opt_out_exemption_basis: Option<Spanned<String>>,
    /// A TOML local date or a `"YYYY-MM-DD"` string; checked in [`Ctx::date`].
    expires: Spanned<toml::Value>,
    date_window: Option<Spanned<RawWindow>>,
    queries_per_day: Spanned<i64>,
    epsilon_per_day: Option<Spanned<f64>>,
    tables: Spanned<BTreeMap<Spanned<String>, Spanned<RawColumns>>>,
    output: Option<RawOutput>,
    #[serde(default)]
    members: Vec<RawMember>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawOptOut {
    Applies,
    Exempt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    from: Spanned<toml::Value>,
    to: Spanned<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    min_persons: Option<Spanned<i64>>,
    rounding_base: Option<Spanned<i64>>,
    noise_extra_threshold: Option<Spanned<i64>>,
    significant_figures: Option<Spanned<i64>>,
    low_effect_spread: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    principal: Spanned<String>,
    role: Role,
}

/// A table's column approval: `"*"` or a list of names (each with its span).
enum RawColumns {
    All,
    List(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawColumns {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ColumnsVisitor;
        impl<'de> Visitor<'de> for ColumnsVisitor {
            type Value = RawColumns;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"*\" (all non-secret columns) or a list of column names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawColumns, E> {
                if v == "*" {
                    Ok(RawColumns::All)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawColumns, A::Error> {
                let mut columns = Vec::new();
                while let Some(c) = seq.next_element::<Spanned<String>>()? {
                    columns.push(c);
                }
                Ok(RawColumns::List(columns))
            }
        }
        deserializer.deserialize_any(ColumnsVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// The text being loaded and its name, to turn spans into lines in errors.
struct Ctx<'a> {
    text: &'a str,
    source_name: &'a str,
}

impl Ctx<'_> {
    /// 1-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        let bytes = self.text.as_bytes();
        let end = offset.min(bytes.len());
        bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn error_at_line(&self, line: usize, message: String) -> RegisterError {
        RegisterError::Invalid {
            source_name: self.source_name.to_owned(),
            line,
            message,
        }
    }

    fn error(&self, span: Range<usize>, message: String) -> RegisterError {
        self.error_at_line(self.line_of(span.start), message)
    }

    fn project(&self, raw: RawProject) -> Result<Project, RegisterError> {
        let id = raw.id.get_ref().clone();
        if !(3..=64).contains(&id.len())
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(self.error(
                raw.id.span(),
                format!(
                    "project id \"{id}\" is not valid: use 3 to 64 characters from a-z, 0-9 and -"
                ),
            ));
        }

        let purpose = raw.purpose.get_ref().trim().to_owned();
        if purpose.is_empty() {
            return Err(self.error(
                raw.purpose.span(),
                format!("project \"{id}\": purpose is empty; state the approved purpose"),
            ));
        }

        let opt_out = self.opt_out(&id, raw.national_opt_out, raw.opt_out_exemption_basis)?;

        let expires = self.date(&id, "expires", &raw.expires)?;

        let date_window = match raw.date_window {
            None => None,
            Some(w) => {
                let from = self.date(&id, "date_window.from", &w.get_ref().from)?;
                let to = self.date(&id, "date_window.to", &w.get_ref().to)?;
                if from > to {
                    return Err(self.error(
                        w.span(),
                        format!(
                            "project \"{id}\": date_window.from ({}) is after date_window.to ({})",
                            dates::format_ymd(from),
                            dates::format_ymd(to)
                        ),
                    ));
                }
                Some((from, to))
            }
        };

        let queries_per_day = match u32::try_from(*raw.queries_per_day.get_ref()) {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(self.error(
                    raw.queries_per_day.span(),
                    format!(
                        "project \"{id}\": queries_per_day = {} is not a valid daily query budget; use a whole number from 1 to {}",
                        raw.queries_per_day.get_ref(),
                        u32::MAX
                    ),
                ));
            }
        };

        let epsilon_per_day = match raw.epsilon_per_day {
            None => None,
            Some(eps) => {
                let e = *eps.get_ref();
                if !(e.is_finite() && e > 0.0) {
                    return Err(self.error(
                        eps.span(),
                        format!(
                            "project \"{id}\": epsilon_per_day = {e} is not a valid differential-privacy budget; use a positive number, or leave it out"
                        ),
                    ));
                }
                Some(e)
            }
        };

        let tables_span = raw.tables.span();
        let tables = self.tables(&id, raw.tables.into_inner())?;

        let output = match raw.output {
            None => OutputControl::default(),
            Some(o) => self.output(&id, o)?,
        };

        let members = self.members(&id, raw.members)?;
        if members.is_empty() {
            return Err(self.error(
                raw.id.span(),
                format!(
                    "project \"{id}\" has no members; add at least one [[project.members]] with a principal and a role"
                ),
            ));
        }
        if tables.is_empty() && members.iter().any(|m| m.role != Role::Auditor) {
            return Err(self.error(
                tables_span,
                format!(
                    "project \"{id}\" approves no tables; an empty table list is allowed only for a project whose members are all auditors"
                ),
            ));
        }

        Ok(Project {
            id,
            purpose,
            opt_out,
            expires,
            date_window,
            queries_per_day,
            epsilon_per_day,
            tables,
            output,
            members,
        })
    }

    fn opt_out(
        &self,
        id: &str,
        kind: Option<Spanned<RawOptOut>>,
        basis: Option<Spanned<String>>,
    ) -> Result<OptOut, RegisterError> {
        match (kind.as_ref().map(|k| *k.get_ref()), basis) {
            (None | Some(RawOptOut::Applies), None) => Ok(OptOut::Applies),
            (None | Some(RawOptOut::Applies), Some(basis)) => Err(self.error(
                basis.span(),
                format!(
                    "project \"{id}\": opt_out_exemption_basis is only allowed with national_opt_out = \"exempt\"; remove it, or mark the project exempt if it has a legal basis to set the national data opt-out aside"
                ),
            )),
            (Some(RawOptOut::Exempt), None) => {
                let span = kind.map_or(0..0, |k| k.span());
                Err(self.error(
                    span,
                    format!(
                        "project \"{id}\" is exempt from the national data opt-out but has no opt_out_exemption_basis; state the legal basis (e.g. \"s251 support, CAG ref 23/CAG/0001\")"
                    ),
                ))
            }
            (Some(RawOptOut::Exempt), Some(basis)) => {
                let legal_basis = basis.get_ref().trim().to_owned();
                if legal_basis.is_empty() {
                    return Err(self.error(
                        basis.span(),
                        format!(
                            "project \"{id}\": opt_out_exemption_basis is empty; state the legal basis for setting the national data opt-out aside"
                        ),
                    ));
                }
                Ok(OptOut::Exempt { legal_basis })
            }
        }
    }

    /// A date written as a TOML local date (`2027-03-31`) or a string (`"2027-03-31"`).
    fn date(&self, id: &str, key: &str, v: &Spanned<toml::Value>) -> Result<i32, RegisterError> {
        let text = match v.get_ref() {
            toml::Value::Datetime(d)
                if d.date.is_some() && d.time.is_none() && d.offset.is_none() =>
            {
                d.to_string()
            }
            toml::Value::String(s) => s.clone(),
            _ => String::new(),
        };
        dates::parse_ymd(text.as_bytes()).ok_or_else(|| {
            self.error(
                v.span(),
                format!(
                    "project \"{id}\": {key} is not a valid date; write a calendar date such as 2027-03-31 (years 1850 to 2199)"
                ),
            )
        })
    }

    fn tables(
        &self,
        id: &str,
        raw: BTreeMap<Spanned<String>, Spanned<RawColumns>>,
    ) -> Result<Vec<ApprovedTable>, RegisterError> {
        // Validate in file order so the first error reported is the first in the file.
        let mut entries: Vec<(Spanned<String>, Spanned<RawColumns>)> = raw.into_iter().collect();
        entries.sort_by_key(|(name, _)| name.span().start);
        let mut approved: Vec<(usize, ApprovedTable)> = Vec::with_capacity(entries.len());
        for (name, columns) in entries {
            let (index, def) = self.approvable_table(id, &name)?;
            let columns = self.columns(id, def, &columns)?;
            approved.push((
                index,
                ApprovedTable {
                    name: def.name.to_owned(),
                    columns,
                    personal: def.class == TableClass::Personal,
                },
            ));
        }
        approved.sort_by_key(|(index, _)| *index);
        Ok(approved.into_iter().map(|(_, t)| t).collect())
    }

    /// The catalogue entry (and its position) of a table a project may be approved for.
    fn approvable_table(
        &self,
        id: &str,
        name: &Spanned<String>,
    ) -> Result<(usize, &'static TableDef), RegisterError> {
        let found = catalog::TABLES
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == name.get_ref().as_str());
        match found {
            None => {
                let known: Vec<&str> = catalog::TABLES
                    .iter()
                    .filter(|t| t.class != TableClass::Governance)
                    .map(|t| t.name)
                    .collect();
                Err(self.error(
                    name.span(),
                    format!(
                        "project \"{id}\": unknown table \"{}\"; tables that can be approved: {}",
                        name.get_ref(),
                        known.join(", ")
                    ),
                ))
            }
            Some((_, def)) if def.class == TableClass::Governance => Err(self.error(
                name.span(),
                format!(
                    "table \"{}\" is governance data and can never be approved",
                    def.name
                ),
            )),
            Some(found) => Ok(found),
        }
    }

    /// The approved columns of `def`, in stored order.
    fn columns(
        &self,
        id: &str,
        def: &TableDef,
        raw: &Spanned<RawColumns>,
    ) -> Result<Vec<String>, RegisterError> {
        let table = def.name;
        let list = match raw.get_ref() {
            RawColumns::All => {
                return Ok(def
                    .columns
                    .iter()
                    .filter(|c| !def.secret.contains(&c.name))
                    .map(|c| c.name.to_owned())
                    .collect());
            }
            RawColumns::List(list) => list,
        };
        if list.is_empty() {
            return Err(self.error(
                raw.span(),
                format!(
                    "project \"{id}\": table \"{table}\" has an empty column list; list the columns to approve, use \"*\" for all of them, or remove the table"
                ),
            ));
        }
        let mut chosen = vec![false; def.columns.len()];
        for column in list {
            let name = column.get_ref().as_str();
            if def.secret.contains(&name) {
                return Err(self.error(
                    column.span(),
                    format!(
                        "project \"{id}\": column \"{name}\" of table \"{table}\" is secret (it drives output-control noise) and can never be approved"
                    ),
                ));
            }
            let Some(index) = def.columns.iter().position(|c| c.name == name) else {
                let known: Vec<&str> = def
                    .columns
                    .iter()
                    .filter(|c| !def.secret.contains(&c.name))
                    .map(|c| c.name)
                    .collect();
                return Err(self.error(
                    column.span(),
                    format!(
                        "project \"{id}\": table \"{table}\" has no column \"{name}\"; its columns are: {}",
                        known.join(", ")
                    ),
                ));
            };
            if chosen[index] {
                return Err(self.error(
                    column.span(),
                    format!(
                        "project \"{id}\": column \"{name}\" of table \"{table}\" is listed twice"
                    ),
                ));
            }
            chosen[index] = true;
        }
        if def.class == TableClass::Personal
            && !list.iter().any(|c| c.get_ref().as_str() == PRIVACY_UNIT)
        {
            return Err(self.error(
                raw.span(),
                format!(
                    "project \"{id}\": table \"{table}\" is personal data, so its approved columns must include \"{PRIVACY_UNIT}\": the privacy unit is needed for output control to count the distinct persons behind each cell"
                ),
            ));
        }
        Ok(def
            .columns
            .iter()
            .zip(&chosen)
            .filter(|(_, chosen)| **chosen)
            .map(|(c, _)| c.name.to_owned())
            .collect())
    }

    fn output(&self, id: &str, raw: RawOutput) -> Result<OutputControl, RegisterError> {
        let floor = OutputControl::default();
        let mut out = floor;
        if let Some(v) = raw.min_persons {
            let n = *v.get_ref();
            if n < i64::from(floor.min_persons) {
                return Err(self.error(
                    v.span(),
                    format!(
                        "project \"{id}\": output.min_persons = {n} is looser than the floor of {}: cells backed by 7 or fewer persons are always suppressed (DESIGN.md rule 3); use {} or more",
                        floor.min_persons, floor.min_persons
                    ),
                ));
            }
            out.min_persons = self.small(id, "min_persons", &v)?;
        }
        if let Some(v) = raw.rounding_base {
            let n = *v.get_ref();
            if n < i64::from(floor.rounding_base) {
                return Err(self.error(
                    v.span(),
                    format!(
                        "project \"{id}\": output.rounding_base = {n} is looser than the floor of {}: released counts are always rounded to a multiple of 5 (DESIGN.md rule 5); use 5 or a larger multiple of 5",
                        floor.rounding_base
                    ),
                ));
            }
            if n % 5 != 0 {
                return Err(self.error(
                    v.span(),
                    format!(
                        "project \"{id}\": output.rounding_base = {n} must be a multiple of 5 (5, 10, 15, ...)"
                    ),
                ));
            }
            out.rounding_base = self.small(id, "rounding_base", &v)?;
        }
        if let Some(v) = raw.noise_extra_threshold {
            let n = *v.get_ref();
            if n < i64::from(floor.noise_extra_threshold) {
                return Err(self.error(
                    v.span(),
                    format!(
                        "project \"{id}\": output.noise_extra_threshold = {n} is looser than the floor of {}: the suppression threshold is raised by 0 to at least 2 from the cell key (DESIGN.md rule 3); use {} to {MAX_NOISE_EXTRA_THRESHOLD}",
                        floor.noise_extra_threshold, floor.noise_extra_threshold
                    ),
                ));
            }
            if n > i64::from(MAX_NOISE_EXTRA_THRESHOLD) {
                return Err(self.error(
                    v.span(),
                    format!(
                        "project \"{id}\": output.noise_extra_threshold = {n} is above the maximum of {MAX_NOISE_EXTRA_THRESHOLD}; raise min_persons instead for a stricter threshold"
                    ),
                ));
            }
            out.noise_extra_threshold = self.small(id, "noise_extra_threshold", &v)?;
        }
        if let Some(v) = raw.significant_figures {
            let n = *v.get_ref();
            if n > i64::from(floor.significant_figures) {
                return Err(self.error(
                    v.span(),
                    format!(
                        "project \"{id}\": output.significant_figures = {n} is looser than the floor of {}: sums and means are released to at most 3 significant figures (DESIGN.md rule 5); use 1, 2 or 3",
                        floor.significant_figures
                    ),
                ));
            }
            if n < 1 {
                return Err(self.error(
                    v.span(),
                    format!(
                        "project \"{id}\": output.significant_figures = {n} must be at least 1; use 1, 2 or 3"
                    ),
                ));
            }
            out.significant_figures = self.small(id, "significant_figures", &v)?;
        }
        if let Some(v) = raw.low_effect_spread {
            let n = *v.get_ref();
            if n < i64::from(floor.low_effect_spread) {
                return Err(self.error(
                    v.span(),
                    format!(
                        "project \"{id}\": output.low_effect_spread = {n} is looser than the floor of {}: the low-effect threshold is drawn from a range at least this wide, so that a condition aimed at it does not reveal a person (DESIGN.md rule 7); use {} to {MAX_LOW_EFFECT_SPREAD}",
                        floor.low_effect_spread, floor.low_effect_spread
                    ),
                ));
            }
            if n > i64::from(MAX_LOW_EFFECT_SPREAD) {
                return Err(self.error(
                    v.span(),
                    format!(
                        "project \"{id}\": output.low_effect_spread = {n} is above the maximum of {MAX_LOW_EFFECT_SPREAD}; raise min_persons instead for a stricter threshold"
                    ),
                ));
            }
            out.low_effect_spread = self.small(id, "low_effect_spread", &v)?;
        }
        Ok(out)
    }

    /// An output parameter already checked against its floor, as `u32`.
    fn small(&self, id: &str, key: &str, v: &Spanned<i64>) -> Result<u32, RegisterError> {
        u32::try_from(*v.get_ref()).map_err(|_| {
            self.error(
                v.span(),
                format!(
                    "project \"{id}\": output.{key} = {} is too large (at most {})",
                    v.get_ref(),
                    u32::MAX
                ),
            )
        })
    }

    fn members(&self, id: &str, raw: Vec<RawMember>) -> Result<Vec<Member>, RegisterError> {
        let mut first_line: HashMap<(String, Role), usize> = HashMap::new();
        let mut members = Vec::with_capacity(raw.len());
        for m in raw {
            let principal = m.principal.get_ref().clone();
            let line = self.line_of(m.principal.span().start);
            if !(1..=64).contains(&principal.len())
                || !principal.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
                })
            {
                return Err(self.error_at_line(
                    line,
                    format!(
                        "project \"{id}\": principal \"{principal}\" is not valid: use 1 to 64 characters from a-z, 0-9, _, . and -"
                    ),
                ));
            }
            if let Some(first) = first_line.get(&(principal.clone(), m.role)) {
                return Err(self.error_at_line(
                    line,
                    format!(
                        "project \"{id}\": principal \"{principal}\" is already a member with role {} (line {first}); remove the duplicate",
                        m.role
                    ),
                ));
            }
            first_line.insert((principal.clone(), m.role), line);
            members.push(Member {
                principal,
                role: m.role,
            });
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_newlines_before_offset() {
        let ctx = Ctx {
            text: "a\nb\n\nc",
            source_name: "x",
        };
        assert_eq!(ctx.line_of(0), 1);
        assert_eq!(ctx.line_of(1), 1);
        assert_eq!(ctx.line_of(2), 2);
        assert_eq!(ctx.line_of(5), 4);
        assert_eq!(ctx.line_of(100), 4);
    }

    #[test]
    fn quote_escapes_quotes_backslashes_and_controls() {
        assert_eq!(quote("a \"b\" \\ c\nd"), r#""a \"b\" \\ c\u{a}d""#);
        assert_eq!(quote("é"), "\"é\"");
    }

    #[test]
    fn role_display_is_lower_case() {
        assert_eq!(Role::Commissioner.to_string(), "commissioner");
        assert_eq!(Role::Admin.as_str(), "admin");
    }
}

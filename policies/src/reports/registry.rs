//! The set of reports a server offers: the definitions built into the binary
//! ([`ReportRegistry::builtin`], the TOML files of `policies/reports/` embedded at compile
//! time, so nothing is read at run time) or those of a directory
//! ([`ReportRegistry::load`], for operators who maintain their own).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::definition::ReportDef;
use super::error::{ReportError, shorten};
use super::params::{BoundReport, bind};

/// The built-in definitions: (file name, contents).
const BUILTIN: &[(&str, &str)] = &[
    (
        "emergency-admissions.toml",
        include_str!("../../reports/emergency-admissions.toml"),
    ),
    (
        "chronic-acsc-admissions.toml",
        include_str!("../../reports/chronic-acsc-admissions.toml"),
    ),
    (
        "acute-avoidable-admissions.toml",
        include_str!("../../reports/acute-avoidable-admissions.toml"),
    ),
    (
        "emergency-readmissions.toml",
        include_str!("../../reports/emergency-readmissions.toml"),
    ),
    (
        "antibiotic-items.toml",
        include_str!("../../reports/antibiotic-items.toml"),
    ),
    (
        "broad-spectrum-antibiotics.toml",
        include_str!("../../reports/broad-spectrum-antibiotics.toml"),
    ),
    (
        "ae-attendances.toml",
        include_str!("../../reports/ae-attendances.toml"),
    ),
    (
        "outpatient-dna.toml",
        include_str!("../../reports/outpatient-dna.toml"),
    ),
];

/// Validated report definitions, unique by name, in a fixed order.
#[derive(Debug, Clone)]
pub struct ReportRegistry {
    /// The definitions in listing order.
    reports: Vec<ReportDef>,
    /// Shared copies handed to bound reports.
    shared: Vec<Arc<ReportDef>>,
}

impl ReportRegistry {
    /// The reports built into the binary (`policies/reports/*.toml`).
    pub fn builtin() -> Result<ReportRegistry, ReportError> {
        let defs = BUILTIN
            .iter()
            .map(|(file, text)| {
                let def = ReportDef::from_toml(text, file)?;
                check_file_name(&def, file)?;
                Ok(def)
            })
            .collect::<Result<Vec<_>, ReportError>>()?;
        ReportRegistry::from_definitions(defs)
    }

    /// Every `*.toml` file of `dir`, in file-name order. Each file must be called after the
    /// report it defines (`<name>.toml`).
    pub fn load(dir: &Path) -> Result<ReportRegistry, ReportError> {
        let io = |e: std::io::Error| ReportError::Definition {
            source_name: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        files.retain(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file());
        files.sort();
        let mut defs = Vec::with_capacity(files.len());
        for path in files {
            let source = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| ReportError::Definition {
                source_name: source.clone(),
                message: e.to_string(),
            })?;
            let def = ReportDef::from_toml(&text, &source)?;
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            check_file_name(&def, file.as_deref().unwrap_or_default())?;
            defs.push(def);
        }
        ReportRegistry::from_definitions(defs)
    }

    /// A registry of the given definitions (names must be unique).
    pub fn from_definitions(reports: Vec<ReportDef>) -> Result<ReportRegistry, ReportError> {
        for (i, r) in reports.iter().enumerate() {
            if reports[..i].iter().any(|q| q.name == r.name) {
                return Err(ReportError::Definition {
                    source_name: r.name.clone(),
                    message: "two reports have this name".into(),
                });
            }
        }
        let shared = reports.iter().cloned().map(Arc::new).collect();
        Ok(ReportRegistry { reports, shared })
    }

    /// Every report, in listing order.
    pub fn list(&self) -> &[ReportDef] {
        &self.reports
    }

    /// The report called `name`.
    pub fn get(&self, name: &str) -> Option<&ReportDef> {
        self.reports.iter().find(|r| r.name == name)
    }

    /// Checks a request: the report exists, every parameter is known, every value parses
    /// and is allowed, and the date range is whole periods. Errors list what is allowed.
    pub fn validate(
        &self,
        name: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<BoundReport, ReportError> {
        let def = self.shared.iter().find(|r| r.name == name).ok_or_else(|| {
            ReportError::UnknownReport {
                name: shorten(name),
                available: self.reports.iter().map(|r| r.name.clone()).collect(),
            }
        })?;
        bind(Arc::clone(def), params)
    }
}

fn check_file_name(def: &ReportDef, file: &str) -> Result<(), ReportError> {
    if file == format!("{}.toml", def.name) {
        Ok(())
    } else {
        Err(ReportError::Definition {
            source_name: file.to_string(),
            message: format!(
                "the file of report {} must be called {}.toml",
                def.name, def.name
            ),
        })
    }
}

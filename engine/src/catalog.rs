//! The secure store's table contract (DATA_MODEL.md §2): names, columns, types and privacy
//! classes of every table that ingest writes and sessions register.
//!
//! This is the one place that says which tables are personal, which column is the privacy
//! unit, which columns are identifying, and which columns are secret (never visible to any
//! analyst, used only by output control). The manifest records the same facts for each
//! published version, and the policy layer reads them from there.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

/// The privacy unit column of every personal table.
pub const PRIVACY_UNIT: &str = "patient_id";

/// The secret per-person record key (0..=255) used for cell-key perturbation (DESIGN.md rule 4).
/// Present in every personal table; never part of any analyst view.
pub const RECORD_KEY: &str = "record_key";

/// How a table may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableClass {
    /// Rows are about persons; every row carries `patient_id` and `record_key`.
    Personal,
    /// Reference data with no privacy unit; any SELECT is fine.
    Public,
    /// Governance data (national opt-out list): never in an analyst or commissioner catalogue.
    Governance,
}

/// One column of a store table.
#[derive(Debug, Clone)]
pub struct ColumnDef {
    /// Column name (lower case).
    pub name: &'static str,
    /// Arrow type as stored.
    pub data_type: DataType,
    /// Whether nulls occur.
    pub nullable: bool,
}

/// One table of the store.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Table name as analysts query it.
    pub name: &'static str,
    /// Personal, public or governance.
    pub class: TableClass,
    /// Columns in stored order.
    pub columns: &'static [ColumnDef],
    /// Record-level identifiers (DATA_MODEL.md §2): allowed only in joins, `COUNT(DISTINCT …)`
    /// and as the key of an inner per-person aggregation.
    pub identifying: &'static [&'static str],
    /// Columns no analyst may ever see (cell keys).
    pub secret: &'static [&'static str],
    /// Sort order of the stored rows (helps row-group pruning on common filters).
    pub sort_by: &'static [&'static str],
    /// A column whose values are unique in the table (ingest rejects duplicates): a public
    /// table's row joined on it to a person's value is a value of that person.
    pub key: Option<&'static str>,
}

impl TableDef {
    /// The Arrow schema of the stored table.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.data_type.clone(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// The privacy unit column, for personal tables.
    pub fn privacy_unit(&self) -> Option<&'static str> {
        (self.class == TableClass::Personal).then_some(PRIVACY_UNIT)
    }
}

const fn col(name: &'static str, data_type: DataType, nullable: bool) -> ColumnDef {
    ColumnDef {
        name,
        data_type,
        nullable,
    }
}

use DataType::{Boolean, Date32, Float64, Int16, Int64, UInt8, Utf8};

/// `patients`: one row per person registered with a GP (current or last registration).
pub const PATIENTS: TableDef = TableDef {
    name: "patients",
    class: TableClass::Personal,
    columns: &[
        col("patient_id", Int64, false),
        col("birth_month", Date32, false),
        col("sex", Utf8, false),
        col("ethnicity", Utf8, false),
        col("lsoa", Utf8, true),
        col("imd_decile", Int16, true),
        col("practice_code", Utf8, false),
        col("death_month", Date32, true),
        col("record_key", UInt8, false),
    ],
    identifying: &["patient_id"],
    secret: &["record_key"],
    sort_by: &["practice_code", "patient_id"],
    key: None,
};

/// `practice_registrations`: one row per registration period.
pub const PRACTICE_REGISTRATIONS: TableDef = TableDef {
    name: "practice_registrations",
    class: TableClass::Personal,
    columns: &[
        col("patient_id", Int64, false),
        col("practice_code", Utf8, false),
        col("start_date", Date32, false),
        col("end_date", Date32, true),
        col("record_key", UInt8, false),
    ],
    identifying: &["patient_id"],
    secret: &["record_key"],
    sort_by: &["practice_code", "patient_id"],
    key: None,
};

/// The largest magnitude of a stored reading (`clinical_events.numeric_value`): ingest
/// rejects a reading past it. No clinical reading comes near it; the policy layer relies
/// on it to prove that arithmetic on readings inside an aggregate cannot overflow (rule 7
/// for values, `values.rs`).
pub const MAX_READING: f64 = 1e15;

/// `clinical_events`: coded GP events (diagnoses, observations).
pub const CLINICAL_EVENTS: TableDef = TableDef {
    name: "clinical_events",
    class: TableClass::Personal,
    columns: &[
        col("patient_id", Int64, false),
        col("event_date", Date32, false),
        col("snomedct_code", Utf8, false),
        col("numeric_value", Float64, true),
        col("record_key", UInt8, false),
    ],
    identifying: &["patient_id"],
    secret: &["record_key"],
    sort_by: &["snomedct_code", "event_date"],
    key: None,
};

/// `medications`: GP prescription issues.
pub const MEDICATIONS: TableDef = TableDef {
    name: "medications",
    class: TableClass::Personal,
    columns: &[
        col("patient_id", Int64, false),
        col("issue_date", Date32, false),
        col("dmd_code", Utf8, false),
        col("bnf_code", Utf8, false),
        col("record_key", UInt8, false),
    ],
    identifying: &["patient_id"],
    secret: &["record_key"],
    sort_by: &["bnf_code", "issue_date"],
    key: None,
};

/// `hes_apc`: hospital admitted patient care, one row per episode.
pub const HES_APC: TableDef = TableDef {
    name: "hes_apc",
    class: TableClass::Personal,
    columns: &[
        col("patient_id", Int64, false),
        col("epikey", Int64, false),
        col("spell_id", Int64, false),
        col("epiorder", Int16, false),
        col("admidate", Date32, false),
        col("epistart", Date32, false),
        col("epiend", Date32, true),
        col("disdate", Date32, true),
        col("admimeth", Utf8, false),
        col("admisorc", Utf8, false),
        col("dismeth", Utf8, false),
        col("procode3", Utf8, false),
        col("gpprac", Utf8, false),
        col("startage", Int16, false),
        col("sex", Utf8, false),
        col("lsoa", Utf8, true),
        col("diag_4_01", Utf8, false),
        col("diag_4_concat", Utf8, false),
        col("opertn_4_01", Utf8, true),
        col("opertn_4_concat", Utf8, true),
        col("record_key", UInt8, false),
    ],
    identifying: &["patient_id", "epikey", "spell_id"],
    secret: &["record_key"],
    sort_by: &["admidate"],
    key: None,
};

/// `hes_op`: hospital outpatient appointments.
pub const HES_OP: TableDef = TableDef {
    name: "hes_op",
    class: TableClass::Personal,
    columns: &[
        col("patient_id", Int64, false),
        col("attendkey", Int64, false),
        col("apptdate", Date32, false),
        col("attended", Utf8, false),
        col("firstatt", Utf8, false),
        col("tretspef", Utf8, false),
        col("procode3", Utf8, false),
        col("gpprac", Utf8, false),
        col("apptage", Int16, false),
        col("record_key", UInt8, false),
    ],
    identifying: &["patient_id", "attendkey"],
    secret: &["record_key"],
    sort_by: &["apptdate"],
    key: None,
};

/// `hes_ae`: hospital A&E attendances.
pub const HES_AE: TableDef = TableDef {
    name: "hes_ae",
    class: TableClass::Personal,
    columns: &[
        col("patient_id", Int64, false),
        col("aekey", Int64, false),
        col("arrivaldate", Date32, false),
        col("aearrivalmode", Utf8, false),
        col("aeattenddisp", Utf8, false),
        col("procode3", Utf8, false),
        col("gpprac", Utf8, false),
        col("arrivalage", Int16, false),
        col("record_key", UInt8, false),
    ],
    identifying: &["patient_id", "aekey"],
    secret: &["record_key"],
    sort_by: &["arrivaldate"],
    key: None,
};

/// `practices`: public reference table.
pub const PRACTICES: TableDef = TableDef {
    name: "practices",
    class: TableClass::Public,
    columns: &[
        col("practice_code", Utf8, false),
        col("practice_name", Utf8, false),
        col("sub_icb_code", Utf8, false),
        col("region", Utf8, false),
    ],
    identifying: &[],
    secret: &[],
    sort_by: &["practice_code"],
    key: Some("practice_code"),
};

/// `lsoas`: public reference table of areas and their deprivation decile.
pub const LSOAS: TableDef = TableDef {
    name: "lsoas",
    class: TableClass::Public,
    columns: &[col("lsoa", Utf8, false), col("imd_decile", Int16, false)],
    identifying: &[],
    secret: &[],
    sort_by: &["lsoa"],
    key: Some("lsoa"),
};

/// `national_opt_out`: governance data, applied at query time; never visible to analysts.
/// A person absent from this table has unknown status and is treated as opted out.
pub const NATIONAL_OPT_OUT: TableDef = TableDef {
    name: "national_opt_out",
    class: TableClass::Governance,
    columns: &[
        col("patient_id", Int64, false),
        col("opted_out", Boolean, false),
        col("as_of", Date32, false),
    ],
    identifying: &["patient_id"],
    secret: &[],
    sort_by: &["patient_id"],
    key: None,
};

/// `person_keys`: governance data, every person of any personal table (GP-registered,
/// objectors with hospital rows, people only in hospital data) with their secret record key.
/// Output control joins per-person partial results to it to compute cell keys; never visible
/// to analysts.
pub const PERSON_KEYS: TableDef = TableDef {
    name: "person_keys",
    class: TableClass::Governance,
    columns: &[
        col("patient_id", Int64, false),
        col("record_key", UInt8, false),
    ],
    identifying: &["patient_id"],
    secret: &["record_key"],
    sort_by: &["patient_id"],
    key: None,
};

/// Every table of the store, in publication order.
pub const TABLES: &[TableDef] = &[
    PATIENTS,
    PRACTICE_REGISTRATIONS,
    CLINICAL_EVENTS,
    MEDICATIONS,
    HES_APC,
    HES_OP,
    HES_AE,
    PRACTICES,
    LSOAS,
    NATIONAL_OPT_OUT,
    PERSON_KEYS,
];

/// Looks a table up by name.
pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

/// The columns of a raw extract file (DATA_MODEL.md §1), in the order the generator writes
/// them; ingest accepts them in any order. Empty for an unknown file name.
pub fn raw_columns(extract: &str) -> &'static [&'static str] {
    match extract {
        "practices.csv" => &["practice_code", "practice_name", "sub_icb_code", "region"],
        "postcode_lsoa.csv" => &["postcode", "lsoa", "imd_decile"],
        "gp_objections.csv" => &["nhs_number", "code_date", "snomedct_code"],
        "gp_patients.csv" => &[
            "nhs_number",
            "date_of_birth",
            "sex",
            "ethnicity",
            "postcode",
            "practice_code",
            "registration_start",
            "registration_end",
            "date_of_death",
        ],
        "gp_events.csv" => &["nhs_number", "event_date", "snomedct_code", "numeric_value"],
        "gp_medications.csv" => &["nhs_number", "issue_date", "dmd_code", "bnf_code"],
        "hes_apc.csv" => &[
            "nhs_number",
            "epikey",
            "spell_id",
            "epiorder",
            "admidate",
            "epistart",
            "epiend",
            "disdate",
            "admimeth",
            "admisorc",
            "dismeth",
            "procode3",
            "gpprac",
            "startage",
            "sex",
            "postcode",
            "diag_4_01",
            "diag_4_concat",
            "opertn_4_01",
            "opertn_4_concat",
        ],
        "hes_op.csv" => &[
            "nhs_number",
            "attendkey",
            "apptdate",
            "attended",
            "firstatt",
            "tretspef",
            "procode3",
            "gpprac",
            "apptage",
        ],
        "hes_ae.csv" => &[
            "nhs_number",
            "aekey",
            "arrivaldate",
            "aearrivalmode",
            "aeattenddisp",
            "procode3",
            "gpprac",
            "arrivalage",
        ],
        "ndoo.csv" => &["nhs_number", "opted_out", "as_of"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_tables_carry_privacy_unit_and_record_key() {
        for t in TABLES.iter().filter(|t| t.class == TableClass::Personal) {
            let schema = t.schema();
            assert_eq!(schema.field(0).name(), PRIVACY_UNIT, "{}", t.name);
            assert!(schema.field_with_name(RECORD_KEY).is_ok(), "{}", t.name);
            assert!(t.identifying.contains(&PRIVACY_UNIT), "{}", t.name);
            assert_eq!(t.secret, &[RECORD_KEY], "{}", t.name);
        }
    }

    #[test]
    fn names_are_unique_and_sort_keys_exist() {
        for (i, t) in TABLES.iter().enumerate() {
            assert!(TABLES[i + 1..].iter().all(|u| u.name != t.name));
            for k in t.sort_by.iter().chain(t.identifying) {
                assert!(t.schema().field_with_name(k).is_ok(), "{}.{k}", t.name);
            }
        }
        assert!(table("hes_apc").is_some());
        assert!(table("gp_events").is_none());
    }
}

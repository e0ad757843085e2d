//! The project register: the example file, every validation rule (message and exact line),
//! expansion of `"*"`, output-control defaults and floors, look-ups, and the canonical form.

use std::path::Path;

use fivesafes_engine::dates::parse_ymd;
use fivesafes_policies::{OptOut, OutputControl, Register, RegisterError, Role};

/// Drops the newline after `r#"` so that line 1 is the first line of the TOML.
fn doc(text: &str) -> &str {
    text.strip_prefix('\n').unwrap_or(text)
}

fn load(text: &str) -> Register {
    match Register::from_toml(doc(text), "test.toml") {
        Ok(r) => r,
        Err(e) => panic!("register should load, got: {e}"),
    }
}

/// Loads `text`, expects a failure, and returns (line, message).
fn fail(text: &str) -> (usize, String) {
    match Register::from_toml(doc(text), "test.toml") {
        Ok(_) => panic!("register should have been refused"),
        Err(e @ RegisterError::Invalid { .. }) => {
            let line = e.line().expect("invalid has a line");
            let message = e.message().expect("invalid has a message").to_owned();
            assert_eq!(e.to_string(), format!("test.toml:{line}: {message}"));
            (line, message)
        }
        Err(e) => panic!("expected an Invalid error, got {e}"),
    }
}

/// Asserts the failure's line and that its message contains every fragment.
#[track_caller]
fn assert_fails(text: &str, line: usize, fragments: &[&str]) {
    let (got_line, message) = fail(text);
    assert_eq!(got_line, line, "wrong line for: {message}");
    for f in fragments {
        assert!(message.contains(f), "message {message:?} lacks {f:?}");
    }
}

fn day(ymd: &str) -> i32 {
    parse_ymd(ymd.as_bytes()).expect("valid test date")
}

fn example() -> Register {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("projects.example.toml");
    match Register::load(&path) {
        Ok(r) => r,
        Err(e) => panic!("example register should load: {e}"),
    }
}

/// A valid one-project register; tests below vary one thing at a time.
const BASE: &str = r#"
[[project]]
id = "p-one"
purpose = "Testing"
expires = 2027-03-31
queries_per_day = 10

[project.tables]
patients = "*"

[[project.members]]
principal = "ana"
role = "analyst"
"#;

// ---- the example file -------------------------------------------------------------------

#[test]
fn example_file_loads_with_the_demo_projects() {
    let r = example();
    let ids: Vec<&str> = r.projects().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "diabetes-research",
            "ae-audit",
            "service-design",
            "audit",
            "cancer-registry-linkage"
        ]
    );

    let diabetes = r.project("diabetes-research").expect("diabetes-research");
    assert_eq!(diabetes.opt_out, OptOut::Applies);
    assert_eq!(diabetes.expires, day("2027-03-31"));
    assert_eq!(diabetes.output, OutputControl::default());
    let tables: Vec<&str> = diabetes.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tables,
        [
            "patients",
            "practice_registrations",
            "clinical_events",
            "medications",
            "hes_apc",
            "hes_op",
            "hes_ae",
            "practices",
            "lsoas"
        ]
    );
    for t in &diabetes.tables {
        assert!(!t.allows("record_key"), "{}", t.name);
        assert_eq!(t.personal, t.allows("patient_id"), "{}", t.name);
    }
    assert_eq!(diabetes.role_of("analyst"), [Role::Analyst]);

    let ae = r.project("ae-audit").expect("ae-audit");
    assert_eq!(ae.opt_out, OptOut::Applies);
    assert_eq!(ae.expires, day("2027-12-31"));
    let tables: Vec<&str> = ae.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tables, ["patients", "hes_ae"]);
    assert_eq!(ae.role_of("analyst2"), [Role::Analyst]);

    let service = r.project("service-design").expect("service-design");
    assert_eq!(service.tables.len(), 9);
    assert_eq!(service.role_of("commissioner"), [Role::Commissioner]);

    let audit = r.project("audit").expect("audit");
    assert!(audit.tables.is_empty());
    assert_eq!(audit.role_of("auditor"), [Role::Auditor]);

    let cancer = r.project("cancer-registry-linkage").expect("cancer");
    assert_eq!(
        cancer.opt_out,
        OptOut::Exempt {
            legal_basis: "s251 support, CAG ref 23/CAG/0001".to_owned()
        }
    );
    assert_eq!(
        cancer.date_window,
        Some((day("2018-01-01"), day("2024-12-31")))
    );
    assert_eq!(
        cancer.output,
        OutputControl {
            min_persons: 10,
            rounding_base: 10,
            noise_extra_threshold: 3,
            significant_figures: 2,
            low_effect_spread: 5
        }
    );
    let hes = cancer.table("hes_apc").expect("hes_apc");
    assert!(hes.allows("spell_id") && !hes.allows("epikey"));
    assert!(cancer.table("hes_op").is_none());
    assert_eq!(cancer.expires, day("2027-09-30"));

    let analyst_projects: Vec<&str> = r
        .projects_of("analyst", Role::Analyst)
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(
        analyst_projects,
        ["diabetes-research", "cancer-registry-linkage"]
    );
}

#[test]
fn load_reports_a_missing_file_as_io() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.toml");
    match Register::load(&path) {
        Err(e @ RegisterError::Io { .. }) => {
            assert!(e.to_string().starts_with(&path.display().to_string()));
            assert_eq!(e.line(), None);
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn load_names_the_path_in_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("projects.toml");
    std::fs::write(&path, "[[project]]\nid = 3\n").expect("write");
    let e = Register::load(&path).expect_err("invalid");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2: ", path.display())),
        "{e}"
    );
}

// ---- tables and columns -----------------------------------------------------------------

#[test]
fn star_expands_to_all_non_secret_columns_in_stored_order() {
    let r = load(
        r#"
[[project]]
id = "p-one"
purpose = "Testing"
expires = 2027-03-31
queries_per_day = 10
tables = { lsoas = "*", hes_ae = "*", patients = "*", practices = "*" }
[[project.members]]
principal = "ana"
role = "analyst"
"#,
    );
    let p = &r.projects()[0];
    // Store order, not file order.
    let names: Vec<&str> = p.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["patients", "hes_ae", "practices", "lsoas"]);
    let patients = p.table("patients").expect("patients");
    assert!(patients.personal);
    assert_eq!(
        patients.columns,
        [
            "patient_id",
            "birth_month",
            "sex",
            "ethnicity",
            "lsoa",
            "imd_decile",
            "practice_code",
            "death_month"
        ]
    );
    let practices = p.table("practices").expect("practices");
    assert!(!practices.personal);
    assert_eq!(
        practices.columns,
        ["practice_code", "practice_name", "sub_icb_code", "region"]
    );
    assert!(p.tables.iter().all(|t| !t.allows("record_key")));
}

#[test]
fn column_lists_are_kept_in_stored_order() {
    let r = load(
        r#"
[[project]]
id = "p-one"
purpose = "Testing"
expires = 2027-03-31
queries_per_day = 10
[project.tables]
clinical_events = ["snomedct_code", "patient_id", "event_date"]
lsoas = ["imd_decile"]
[[project.members]]
principal = "ana"
role = "analyst"
"#,
    );
    let p = &r.projects()[0];
    let events = p.table("clinical_events").expect("clinical_events");
    assert_eq!(
        events.columns,
        ["patient_id", "event_date", "snomedct_code"]
    );
    assert!(!events.allows("numeric_value"));
    // A public table needs no privacy unit.
    assert_eq!(p.table("lsoas").expect("lsoas").columns, ["imd_decile"]);
}

#[test]
fn unknown_table_is_refused() {
    assert_fails(
        &BASE.replace("patients = \"*\"", "patients = \"*\"\ngp_events = \"*\""),
        9,
        &[
            "unknown table \"gp_events\"",
            "tables that can be approved: patients,",
        ],
    );
}

#[test]
fn governance_table_is_never_approved() {
    let (line, message) = fail(&BASE.replace(
        "patients = \"*\"",
        "patients = \"*\"\nnational_opt_out = [\"patient_id\"]",
    ));
    assert_eq!(line, 9);
    assert_eq!(
        message,
        "table \"national_opt_out\" is governance data and can never be approved"
    );
}

#[test]
fn unknown_column_is_refused_on_its_own_line() {
    assert_fails(
        r#"
[[project]]
id = "p-one"
purpose = "Testing"
expires = 2027-03-31
queries_per_day = 10
[project.tables]
patients = [
    "patient_id",
    "nhs_number",
]
[[project.members]]
principal = "ana"
role = "analyst"
"#,
        9,
        &[
            "table \"patients\" has no column \"nhs_number\"",
            "its columns are: patient_id, birth_month",
        ],
    );
}

#[test]
fn secret_column_is_never_approved() {
    assert_fails(
        r#"
[[project]]
id = "p-one"
purpose = "Testing"
expires = 2027-03-31
queries_per_day = 10
[project.tables]
hes_ae = [
    "patient_id",
    "record_key",
]
[[project.members]]
principal = "ana"
role = "analyst"
"#,
        9,
        &[
            "column \"record_key\" of table \"hes_ae\" is secret",
            "can never be approved",
        ],
    );
}

#[test]
fn empty_column_list_is_refused() {
    assert_fails(
        &BASE.replace("patients = \"*\"", "patients = []"),
        8,
        &["table \"patients\" has an empty column list", "use \"*\""],
    );
}

#[test]
fn column_value_must_be_star_or_a_list() {
    assert_fails(
        &BASE.replace("patients = \"*\"", "patients = \"all\""),
        8,
        &["\"*\" (all non-secret columns) or a list of column names"],
    );
}

#[test]
fn duplicate_column_is_refused() {
    assert_fails(
        &BASE.replace(
            "patients = \"*\"",
            "patients = [\"patient_id\", \"sex\", \"sex\"]",
        ),
        8,
        &["column \"sex\" of table \"patients\" is listed twice"],
    );
}

#[test]
fn personal_table_must_include_the_privacy_unit() {
    assert_fails(
        r#"
[[project]]
id = "p-one"
purpose = "Testing"
expires = 2027-03-31
queries_per_day = 10
[project.tables]
patients = "*"
hes_apc = ["admidate", "diag_4_01"]
[[project.members]]
principal = "ana"
role = "analyst"
"#,
        8,
        &[
            "table \"hes_apc\" is personal data",
            "must include \"patient_id\"",
            "privacy unit is needed for output control",
        ],
    );
}

#[test]
fn tables_are_required() {
    assert_fails(
        r#"
[[project]]
id = "p-one"
purpose = "Testing"
expires = 2027-03-31
queries_per_day = 10
[[project.members]]
principal = "ana"
role = "analyst"
"#,
        1,
        &["missing field `tables`"],
    );
}

#[test]
fn no_tables_only_for_auditor_only_projects() {
    let auditors = r#"
[[project]]
id = "audit"
purpose = "Audit"
expires = 2027-03-31
queries_per_day = 10
tables = {}
[[project.members]]
principal = "aud"
role = "auditor"
[[project.members]]
principal = "aud2"
role = "auditor"
"#;
    let r = load(auditors);
    assert!(r.projects()[0].tables.is_empty());

    assert_fails(
        &auditors.replace(
            "principal = \"aud2\"\nrole = \"auditor\"",
            "principal = \"ana\"\nrole = \"analyst\"",
        ),
        6,
        &[
            "project \"audit\" approves no tables",
            "only for a project whose members are all auditors",
        ],
    );
}

// ---- output control ---------------------------------------------------------------------

#[test]
fn output_defaults_apply_when_absent() {
    let r = load(BASE);
    let o = r.projects()[0].output;
    assert_eq!(o, OutputControl::default());
    assert_eq!(
        o,
        OutputControl {
            min_persons: 8,
            rounding_base: 5,
            noise_extra_threshold: 2,
            significant_figures: 3,
            low_effect_spread: 3
        }
    );
}

#[test]
fn output_partial_section_keeps_other_defaults() {
    let r = load(&format!(
        "{BASE}[project.output]\nmin_persons = 8\nrounding_base = 15\n"
    ));
    assert_eq!(
        r.projects()[0].output,
        OutputControl {
            rounding_base: 15,
            ..OutputControl::default()
        }
    );
}

#[test]
fn stricter_output_values_are_accepted() {
    let r = load(&format!(
        "{BASE}[project.output]\nmin_persons = 20\nrounding_base = 10\nnoise_extra_threshold = 10\nsignificant_figures = 1\nlow_effect_spread = 30\n"
    ));
    assert_eq!(
        r.projects()[0].output,
        OutputControl {
            min_persons: 20,
            rounding_base: 10,
            noise_extra_threshold: 10,
            significant_figures: 1,
            low_effect_spread: 30
        }
    );
}

/// BASE has 12 lines; an appended `[project.output]` is line 13 and its first key line 14.
fn with_output(body: &str) -> String {
    format!("{BASE}[project.output]\n{body}\n")
}

#[test]
fn looser_min_persons_is_refused_naming_the_floor() {
    assert_fails(
        &with_output("min_persons = 5"),
        14,
        &[
            "output.min_persons = 5 is looser than the floor of 8",
            "use 8 or more",
        ],
    );
}

#[test]
fn looser_rounding_base_is_refused_naming_the_floor() {
    assert_fails(
        &with_output("significant_figures = 2\nrounding_base = 1"),
        15,
        &["output.rounding_base = 1 is looser than the floor of 5"],
    );
    assert_fails(
        &with_output("rounding_base = 12"),
        14,
        &["output.rounding_base = 12 must be a multiple of 5"],
    );
}

#[test]
fn noise_extra_threshold_must_be_between_floor_and_maximum() {
    assert_fails(
        &with_output("noise_extra_threshold = 0"),
        14,
        &[
            "output.noise_extra_threshold = 0 is looser than the floor of 2",
            "use 2 to 10",
        ],
    );
    assert_fails(
        &with_output("noise_extra_threshold = 11"),
        14,
        &["output.noise_extra_threshold = 11 is above the maximum of 10"],
    );
}

#[test]
fn low_effect_spread_must_be_between_floor_and_maximum() {
    assert_fails(
        &with_output("low_effect_spread = 2"),
        14,
        &[
            "output.low_effect_spread = 2 is looser than the floor of 3",
            "use 3 to 30",
        ],
    );
    assert_fails(
        &with_output("low_effect_spread = 31"),
        14,
        &["output.low_effect_spread = 31 is above the maximum of 30"],
    );
}

#[test]
fn looser_significant_figures_are_refused_naming_the_floor() {
    assert_fails(
        &with_output("significant_figures = 4"),
        14,
        &[
            "output.significant_figures = 4 is looser than the floor of 3",
            "use 1, 2 or 3",
        ],
    );
    assert_fails(
        &with_output("significant_figures = 0"),
        14,
        &["output.significant_figures = 0 must be at least 1"],
    );
}

// ---- unknown keys and syntax ------------------------------------------------------------

#[test]
fn unknown_keys_are_refused_everywhere() {
    assert_fails(
        &format!("{BASE}\n[settings]\nx = 1\n"),
        14,
        &["unknown field `settings`"],
    );
    assert_fails(
        &BASE.replace(
            "queries_per_day = 10",
            "queries_per_day = 10\nqueries_per_week = 70",
        ),
        6,
        &["unknown field `queries_per_week`"],
    );
    assert_fails(
        &with_output("min_person = 10"),
        14,
        &["unknown field `min_person`"],
    );
    assert_fails(
        &BASE.replace("role = \"analyst\"", "role = \"analyst\"\nteam = \"x\""),
        13,
        &["unknown field `team`"],
    );
    assert_fails(
        &BASE.replace(
            "queries_per_day = 10",
            "queries_per_day = 10\ndate_window = { from = 2015-01-01, to = 2020-01-01, step = 1 }",
        ),
        6,
        &["unknown field `step`"],
    );
}

#[test]
fn syntax_errors_give_their_line() {
    assert_fails(
        &BASE.replace("purpose = \"Testing\"", "purpose = \"Testing"),
        3,
        &[],
    );
}

#[test]
fn wrong_types_give_their_line() {
    assert_fails(
        &BASE.replace("queries_per_day = 10", "queries_per_day = \"ten\""),
        5,
        &["invalid type"],
    );
}

// ---- projects and members ---------------------------------------------------------------

#[test]
fn at_least_one_project() {
    assert_fails("# nothing here\n", 1, &["at least one [[project]]"]);
    assert_fails("", 1, &["at least one [[project]]"]);
}

#[test]
fn duplicate_project_ids_are_refused() {
    let text = format!("{BASE}\n{}", doc(BASE));
    assert_fails(
        &text,
        15,
        &["duplicate project id \"p-one\" (first defined on line 2)"],
    );
}

#[test]
fn project_ids_are_checked() {
    assert_fails(
        &BASE.replace("id = \"p-one\"", "id = \"P One\""),
        2,
        &["project id \"P One\" is not valid", "3 to 64 characters"],
    );
    assert_fails(
        &BASE.replace("id = \"p-one\"", "id = \"ab\""),
        2,
        &["is not valid"],
    );
}

#[test]
fn purpose_must_not_be_empty() {
    assert_fails(
        &BASE.replace("purpose = \"Testing\"", "purpose = \"  \""),
        3,
        &["purpose is empty"],
    );
}

#[test]
fn every_project_needs_a_member() {
    let text = BASE.replace(
        "[[project.members]]\nprincipal = \"ana\"\nrole = \"analyst\"\n",
        "",
    );
    assert_fails(
        &text,
        2,
        &["project \"p-one\" has no members", "[[project.members]]"],
    );
}

#[test]
fn duplicate_members_are_refused() {
    let text = format!("{BASE}[[project.members]]\nprincipal = \"ana\"\nrole = \"analyst\"\n");
    assert_fails(
        &text,
        14,
        &["principal \"ana\" is already a member with role analyst (line 11)"],
    );
    // The same principal in another role is fine.
    let r = load(&format!(
        "{BASE}[[project.members]]\nprincipal = \"ana\"\nrole = \"admin\"\n"
    ));
    assert_eq!(r.projects()[0].role_of("ana"), [Role::Analyst, Role::Admin]);
}

#[test]
fn principals_and_roles_are_checked() {
    assert_fails(
        &BASE.replace("principal = \"ana\"", "principal = \"Ana Smith\""),
        11,
        &["principal \"Ana Smith\" is not valid"],
    );
    assert_fails(
        &BASE.replace("role = \"analyst\"", "role = \"researcher\""),
        12,
        &["unknown variant `researcher`", "analyst"],
    );
}

// ---- opt-out ----------------------------------------------------------------------------

#[test]
fn exempt_projects_need_a_legal_basis() {
    assert_fails(
        &BASE.replace(
            "purpose = \"Testing\"",
            "purpose = \"Testing\"\nnational_opt_out = \"exempt\"",
        ),
        4,
        &["exempt from the national data opt-out but has no opt_out_exemption_basis"],
    );
    assert_fails(
        &BASE.replace(
            "purpose = \"Testing\"",
            "purpose = \"Testing\"\nnational_opt_out = \"exempt\"\nopt_out_exemption_basis = \"\"",
        ),
        5,
        &["opt_out_exemption_basis is empty"],
    );
    let r = load(&BASE.replace(
        "purpose = \"Testing\"",
        "purpose = \"Testing\"\nnational_opt_out = \"exempt\"\nopt_out_exemption_basis = \"s251\"",
    ));
    assert_eq!(
        r.projects()[0].opt_out,
        OptOut::Exempt {
            legal_basis: "s251".to_owned()
        }
    );
}

#[test]
fn legal_basis_is_forbidden_unless_exempt() {
    assert_fails(
        &BASE.replace(
            "purpose = \"Testing\"",
            "purpose = \"Testing\"\nopt_out_exemption_basis = \"s251\"",
        ),
        4,
        &["opt_out_exemption_basis is only allowed with national_opt_out = \"exempt\""],
    );
    assert_fails(
        &BASE.replace(
            "purpose = \"Testing\"",
            "purpose = \"Testing\"\nnational_opt_out = \"applies\"\nopt_out_exemption_basis = \"s251\"",
        ),
        5,
        &["only allowed with national_opt_out = \"exempt\""],
    );
}

#[test]
fn opt_out_values_are_checked() {
    assert_fails(
        &BASE.replace(
            "purpose = \"Testing\"",
            "purpose = \"Testing\"\nnational_opt_out = \"maybe\"",
        ),
        4,
        &["unknown variant `maybe`", "applies", "exempt"],
    );
}

// ---- dates and budgets ------------------------------------------------------------------

#[test]
fn dates_may_be_toml_dates_or_strings() {
    let a = load(BASE);
    let b = load(&BASE.replace("expires = 2027-03-31", "expires = \"2027-03-31\""));
    assert_eq!(a.projects()[0].expires, day("2027-03-31"));
    assert_eq!(a, b);
}

#[test]
fn invalid_dates_are_refused() {
    assert_fails(
        &BASE.replace("expires = 2027-03-31", "expires = \"2027-02-30\""),
        4,
        &["expires is not a valid date", "2027-03-31"],
    );
    assert_fails(
        &BASE.replace("expires = 2027-03-31", "expires = 2027-03-31T12:00:00"),
        4,
        &["expires is not a valid date"],
    );
    assert_fails(
        &BASE.replace("expires = 2027-03-31", "expires = 20270331"),
        4,
        &["expires is not a valid date"],
    );
}

#[test]
fn expires_is_required() {
    assert_fails(
        &BASE.replace("expires = 2027-03-31\n", ""),
        1,
        &["missing field `expires`"],
    );
}

#[test]
fn date_window_must_be_ordered_and_valid() {
    let r = load(&BASE.replace(
        "queries_per_day = 10",
        "queries_per_day = 10\ndate_window = { from = 2015-01-01, to = \"2015-01-01\" }",
    ));
    assert_eq!(
        r.projects()[0].date_window,
        Some((day("2015-01-01"), day("2015-01-01")))
    );
    assert_fails(
        &BASE.replace(
            "queries_per_day = 10",
            "queries_per_day = 10\ndate_window = { from = 2024-01-01, to = 2015-01-01 }",
        ),
        6,
        &["date_window.from (2024-01-01) is after date_window.to (2015-01-01)"],
    );
    assert_fails(
        &BASE.replace(
            "queries_per_day = 10",
            "queries_per_day = 10\n[project.date_window]\nfrom = 2015-01-01\nto = \"2015-13-01\"",
        ),
        8,
        &["date_window.to is not a valid date"],
    );
}

#[test]
fn budgets_are_checked() {
    assert_fails(
        &BASE.replace("queries_per_day = 10", "queries_per_day = 0"),
        5,
        &[
            "queries_per_day = 0 is not a valid daily query budget",
            "from 1",
        ],
    );
    assert_fails(
        &BASE.replace("queries_per_day = 10\n", ""),
        1,
        &["missing field `queries_per_day`"],
    );
    assert_fails(
        &BASE.replace(
            "queries_per_day = 10",
            "queries_per_day = 10\nepsilon_per_day = 0.0",
        ),
        6,
        &["epsilon_per_day = 0 is not a valid differential-privacy budget"],
    );
    assert_fails(
        &BASE.replace(
            "queries_per_day = 10",
            "queries_per_day = 10\nepsilon_per_day = nan",
        ),
        6,
        &["not a valid differential-privacy budget"],
    );
    let r = load(&BASE.replace(
        "queries_per_day = 10",
        "queries_per_day = 10\nepsilon_per_day = 2",
    ));
    assert_eq!(r.projects()[0].epsilon_per_day, Some(2.0));
    assert_eq!(load(BASE).projects()[0].epsilon_per_day, None);
}

// ---- look-ups ---------------------------------------------------------------------------

#[test]
fn projects_of_and_role_of() {
    let r = load(
        r#"
[[project]]
id = "one"
purpose = "First"
expires = 2027-03-31
queries_per_day = 10
tables = { patients = "*" }
members = [
    { principal = "ana", role = "analyst" },
    { principal = "cam", role = "commissioner" },
    { principal = "ana", role = "admin" },
]

[[project]]
id = "two"
purpose = "Second"
expires = 2027-03-31
queries_per_day = 10
tables = { practices = "*" }
members = [{ principal = "ana", role = "analyst" }]
"#,
    );
    let ids = |principal: &str, role: Role| -> Vec<String> {
        r.projects_of(principal, role)
            .iter()
            .map(|p| p.id.clone())
            .collect()
    };
    assert_eq!(ids("ana", Role::Analyst), ["one", "two"]);
    assert_eq!(ids("ana", Role::Admin), ["one"]);
    assert_eq!(ids("cam", Role::Commissioner), ["one"]);
    assert!(ids("cam", Role::Analyst).is_empty());
    assert!(ids("nobody", Role::Auditor).is_empty());

    let one = r.project("one").expect("one");
    assert_eq!(one.role_of("ana"), [Role::Analyst, Role::Admin]);
    assert_eq!(one.role_of("cam"), [Role::Commissioner]);
    assert!(one.role_of("nobody").is_empty());
    assert!(r.project("three").is_none());
    assert!(one.table("practices").is_none());
    assert!(
        r.project("two")
            .and_then(|p| p.table("practices"))
            .is_some()
    );
}

#[test]
fn expiry_is_inclusive_of_the_last_day() {
    let r = load(BASE);
    let p = &r.projects()[0];
    assert!(!p.is_expired(day("2027-03-30")));
    assert!(!p.is_expired(day("2027-03-31")));
    assert!(p.is_expired(day("2027-04-01")));
}

// ---- canonical form ---------------------------------------------------------------------

const CANONICAL_A: &str = r#"
# Two projects, written one way.
[[project]]
id = "zeta"
purpose = "Says \"hi\""
expires = 2027-03-31
queries_per_day = 10
tables = { hes_ae = "*", patients = ["sex", "patient_id"] }
[[project.members]]
principal = "ana"
role = "analyst"
[[project.members]]
principal = "aud"
role = "auditor"

[[project]]
id = "alpha"
purpose = "Exempt one"
national_opt_out = "exempt"
opt_out_exemption_basis = "s251"
expires = 2026-01-31
date_window = { from = 2015-01-01, to = 2020-12-31 }
queries_per_day = 5
epsilon_per_day = 0.5
tables = {}
[project.output]
min_persons = 10
[[project.members]]
principal = "aud"
role = "auditor"
"#;

/// The same content as `CANONICAL_A`: other order, layout, comments, date spellings, and
/// defaults written out.
const CANONICAL_B: &str = r#"
[[project]]
  id = "alpha"
  purpose = 'Exempt one'
  national_opt_out = "exempt"     # s251 support
  opt_out_exemption_basis = "s251"
  queries_per_day = 5
  epsilon_per_day = 5e-1
  expires = "2026-01-31"
  tables = {}

  [project.date_window]
  to = "2020-12-31"
  from = 2015-01-01

  [project.output]
  significant_figures = 3
  min_persons = 10
  rounding_base = 5

  [[project.members]]
  role = "auditor"
  principal = "aud"

[[project]]
  id = "zeta"
  purpose = 'Says "hi"'
  national_opt_out = "applies"
  expires = 2027-03-31
  queries_per_day = 10
  members = [
      { role = "auditor", principal = "aud" },
      { principal = "ana", role = "analyst" },
  ]
  [project.tables]
  patients = ["patient_id", "sex"]
  hes_ae = "*"
"#;

#[test]
fn canonical_form_is_independent_of_formatting() {
    let a = load(CANONICAL_A);
    let b = load(CANONICAL_B);
    assert_eq!(a.canonical(), b.canonical());
}

#[test]
fn canonical_form_golden() {
    let expected = "\
fivesafes-project-register v2
project alpha
  purpose \"Exempt one\"
  national_opt_out exempt \"s251\"
  expires 2026-01-31
  date_window 2015-01-01 2020-12-31
  queries_per_day 5
  epsilon_per_day 0.5
  output min_persons 10 rounding_base 5 noise_extra_threshold 2 significant_figures 3 low_effect_spread 3
  member aud auditor
project zeta
  purpose \"Says \\\"hi\\\"\"
  national_opt_out applies
  expires 2027-03-31
  date_window none
  queries_per_day 10
  epsilon_per_day none
  output min_persons 8 rounding_base 5 noise_extra_threshold 2 significant_figures 3 low_effect_spread 3
  table patients patient_id,sex
  table hes_ae patient_id,aekey,arrivaldate,aearrivalmode,aeattenddisp,procode3,gpprac,arrivalage
  member ana analyst
  member aud auditor
";
    assert_eq!(load(CANONICAL_A).canonical(), expected);
}

#[test]
fn canonical_form_changes_with_content() {
    let base = load(CANONICAL_A).canonical();
    let changes = [
        ("purpose = \"Exempt one\"", "purpose = \"Exempt two\""),
        ("expires = 2026-01-31", "expires = 2026-02-01"),
        ("to = 2020-12-31", "to = 2020-12-30"),
        ("queries_per_day = 5", "queries_per_day = 6"),
        ("epsilon_per_day = 0.5", "epsilon_per_day = 0.25"),
        ("min_persons = 10", "min_persons = 11"),
        (
            "opt_out_exemption_basis = \"s251\"",
            "opt_out_exemption_basis = \"s251 \\\"x\\\"\"",
        ),
        ("patients = [\"sex\", \"patient_id\"]", "patients = \"*\""),
        ("hes_ae = \"*\", ", ""),
        ("principal = \"ana\"", "principal = \"ann\""),
        ("role = \"analyst\"", "role = \"admin\""),
        ("id = \"zeta\"", "id = \"zeta-2\""),
    ];
    for (from, to) in changes {
        assert!(CANONICAL_A.contains(from), "{from}");
        let changed = load(&CANONICAL_A.replacen(from, to, 1)).canonical();
        assert_ne!(changed, base, "changing {from} to {to}");
    }
    let exempt_removed = CANONICAL_A
        .replace("national_opt_out = \"exempt\"\n", "")
        .replace("opt_out_exemption_basis = \"s251\"\n", "");
    assert_ne!(load(&exempt_removed).canonical(), base);
}

#[test]
fn missing_keys_point_at_their_project() {
    let text = format!(
        "{BASE}\n{}",
        doc(BASE)
            .replace("expires = 2027-03-31\n", "")
            .replace("p-one", "p-two")
    );
    assert_fails(&text, 14, &["missing field `expires`"]);
}

#[test]
fn policy_hash_follows_content_not_formatting() {
    let a = fivesafes_policies::Register::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/projects.example.toml"
    )))
    .expect("example");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/projects.example.toml"
    ))
    .expect("read");
    let reformatted: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n\n"))
        .collect();
    let b = fivesafes_policies::Register::from_toml(&reformatted, "b").expect("reformatted");
    assert_eq!(a.policy_hash(), b.policy_hash());
    assert_eq!(a.policy_hash().len(), 64);
    let changed = text.replacen("queries_per_day = 500", "queries_per_day = 499", 1);
    assert_ne!(changed, text, "the example sets queries_per_day = 500");
    let c = fivesafes_policies::Register::from_toml(&changed, "c").expect("changed");
    assert_ne!(a.policy_hash(), c.policy_hash());
}

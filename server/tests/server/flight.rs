//! The Flight SQL server end to end with the Rust Flight SQL client: queries, prepared
//! statements, metadata, refusals, security, robustness, audit records of every query.

use std::sync::Arc;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    Any, CommandGetTables, CommandStatementQuery, CommandStatementSubstraitPlan, ProstMessageExt,
    SubstraitPlan,
};
use arrow_flight::{FlightData, FlightDescriptor, Ticket};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use fivesafes_server::audit::{Kind, Outcome, RecordFilter};
use fivesafes_server::client::ClientError;
use fivesafes_server::run::{META_RULES, META_SUPPRESSION, result_hash};
use futures::TryStreamExt;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

use crate::env::{self, Env};

const COUNT_BY_SEX: &str = "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex ORDER BY sex";

fn code(e: &ClientError) -> Code {
    match e {
        ClientError::Status(s) => s.code(),
        other => panic!("expected a status, got {other}"),
    }
}

fn fcode(e: &arrow_flight::error::FlightError) -> Code {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => s.code(),
        other => panic!("expected a status, got {other}"),
    }
}

fn message(e: &ClientError) -> String {
    match e {
        ClientError::Status(s) => s.message().to_string(),
        other => panic!("expected a status, got {other}"),
    }
}

async fn raw_client(env: &Env, principal: &str, project: &str) -> FlightSqlServiceClient<Channel> {
    let mut c = env
        .conn(principal, Some(project))
        .flight_sql()
        .await
        .expect("connect");
    c.set_token(env::token(principal));
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn analyst_gets_protected_counts_with_metadata_and_matching_audit_hash() {
    let env = env::start().await;
    let mut client = raw_client(&env, "analyst", "diabetes-research").await;
    let info = client
        .execute(COUNT_BY_SEX.to_string(), None)
        .await
        .expect("flight info");
    let info_schema = info.clone().try_decode_schema().expect("schema");
    assert!(info_schema.metadata().contains_key(META_SUPPRESSION));
    // The number of suppressed cells is never released (it would reveal small groups).
    assert!(
        !info_schema
            .metadata()
            .values()
            .any(|v| v.chars().all(|c| c.is_ascii_digit()))
    );
    assert_eq!(
        info_schema.metadata()[META_RULES],
        "FS-3,FS-4,FS-5,FS-6,FS-7"
    );
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");

    // Fetch the raw messages so the hash can be recomputed from what was received.
    let mut inner: FlightServiceClient<Channel> = client.inner().clone();
    let mut request = tonic::Request::new(ticket.clone());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", env::token("analyst"))
            .parse()
            .expect("header"),
    );
    let messages: Vec<FlightData> = inner
        .do_get(request)
        .await
        .expect("do_get")
        .into_inner()
        .try_collect()
        .await
        .expect("stream");
    let batches = arrow_flight::utils::flight_data_to_batches(&messages).expect("decode");
    assert_eq!(
        batches[0].schema(),
        Arc::new(info_schema),
        "FlightInfo schema = streamed schema"
    );
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert!(rows >= 1);
    for b in &batches {
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..n.len() {
            assert!(n.is_null(i) || n.value(i) % 5 == 0, "rounded to 5");
        }
    }

    // The ticket is single use.
    let again = client.do_get(ticket).await.expect_err("replay refused");
    assert_eq!(fcode(&again), Code::NotFound, "{again}");

    // The audit log has the query, and the hash of exactly these bytes.
    let completed = env
        .running
        .state
        .audit
        .records(&RecordFilter::default())
        .expect("records")
        .into_iter()
        .filter(|r| r.entry.kind == Kind::QueryCompleted)
        .collect::<Vec<_>>();
    assert_eq!(completed.len(), 1);
    let e = &completed[0].entry;
    assert_eq!(e.outcome, Outcome::Ok);
    assert_eq!(e.principal, "analyst");
    assert_eq!(e.project, "diabetes-research");
    assert_eq!(e.statement, COUNT_BY_SEX);
    assert_eq!(e.rows_returned, rows as u64);
    assert_eq!(e.tables_read, vec!["patients".to_string()]);
    assert!(e.rows_scanned > 0);
    assert_eq!(e.result_hash, result_hash(&messages));
    env.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_carry_the_rule_id_and_no_data() {
    let env = env::start().await;
    let analyst = env.conn("analyst", Some("diabetes-research"));
    for (sql, rule) in [
        ("SELECT patient_id, birth_month FROM patients", "FS-1"),
        ("SELECT MAX(birth_month) FROM patients", "FS-2"),
        ("COPY patients TO '/tmp/x.csv'", "FS-G1"),
        ("EXPLAIN ANALYZE SELECT COUNT(*) FROM patients", "FS-G1"),
    ] {
        let e = analyst
            .query(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} refused"));
        assert_eq!(code(&e), Code::InvalidArgument, "{sql}");
        let m = message(&e);
        assert!(m.starts_with(rule), "{sql}: {m}");
    }
    // A hidden table fails exactly like a typo.
    let hidden = env.conn("analyst2", Some("ae-audit"));
    let a = hidden
        .query("SELECT COUNT(*) FROM hes_apc")
        .await
        .expect_err("hidden");
    let b = hidden
        .query("SELECT COUNT(*) FROM hes_apx")
        .await
        .expect_err("typo");
    assert_eq!(code(&a), Code::InvalidArgument);
    assert_eq!(
        message(&a).replace("hes_apc", "X"),
        message(&b).replace("hes_apx", "X")
    );
    env.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_roles_and_projects() {
    let env = env::start().await;
    let mut no_token = env.conn("analyst", Some("diabetes-research"));
    no_token.token = String::new();
    let mut c = FlightSqlServiceClient::new(no_token.channel().await.expect("channel"));
    let e = c
        .execute(COUNT_BY_SEX.into(), None)
        .await
        .expect_err("no token");
    assert_eq!(fcode(&e), Code::Unauthenticated, "{e}");

    let mut wrong = env.conn("analyst", Some("diabetes-research"));
    wrong.token = "fs_not-a-real-token".into();
    let e = wrong.query(COUNT_BY_SEX).await.expect_err("wrong token");
    assert_eq!(code(&e), Code::Unauthenticated);

    // A member of another project.
    let e = env
        .conn("analyst2", Some("diabetes-research"))
        .query(COUNT_BY_SEX)
        .await
        .expect_err("other project");
    assert_eq!(code(&e), Code::PermissionDenied);

    // Several projects and no header: told to choose.
    let e = env
        .conn("analyst", None)
        .query(COUNT_BY_SEX)
        .await
        .expect_err("choose");
    assert_eq!(code(&e), Code::InvalidArgument);
    assert!(message(&e).contains("x-fivesafes-project"));

    // Commissioners and auditors may not send SQL to data projects.
    let e = env
        .conn("commissioner", None)
        .query(COUNT_BY_SEX)
        .await
        .expect_err("comm");
    assert_eq!(code(&e), Code::PermissionDenied);
    // The auditor's only project is the audit project, whose only table is the log.
    let e = env
        .conn("auditor", None)
        .query(COUNT_BY_SEX)
        .await
        .expect_err("auditor");
    assert_eq!(
        code(&e),
        Code::InvalidArgument,
        "patients does not exist there"
    );
    let log = env
        .conn("auditor", None)
        .query("SELECT kind, COUNT(*) AS n FROM audit_log GROUP BY kind ORDER BY kind")
        .await
        .expect("auditor reads the log");
    assert!(log.iter().map(RecordBatch::num_rows).sum::<usize>() >= 2);

    // Failed authentications are in the audit log, with no token material.
    let records = env
        .running
        .state
        .audit
        .records(&RecordFilter::default())
        .expect("records");
    let failures: Vec<_> = records
        .iter()
        .filter(|r| r.entry.kind == Kind::AuthFailed)
        .collect();
    assert_eq!(failures.len(), 2);
    for r in &failures {
        assert!(!format!("{:?}", r.entry).contains("fs_not-a-real-token"));
    }
    env.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn tickets_are_bound_to_their_principal() {
    let env = env::start().await;
    let mut a = raw_client(&env, "analyst", "diabetes-research").await;
    let info = a.execute(COUNT_BY_SEX.into(), None).await.expect("info");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut other = raw_client(&env, "analyst2", "ae-audit").await;
    let e = other
        .do_get(ticket.clone())
        .await
        .expect_err("foreign ticket");
    assert_eq!(fcode(&e), Code::PermissionDenied, "{e}");
    // Still usable by its owner, once.
    let batches: Vec<RecordBatch> = a
        .do_get(ticket.clone())
        .await
        .expect("owner")
        .try_collect()
        .await
        .expect("stream");
    assert!(!batches.is_empty());
    // A forged ticket.
    let forged = Ticket::new(
        arrow_flight::sql::TicketStatementQuery {
            statement_handle: vec![0u8; 32].into(),
        }
        .as_any()
        .encode_to_vec(),
    );
    let e = a.do_get(forged).await.expect_err("forged");
    assert_eq!(fcode(&e), Code::NotFound, "{e}");
    env.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_and_metadata() {
    let env = env::start().await;
    let mut c = raw_client(&env, "analyst", "diabetes-research").await;
    let mut stmt = c.prepare(COUNT_BY_SEX.into(), None).await.expect("prepare");
    let info = stmt.execute().await.expect("execute");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<RecordBatch> = c
        .do_get(ticket)
        .await
        .expect("get")
        .try_collect()
        .await
        .expect("rows");
    assert!(batches.iter().map(RecordBatch::num_rows).sum::<usize>() >= 1);
    stmt.close().await.expect("close");
    // Preparing a refused statement is refused.
    let e = c
        .prepare("SELECT * FROM patients".into(), None)
        .await
        .expect_err("refused");
    assert_eq!(fcode(&e), Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("FS-1"), "{e}");

    // GetTables lists only the project's tables (analyst2: patients, hes_ae).
    let mut c2 = raw_client(&env, "analyst2", "ae-audit").await;
    for include_schema in [false, true] {
        let info = c2
            .get_tables(CommandGetTables {
                include_schema,
                ..CommandGetTables::default()
            })
            .await
            .expect("tables");
        let schema = info.clone().try_decode_schema().expect("schema");
        let ticket = info.endpoint[0].ticket.clone().expect("ticket");
        let batches: Vec<RecordBatch> = c2
            .do_get(ticket)
            .await
            .expect("get")
            .try_collect()
            .await
            .expect("rows");
        assert_eq!(batches[0].schema().fields(), schema.fields(), "same shape");
        let names = batches[0].column(2).as_string::<i32>();
        let mut names: Vec<&str> = (0..names.len()).map(|i| names.value(i)).collect();
        names.sort_unstable();
        assert_eq!(names, ["hes_ae", "patients"]);
    }
    let cats: Vec<RecordBatch> = {
        let info = c2.get_catalogs().await.expect("catalogs");
        c2.do_get(info.endpoint[0].ticket.clone().expect("t"))
            .await
            .expect("g")
            .try_collect()
            .await
            .expect("r")
    };
    assert_eq!(cats[0].column(0).as_string::<i32>().value(0), "fivesafes");
    let info = c2.get_table_types().await.expect("types");
    assert!(info.endpoint[0].ticket.is_some());
    let info = c2.get_sql_info(vec![]).await.expect("sql info");
    let rows: Vec<RecordBatch> = c2
        .do_get(info.endpoint[0].ticket.clone().expect("t"))
        .await
        .expect("g")
        .try_collect()
        .await
        .expect("r");
    assert!(rows[0].num_rows() >= 3);
    env.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn substrait_updates_and_malformed_messages_are_refused_and_the_server_stays_up() {
    let env = env::start().await;
    let mut c = raw_client(&env, "analyst", "diabetes-research").await;
    // Substrait plan.
    let cmd = CommandStatementSubstraitPlan {
        plan: Some(SubstraitPlan {
            plan: vec![1, 2, 3].into(),
            version: "0.1".into(),
        }),
        transaction_id: None,
    };
    let mut inner = c.inner().clone();
    let mut req = tonic::Request::new(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec()));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", env::token("analyst"))
            .parse()
            .expect("h"),
    );
    req.metadata_mut().insert(
        "x-fivesafes-project",
        "diabetes-research".parse().expect("h"),
    );
    let e = inner.get_flight_info(req).await.expect_err("substrait");
    assert_eq!(e.code(), Code::PermissionDenied);
    // Updates.
    let e = c
        .execute_update("DELETE FROM patients".into(), None)
        .await
        .expect_err("update");
    assert_eq!(fcode(&e), Code::PermissionDenied, "{e}");
    // Malformed protobuf in the command.
    let mut req = tonic::Request::new(FlightDescriptor::new_cmd(vec![0xff, 0xff, 0x01, 0x02]));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", env::token("analyst"))
            .parse()
            .expect("h"),
    );
    let e = inner.get_flight_info(req).await.expect_err("malformed");
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::Internal),
        "{e}"
    );
    // An Any of an unknown type.
    let any = Any {
        type_url: "type.googleapis.com/nope".into(),
        value: vec![1, 2, 3].into(),
    };
    let req = tonic::Request::new(FlightDescriptor::new_cmd(any.encode_to_vec()));
    assert!(inner.get_flight_info(req).await.is_err());

    let analyst = env.conn("analyst", Some("diabetes-research"));
    // 10 MB of SQL.
    let big = format!(
        "SELECT COUNT(*) FROM patients WHERE sex IN ({})",
        "'F',".repeat(2_500_000)
    );
    let e = analyst.query(&big).await.expect_err("huge");
    assert!(matches!(
        code(&e),
        Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted
    ));
    // Deep nesting.
    let deep = format!(
        "SELECT COUNT(*) FROM patients WHERE {}1=1{}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let e = analyst.query(&deep).await.expect_err("deep");
    assert_eq!(code(&e), Code::InvalidArgument);
    // 1,000 UNION ALLs.
    let unions = vec!["SELECT COUNT(*) AS n FROM patients"; 1000].join(" UNION ALL ");
    let e = analyst.query(&unions).await.expect_err("1,000 unions");
    assert!(message(&e).starts_with("FS-G2"), "{}", message(&e));
    // A client that goes away mid-request.
    let slow = analyst.clone();
    let h = tokio::spawn(async move { slow.query(COUNT_BY_SEX).await });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    h.abort();
    // Still up and answering.
    let ok = analyst.query(COUNT_BY_SEX).await.expect("still serving");
    assert!(!ok.is_empty());
    let _ = Arc::new(CommandStatementQuery::default());
    env.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_query_sent_leaves_exactly_one_query_record() {
    let env = env::start().await;
    let analyst = env.conn("analyst", Some("diabetes-research"));
    let sent = [
        COUNT_BY_SEX,
        "SELECT patient_id FROM patients",
        "SELECT imd_decile, COUNT(*) AS n FROM patients GROUP BY imd_decile",
        "SELEC nonsense",
        "SELECT COUNT(*) AS n FROM practices",
    ];
    for sql in sent {
        let _ = analyst.query(sql).await;
    }
    let records = env
        .running
        .state
        .audit
        .records(&RecordFilter::default())
        .expect("records");
    let queries = records
        .iter()
        .filter(|r| matches!(r.entry.kind, Kind::QueryStarted | Kind::QueryRefused))
        .count();
    assert_eq!(queries, sent.len());
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.entry.kind == Kind::QueryRefused)
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(matches!(&refused[0].entry.outcome, Outcome::Refused { rule } if rule == "FS-1"));
    let audit_dir = env.audit_dir();
    env.running.shutdown().await.expect("shutdown");
    // Offline verification of what the server wrote.
    let key = fivesafes_engine::keys::load_audit_public_key(
        &env::demo_dir()
            .keys()
            .join(fivesafes_engine::keys::AUDIT_PUB),
    )
    .expect("pub");
    let summary = fivesafes_server::audit::verify_log(&audit_dir, &key).expect("verifies");
    assert!(summary.to_string().contains("records"), "{summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn budgets_run_out_with_resource_exhausted() {
    let env = env::start_with(|c, dir| {
        let text = std::fs::read_to_string(&c.register)
            .expect("register")
            .replace("queries_per_day = 500", "queries_per_day = 2");
        let path = dir.join("projects.toml");
        std::fs::write(&path, text).expect("write");
        c.register = path;
    })
    .await;
    let analyst = env.conn("analyst", Some("diabetes-research"));
    analyst.query(COUNT_BY_SEX).await.expect("1");
    analyst.query(COUNT_BY_SEX).await.expect("2");
    let e = analyst.query(COUNT_BY_SEX).await.expect_err("3");
    assert_eq!(code(&e), Code::ResourceExhausted);
    // Refusals by text do not spend budget, and the count survives a restart.
    env.running.shutdown().await.expect("shutdown");
}

//! The fivesafes.v1 services over gRPC: Projects and Audit.

use fivesafes_proto::v1::audit_client::AuditClient;
use fivesafes_proto::v1::projects_client::ProjectsClient;
use fivesafes_proto::v1::{
    InclusionProofRequest, ListCheckpointsRequest, ListProjectsRequest, ListRecordsRequest,
    WhoAmIRequest,
};
use fivesafes_server::audit::{InclusionProof, Record};
use tonic::Code;
use tonic::transport::Channel;

use crate::env::{self, Env};

fn req<T>(msg: T, principal: &str, project: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", env::token(principal))
            .parse()
            .expect("header"),
    );
    if let Some(p) = project {
        r.metadata_mut()
            .insert("x-fivesafes-project", p.parse().expect("header"));
    }
    r
}

async fn channel(env: &Env) -> Channel {
    env.conn("analyst", None).channel().await.expect("channel")
}

#[tokio::test(flavor = "multi_thread")]
async fn projects_who_am_i_and_budget() {
    let env = env::start().await;
    let mut c = ProjectsClient::new(channel(&env).await);
    let me = c
        .who_am_i(req(WhoAmIRequest {}, "analyst2", None))
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(
        (me.principal.as_str(), me.project.as_str(), me.role.as_str()),
        ("analyst2", "ae-audit", "analyst")
    );
    let before = me.budget.expect("budget").remaining;
    env.conn("analyst2", None)
        .query("SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex")
        .await
        .expect("query");
    let me = c
        .who_am_i(req(WhoAmIRequest {}, "analyst2", None))
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(me.budget.expect("budget").remaining, before - 1);
    let list = c
        .list_projects(req(ListProjectsRequest {}, "analyst", None))
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = list.projects.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["diabetes-research", "cancer-registry-linkage"]);
    let mut anon = tonic::Request::new(WhoAmIRequest {});
    anon.metadata_mut()
        .insert("authorization", "Bearer nope".parse().expect("h"));
    assert_eq!(
        c.who_am_i(anon).await.expect_err("bad").code(),
        Code::Unauthenticated
    );
    env.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn auditors_list_records_and_verify_inclusion() {
    let env = env::start().await;
    let analyst = env.conn("analyst", Some("diabetes-research"));
    analyst
        .query("SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex")
        .await
        .expect("query");
    let _ = analyst.query("SELECT patient_id FROM patients").await;
    let cp = env.running.state.audit.checkpoint().expect("checkpoint");

    let mut c = AuditClient::new(channel(&env).await);
    // Only auditors.
    let e = c
        .list_records(req(
            ListRecordsRequest::default(),
            "analyst",
            Some("diabetes-research"),
        ))
        .await
        .expect_err("analyst");
    assert_eq!(e.code(), Code::PermissionDenied);

    let records = c
        .list_records(req(
            ListRecordsRequest {
                principal: "analyst".into(),
                ..ListRecordsRequest::default()
            },
            "auditor",
            None,
        ))
        .await
        .expect("records")
        .into_inner()
        .records;
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["query-started", "query-completed", "query-refused"]);
    let refused = c
        .list_records(req(
            ListRecordsRequest {
                outcome: "refused".into(),
                ..ListRecordsRequest::default()
            },
            "auditor",
            None,
        ))
        .await
        .expect("refused")
        .into_inner()
        .records;
    assert_eq!(refused.len(), 1);
    assert!(refused[0].json.contains("FS-1"));

    let cps = c
        .list_checkpoints(req(ListCheckpointsRequest {}, "auditor", None))
        .await
        .expect("checkpoints")
        .into_inner()
        .checkpoints;
    let last = cps.last().expect("a checkpoint");
    assert_eq!(last.tree_size, cp.tree_size);
    assert_eq!(last.root_hash, cp.root.to_vec());

    // Every listed record is provably in the signed tree.
    for r in &records {
        let decoded = Record::decode(&r.encoded).expect("decodes");
        assert_eq!(decoded.leaf_hash().to_vec(), r.leaf_hash);
        let p = c
            .get_inclusion_proof(req(
                InclusionProofRequest {
                    sequence: r.sequence,
                    tree_size: last.tree_size,
                },
                "auditor",
                None,
            ))
            .await
            .expect("proof")
            .into_inner();
        assert_eq!(p.root_hash, last.root_hash);
        let proof = InclusionProof {
            leaf_index: r.sequence,
            tree_size: last.tree_size,
            path: p
                .path
                .iter()
                .map(|h| <[u8; 32]>::try_from(h.as_slice()).expect("32 bytes"))
                .collect(),
        };
        let leaf: [u8; 32] = p.leaf_hash.as_slice().try_into().expect("32");
        let root: [u8; 32] = p.root_hash.as_slice().try_into().expect("32");
        assert!(proof.verify(&leaf, &root), "record {}", r.sequence);
    }
    env.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn commissioners_run_reports_and_nobody_else_does() {
    let env = env::start().await;
    let commissioner = env.conn("commissioner", None);
    let list = commissioner.list_reports().await.expect("list");
    assert!(list.iter().any(|r| r.name == "emergency-admissions"));
    let params = [("by", "region"), ("period", "financial_year")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = commissioner
        .run_report("emergency-admissions", params, "html")
        .await
        .expect("report");
    let html = String::from_utf8(r.rendered).expect("utf-8");
    assert!(
        html.contains("<svg") && html.contains("<table"),
        "a page with chart and table"
    );
    assert_eq!(r.media_type, "text/html; charset=utf-8");
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(
        std::io::Cursor::new(r.arrow_ipc_stream),
        None,
    )
    .expect("arrow");
    let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert!(rows >= 1);

    // Unknown reports and parameters list what is allowed.
    let e = commissioner
        .run_report("no-such-report", Default::default(), "")
        .await
        .expect_err("unknown");
    let msg = e.to_string();
    assert!(msg.contains("emergency-admissions"), "{msg}");
    let bad = [("by".to_string(), "postcode".to_string())]
        .into_iter()
        .collect();
    let e = commissioner
        .run_report("emergency-admissions", bad, "")
        .await
        .expect_err("bad parameter");
    assert!(e.to_string().contains("practice"), "{e}");

    // Analysts do not run reports; commissioners do not run SQL.
    let e = env
        .conn("analyst", Some("diabetes-research"))
        .run_report("emergency-admissions", Default::default(), "")
        .await
        .expect_err("analyst");
    assert!(
        matches!(e, fivesafes_server::client::ClientError::Status(ref s) if s.code() == Code::PermissionDenied),
        "{e}"
    );

    // Each run is in the audit log.
    let runs = env
        .running
        .state
        .audit
        .records(&fivesafes_server::audit::RecordFilter::default())
        .expect("records")
        .into_iter()
        .filter(|r| r.entry.kind == fivesafes_server::audit::Kind::ReportRun)
        .count();
    assert_eq!(runs, 3);
    env.running.shutdown().await.expect("shutdown");
}

/// One HTTP/1.1 GET; returns (status code, headers, body).
async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    auth: Option<&str>,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("response");
    let code = head
        .split_whitespace()
        .nth(1)
        .expect("status")
        .parse()
        .expect("code");
    (code, head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn report_pages_over_http_with_the_same_tokens_and_audit() {
    use base64::Engine as _;
    let env = env::start().await;
    let addr = env.running.http_addr.expect("http pages configured");
    let path = "/reports/emergency-admissions?by=region&period=financial_year&format=csv";
    let (code, head, _) = http_get(addr, path, None).await;
    assert_eq!(code, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{head}"
    );
    let bearer = format!("Bearer {}", env::token("commissioner"));
    let (code, _, body) = http_get(addr, path, Some(&bearer)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("area,"), "{body}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("commissioner:{}", env::token("commissioner")))
    );
    let (code, head, body) = http_get(addr, "/reports/emergency-admissions", Some(&basic)).await;
    assert_eq!(code, 200);
    assert!(head.contains("text/html"));
    assert!(body.contains("<svg"));
    let (code, _, body) = http_get(addr, "/", Some(&basic)).await;
    assert_eq!(code, 200);
    assert!(body.contains("/reports/emergency-admissions"));
    let analyst = format!("Bearer {}", env::token("analyst2"));
    assert_eq!(http_get(addr, path, Some(&analyst)).await.0, 403);
    let (code, _, body) = http_get(addr, "/reports/nope", Some(&bearer)).await;
    assert_eq!(code, 400, "{body}");
    let runs = env
        .running
        .state
        .audit
        .records(&fivesafes_server::audit::RecordFilter::default())
        .expect("records")
        .into_iter()
        .filter(|r| r.entry.kind == fivesafes_server::audit::Kind::ReportRun)
        .count();
    assert_eq!(runs, 3, "two runs and one unknown report");
    env.running.shutdown().await.expect("shutdown");
}

//! Canned reports from the command line and in the demo: the client side of
//! `fivesafes.v1.Reports` (the service itself is [`crate::services::reports`]).

use crate::client::Connection;

/// Step 3 of the demo walk-through: a commissioner's report.
pub async fn demo_walkthrough(url: &str, token: &str) {
    let conn = Connection {
        server: url.to_string(),
        token: token.to_string(),
        project: None,
        ca_cert: None,
        client_identity: None,
    };
    let params = [("by", "region"), ("period", "financial_year")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    println!(
        "── 3. a commissioner's report (project service-design) ──\n\
         fivesafes report run emergency-admissions --param by=region --param \
         period=financial_year\n"
    );
    match conn
        .run_report("emergency-admissions", params, "table")
        .await
    {
        Ok(r) => println!("{}\n", String::from_utf8_lossy(&r.rendered)),
        Err(e) => println!("unexpected error: {e}\n"),
    }
}

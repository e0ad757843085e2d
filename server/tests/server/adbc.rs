//! A real third-party client: the Python ADBC Flight SQL driver (`adbc-driver-flightsql`,
//! installed by `.ci/run` into the interpreter named by `FIVESAFES_PYTHON`, else `python3`).

use std::process::Command;

use crate::env;

#[tokio::test(flavor = "multi_thread")]
async fn python_adbc_driver_lists_queries_and_sees_refusals() {
    let env = env::start().await;
    let python = std::env::var("FIVESAFES_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/adbc_client.py");
    let url = env.url.replace("http://", "grpc://");
    let expected = "patients,practice_registrations,clinical_events,medications,hes_apc,hes_op,\
                    hes_ae,practices,lsoas";
    let python2 = python.clone();
    let token = env::token("analyst");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python2)
            .arg(script)
            .env("FIVESAFES_URI", url)
            .env("FIVESAFES_ANALYST_TOKEN", token)
            .env("FIVESAFES_EXPECTED_TABLES", expected)
            .output()
    })
    .await
    .expect("join")
    .unwrap_or_else(|e| panic!("cannot run {python}: {e} (run .ci/run, which installs it)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the ADBC client failed (is adbc-driver-flightsql installed for {python}? .ci/run \
         installs it)\nstdout: {stdout}\nstderr: {stderr}"
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert!(seen["rows"].as_u64().expect("rows") >= 1);
    assert!(seen["refusal"].as_str().expect("refusal").contains("FS-1"));
    env.running.shutdown().await.expect("shutdown");
}

//! TLS and mutual TLS with certificates generated in the test (rcgen).

use std::path::{Path, PathBuf};

use fivesafes_server::config::TlsConfig;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::env;

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_client_cert: PathBuf,
    other_client_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let ca_params = {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p
    };
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let leaf = |names: Vec<String>, issuer: &CertifiedIssuer<'_, KeyPair>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, issuer)
            .expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], &ca);
    let (client_cert, client_key) = leaf(vec!["analyst".into()], &ca);
    let rogue = CertifiedIssuer::self_signed(
        {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        },
        KeyPair::generate().expect("key"),
    )
    .expect("rogue ca");
    let (other_cert, other_key) = leaf(vec!["mallory".into()], &rogue);
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        other_client_cert: write("other.pem", &other_cert),
        other_client_key: write("other.key", &other_key),
    }
}

const SQL: &str = "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex";

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_mutual_tls() {
    let certs = tempfile::tempdir().expect("tempdir");
    let p = pki(certs.path());

    // Server-authenticated TLS.
    let env = env::start_with(|c, _| {
        c.tls = Some(TlsConfig {
            cert: p.server_cert.clone(),
            key: p.server_key.clone(),
            client_ca: None,
        });
    })
    .await;
    let mut conn = env.conn("analyst", Some("diabetes-research"));
    conn.server = format!("https://localhost:{}", env.running.addr.port());
    conn.ca_cert = Some(p.ca.clone());
    assert!(!conn.query(SQL).await.expect("tls query").is_empty());
    // Plaintext to a TLS server fails.
    let mut plain = conn.clone();
    plain.server = format!("http://localhost:{}", env.running.addr.port());
    plain.ca_cert = None;
    assert!(plain.query(SQL).await.is_err());
    env.running.shutdown().await.expect("shutdown");

    // Mutual TLS: a client certificate from the configured CA is required.
    let env = env::start_with(|c, _| {
        c.tls = Some(TlsConfig {
            cert: p.server_cert.clone(),
            key: p.server_key.clone(),
            client_ca: Some(p.ca.clone()),
        });
    })
    .await;
    let mut conn = env.conn("analyst", Some("diabetes-research"));
    conn.server = format!("https://localhost:{}", env.running.addr.port());
    conn.ca_cert = Some(p.ca.clone());
    assert!(conn.query(SQL).await.is_err(), "no client certificate");
    let mut rogue = conn.clone();
    rogue.client_identity = Some((p.other_client_cert.clone(), p.other_client_key.clone()));
    assert!(
        rogue.query(SQL).await.is_err(),
        "certificate from another CA"
    );
    conn.client_identity = Some((p.client_cert.clone(), p.client_key.clone()));
    assert!(!conn.query(SQL).await.expect("mtls query").is_empty());
    env.running.shutdown().await.expect("shutdown");
}

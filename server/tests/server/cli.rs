//! The `fivesafes` binary as a user runs it: keys, synthetic extracts, ingest, and a process
//! killed mid-ingest.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use fivesafes_engine::store::Store;

fn fivesafes(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fivesafes"))
        .args(args)
        .output()
        .expect("run fivesafes")
}

fn ok(args: &[&str]) -> String {
    let out = fivesafes(args);
    assert!(
        out.status.success(),
        "fivesafes {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn synth_is_byte_identical_for_the_same_seed_and_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    ok(&[
        "synth",
        "--patients",
        "20000",
        "--seed",
        "7",
        "--out",
        p(&a),
        "--no-progress",
    ]);
    ok(&[
        "synth",
        "--patients",
        "20000",
        "--seed",
        "7",
        "--out",
        p(&b),
        "--no-progress",
    ]);
    ok(&[
        "synth",
        "--patients",
        "20000",
        "--seed",
        "8",
        "--out",
        p(&c),
        "--no-progress",
    ]);
    let (fa, fb, fc) = (dir_bytes(&a), dir_bytes(&b), dir_bytes(&c));
    assert_eq!(fa.len(), 10, "ten extracts, no temporary files left");
    assert!(fa == fb, "same seed and size must give identical files");
    assert!(fa != fc, "another seed gives other data");
}

#[test]
fn keys_init_ingest_and_store_info() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keys, x, store) = (
        dir.path().join("keys"),
        dir.path().join("x"),
        dir.path().join("store"),
    );
    ok(&["keys", "init", "--dir", p(&keys)]);
    let again = fivesafes(&["keys", "init", "--dir", p(&keys)]);
    assert!(!again.status.success(), "keys are never overwritten");
    ok(&[
        "synth",
        "--patients",
        "500",
        "--out",
        p(&x),
        "--no-progress",
    ]);
    let summary = ok(&[
        "ingest",
        "--extracts",
        p(&x),
        "--store",
        p(&store),
        "--keys",
        p(&keys),
        "--no-progress",
    ]);
    assert!(
        summary.contains("published v000001") && summary.contains("gp_events.csv"),
        "{summary}"
    );
    let info = ok(&["store", "info", "--store", p(&store)]);
    assert!(
        info.contains("v000001") && info.contains("clinical_events") && info.contains("verified"),
        "{info}"
    );

    // A secret key readable by others is refused, naming the file and the fix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = keys.join("record.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let out = fivesafes(&[
            "ingest",
            "--extracts",
            p(&x),
            "--store",
            p(&store),
            "--keys",
            p(&keys),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("record.key") && err.contains("chmod 600"),
            "{err}"
        );
    }
}

#[test]
fn killing_ingest_never_exposes_a_partial_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keys, x, store) = (
        dir.path().join("keys"),
        dir.path().join("x"),
        dir.path().join("store"),
    );
    ok(&["keys", "init", "--dir", p(&keys)]);
    ok(&[
        "synth",
        "--patients",
        "20000",
        "--out",
        p(&x),
        "--no-progress",
    ]);
    let args = [
        "ingest",
        "--extracts",
        p(&x),
        "--store",
        p(&store),
        "--keys",
        p(&keys),
        "--no-progress",
    ];
    ok(&args);
    let mut interrupted = 0;
    for delay_ms in [30u64, 150, 400, 800, 1500] {
        let before = Store::new(&store)
            .open_current()
            .expect("a verified version")
            .manifest
            .version;
        let mut child = Command::new(env!("CARGO_BIN_EXE_fivesafes"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().expect("try_wait").is_none() {
            interrupted += 1;
        }
        child.kill().ok(); // SIGKILL: no chance to clean up.
        child.wait().expect("wait");
        // Whatever the moment of the kill, the engine opens a complete, verified version:
        // the previous one, or the new one if the kill came after publication.
        let after = Store::new(&store)
            .open_current()
            .expect("a verified version after kill");
        assert!(
            after.manifest.version == before || after.manifest.version == before + 1,
            "{before} -> {}",
            after.manifest.version
        );
    }
    assert!(
        interrupted >= 2,
        "the kills must interrupt some runs ({interrupted})"
    );
    // A clean re-run removes the leftovers and publishes.
    let out = ok(&args);
    assert!(out.contains("published"), "{out}");
    let leftovers = std::fs::read_dir(&store)
        .expect("read_dir")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .starts_with(".staging")
        })
        .count();
    assert_eq!(leftovers, 0);
    Store::new(&store).open_current().expect("verified");
}

/// Reads the server's stderr until it prints the address it serves on.
fn served_addr(child: &mut std::process::Child) -> String {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(addr) = line.strip_prefix("fivesafes serving on ") {
            let addr = addr.trim().to_string();
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return addr;
        }
    }
    panic!("the server exited before serving");
}

#[test]
fn demo_prepare_serve_query_and_verify_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let demo_s = demo.to_str().expect("utf-8");
    ok(&["demo", "--prepare", demo_s, "--patients", "1500"]);
    for f in [
        "fivesafes.toml",
        "tokens.toml",
        "projects.toml",
        "keys/audit.pub",
    ] {
        assert!(demo.join(f).exists(), "{f}");
    }
    let tokens: toml::Table =
        toml::from_str(&std::fs::read_to_string(demo.join("tokens.toml")).expect("tokens"))
            .expect("toml");
    let token = |p: &str| tokens["tokens"][p].as_str().expect("token").to_string();

    let mut server = Command::new(env!("CARGO_BIN_EXE_fivesafes"))
        .args(["serve", "--config"])
        .arg(demo.join("fivesafes.toml"))
        .args(["--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let url = format!("http://{}", served_addr(&mut server));

    let out = ok(&[
        "query",
        "--server",
        &url,
        "--token",
        &token("analyst"),
        "--project",
        "diabetes-research",
        "--format",
        "csv",
        "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex ORDER BY sex",
    ]);
    assert!(out.starts_with("sex,n\n"), "{out}");
    let refused = fivesafes(&[
        "query",
        "--server",
        &url,
        "--token",
        &token("analyst"),
        "--project",
        "diabetes-research",
        "SELECT patient_id FROM patients",
    ]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("FS-1"), "{err}");
    let tables = ok(&["tables", "--server", &url, "--token", &token("analyst2")]);
    assert!(
        tables.contains("hes_ae") && !tables.contains("hes_apc"),
        "{tables}"
    );

    // Graceful stop on SIGTERM, then the log verifies offline.
    let pid = server.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = server.wait().expect("wait");
    assert!(status.success(), "server exit: {status}");
    let summary = ok(&[
        "audit",
        "verify",
        "--log",
        demo.join("audit").to_str().expect("utf-8"),
        "--public-key",
        demo.join("keys/audit.pub").to_str().expect("utf-8"),
    ]);
    assert!(summary.contains("records"), "{summary}");

    // A tampered log fails verification and names the place.
    let seg = std::fs::read_dir(demo.join("audit"))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("segment-"))
        })
        .expect("segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&seg, bytes).expect("write");
    let bad = fivesafes(&[
        "audit",
        "verify",
        "--log",
        demo.join("audit").to_str().expect("utf-8"),
        "--public-key",
        demo.join("keys/audit.pub").to_str().expect("utf-8"),
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("segment-"), "{err}");
}

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

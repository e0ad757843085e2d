//! A failure at any point of ingest leaves the previous version current and readable; the
//! next run removes the leftovers and publishes cleanly.

use fivesafes_engine::ingest::{IngestOptions, ingest};
use fivesafes_engine::session::{SessionOptions, open_session};
use fivesafes_engine::store::{FailPoint, Store, version_name};

use crate::fixtures::*;

fn staging_dirs(store: &std::path::Path) -> usize {
    std::fs::read_dir(store)
        .expect("read_dir")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .starts_with(".staging-")
        })
        .count()
}

#[tokio::test]
async fn injected_failures_leave_previous_version_then_rerun_publishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (x, store) = (dir.path().join("x"), dir.path().join("store"));
    synth(&x, 400, 5);
    let first = run_ingest(&x, &store, &keys()).expect("v1");
    let mut current = first.version.manifest.clone();

    for point in [
        FailPoint::MidTables,
        FailPoint::BeforeRename,
        FailPoint::BeforeCurrent,
    ] {
        let mut opts = IngestOptions::new(&x, &store);
        opts.fail_point = Some(point);
        let err = ingest(&opts, &keys()).expect_err("injected failure");
        assert!(err.to_string().contains("injected failure"), "{err}");
        // The engine still opens version 1, unchanged and fully verified.
        let v = Store::new(&store)
            .open_current()
            .expect("previous version opens");
        assert_eq!(v.manifest, current, "{point:?}");
        let ctx = open_session(&v, &SessionOptions::default())
            .await
            .expect("session");
        let n = ctx
            .sql("SELECT COUNT(*) FROM clinical_events")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        assert_eq!(n[0].num_rows(), 1);
        match point {
            FailPoint::BeforeCurrent => {
                let orphan = version_name(current.version + 1);
                assert!(store.join("versions").join(orphan).exists());
            }
            _ => assert_eq!(
                staging_dirs(&store),
                1,
                "{point:?} leaves a staging directory"
            ),
        }
        // The next clean run removes the leftovers before doing anything else.
        let report = run_ingest(&x, &store, &keys()).expect("rerun publishes");
        let expected = match point {
            FailPoint::BeforeCurrent => (0, 1),
            _ => (1, 0),
        };
        assert_eq!(
            (
                report.cleanup.staging_removed,
                report.cleanup.orphans_removed
            ),
            expected,
            "{point:?}"
        );
        assert_eq!(staging_dirs(&store), 0);
        let v = Store::new(&store)
            .open_current()
            .expect("new version opens");
        assert_eq!(v.manifest.version, current.version + 1);
        // Same extracts and key: the same tables, byte for byte.
        assert_eq!(v.manifest.tables, current.tables);
        current = v.manifest;
    }
}

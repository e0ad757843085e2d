//! Ingest: raw extracts (with NHS numbers) → a new, complete, verified store version.
//!
//! Steps, on all cores: one worker reads the reference extracts (practices, postcode → LSOA),
//! the Type 1 objections and the GP registrations while the others already read and validate
//! the large extracts, which wait for the registrations only to resolve their people. Every
//! record is validated; bad records go to the rejects report (extract, line, column, reason —
//! never a value). GP rows of objectors are dropped, hospital rows kept. NHS numbers become
//! keyed `patient_id`s, dates of birth become birth months, postcodes become LSOA and IMD
//! decile, and every personal row gets its person's secret record key. If any extract's reject
//! rate exceeds the limit, nothing is published. Otherwise each table is sorted (a radix sort
//! of packed rows) and streamed as Parquet into a staging directory as soon as it is complete,
//! and the version is published atomically (see [`crate::store`]).
//!
//! Each run is a full snapshot: a later extract that records a new objection produces a version
//! without that person's GP rows.

pub mod source;
pub mod tables;
pub mod validate;
pub mod writer;

use std::collections::HashMap;

use foldhash::{HashMap as FastMap, HashSet as FastSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::keys::{Keys, Pseudonymiser};
use crate::store::{
    self, ExtractCounts, FailPoint, Manifest, SourceEntry, Store, StoreVersion, TableEntry,
};
use crate::{Error, Result, catalog};
pub use catalog::raw_columns as columns_of;
use source::Extract;
use tables::{Context, Processed};

/// Default limit on the share of rejected records in any one extract.
pub const DEFAULT_MAX_REJECT_RATE: f64 = 0.01;

/// Default number of published versions kept (the current one and one to roll back to).
pub const DEFAULT_KEEP_VERSIONS: usize = 2;

/// Name of the rejects report written beside the store's versions after every run.
pub const LAST_REJECTS: &str = "last-ingest-rejects.csv";

/// Options of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Directory holding the raw extracts (`gp_patients.csv` …).
    pub extracts: PathBuf,
    /// The store to publish into (created if absent).
    pub store: PathBuf,
    /// Largest acceptable share of rejected records per extract (0.0–1.0).
    pub max_reject_rate: f64,
    /// Published versions to keep after this one is published (at least 1).
    pub keep_versions: usize,
    /// Show progress bars on a terminal.
    pub progress: bool,
    /// The clock: when this run happens (recorded in the manifest).
    pub now: SystemTime,
    /// Injected failure, for crash-safety tests.
    pub fail_point: Option<FailPoint>,
}

impl IngestOptions {
    /// Options with defaults for the given directories.
    pub fn new(extracts: impl Into<PathBuf>, store: impl Into<PathBuf>) -> IngestOptions {
        IngestOptions {
            extracts: extracts.into(),
            store: store.into(),
            max_reject_rate: DEFAULT_MAX_REJECT_RATE,
            keep_versions: DEFAULT_KEEP_VERSIONS,
            progress: false,
            now: SystemTime::now(),
            fail_point: None,
        }
    }
}

/// What a successful run did.
#[derive(Debug)]
pub struct IngestReport {
    /// The published version.
    pub version: StoreVersion,
    /// Counts per extract.
    pub counts: Vec<ExtractCounts>,
    /// Where the rejects report is.
    pub rejects_report: PathBuf,
    /// What clean-up removed before publishing.
    pub cleanup: store::Cleanup,
    /// Wall time.
    pub elapsed: Duration,
}

impl IngestReport {
    /// A human-readable summary table.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "published {} in {:.1}s\n{:<20} {:>12} {:>12} {:>10} {:>12}\n",
            store::version_name(self.version.manifest.version),
            self.elapsed.as_secs_f64(),
            "extract",
            "read",
            "accepted",
            "rejected",
            "objection"
        );
        for c in &self.counts {
            s.push_str(&format!(
                "{:<20} {:>12} {:>12} {:>10} {:>12}\n",
                c.extract, c.read, c.accepted, c.rejected, c.removed_by_objection
            ));
        }
        s.push_str("table                        rows\n");
        for t in &self.version.manifest.tables {
            s.push_str(&format!("{:<22} {:>12}\n", t.name, t.rows));
        }
        s.push_str(&format!(
            "rejects report: {}\n",
            self.rejects_report.display()
        ));
        s
    }
}

/// Runs ingest. On any error nothing is published and the previous version stays current.
pub fn ingest(opts: &IngestOptions, keys: &Keys) -> Result<IngestReport> {
    let started = Instant::now();
    if !(0.0..=1.0).contains(&opts.max_reject_rate) {
        return Err(Error::InvalidOption(format!(
            "max reject rate must be between 0 and 1, got {}",
            opts.max_reject_rate
        )));
    }
    if !opts.extracts.is_dir() {
        return Err(Error::Missing(format!(
            "{}: extracts directory not found",
            opts.extracts.display()
        )));
    }
    let store = Store::new(&opts.store);
    let lock = store.lock()?;
    refuse_keys_inside_store(keys, &opts.store)?;
    let cleanup = store.cleanup(&lock, usize::MAX)?;
    if cleanup != store::Cleanup::default() {
        tracing::info!(
            staging = cleanup.staging_removed,
            orphans = cleanup.orphans_removed,
            "removed leftovers of an interrupted run"
        );
    }

    let bars = Bars::new(opts.progress);
    let path = |name: &str| opts.extracts.join(name);

    // Open every extract first so that a missing file or bad header fails before any work.
    let mut open = HashMap::new();
    for name in EXTRACTS {
        open.insert(
            *name,
            Extract::open(&path(name), catalog::raw_columns(name))?,
        );
    }
    let mut take = |name: &str| open.remove(name).expect("opened above");

    let staging = store.begin(&lock)?;

    // Three kinds of job share the workers: the reference job (practices, postcodes,
    // objections, then the registrations: the people every other extract is checked
    // against), one job per large extract, costliest first, and last the person keys. A large
    // extract is read and validated while the reference job runs; only resolving its people
    // waits for the registrations (`Await`). Each job writes its tables into staging as soon
    // as they are complete. The person keys need every extract's people, so their job waits
    // until each extract is read, not written: it runs beside the last extracts' writing
    // instead of alone at the end.
    let mut jobs: Vec<Mutex<Option<Job>>> = vec![Mutex::new(Some(Job::Reference(
        REFERENCE.iter().map(|n| take(n)).collect(),
    )))];
    jobs.extend(
        PARALLEL
            .iter()
            .map(|n| Mutex::new(Some(Job::Extract(n, Box::new(take(n)))))),
    );
    jobs.push(Mutex::new(Some(Job::PersonKeys)));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    let person_keys: Mutex<Option<TableEntry>> = Mutex::new(None);
    let people = People::new(PARALLEL.len());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    // Records the first error and wakes the person-keys job, which then stops.
    let fail = |e: Error| {
        lock_ok(&first_error).get_or_insert(e);
        people.fail();
    };
    // Set once by the reference job: the context, or `None` when it failed (its error is then
    // in `first_error`).
    let shared: OnceLock<Option<Context>> = OnceLock::new();
    let pseudo = keys.pseudonymiser();
    let wait = || -> Result<&Context> { shared.wait().as_ref().ok_or_else(stopped) };
    std::thread::scope(|s| {
        for _ in 0..workers.min(jobs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let Some(job) = lock_ok(job).take() else {
                        break;
                    };
                    let outcome = match job {
                        Job::Reference(extracts) => {
                            // Waiters never block forever: on error (or a panic) they get `None`.
                            let mut unblock = Unblock(&shared, None);
                            let out = reference_job(extracts, &pseudo, &bars);
                            match out {
                                Ok((ctx, done)) => {
                                    unblock.set(ctx);
                                    drop(unblock);
                                    let mut written = Vec::new();
                                    done.into_iter()
                                        .try_for_each(|(mut p, src)| {
                                            let e = write_tables(&staging, &mut p, None)?;
                                            written.push((i, p, e, src));
                                            Ok(())
                                        })
                                        .map(|()| written)
                                }
                                Err(e) => {
                                    fail(e);
                                    break;
                                }
                            }
                        }
                        Job::Extract(name, mut ex) => {
                            // Marks the people job failed if this one ends without its people.
                            let arrival = people.arrival();
                            if lock_ok(&first_error).is_some() {
                                break;
                            }
                            let bar = bars.bar(&ex);
                            run_parallel_job(name, &wait, &pseudo, &mut ex, bar).and_then(
                                |mut p| {
                                    arrival.arrive(std::mem::take(&mut p.others));
                                    let src = source_entry(*ex)?;
                                    let e = write_tables(&staging, &mut p, opts.fail_point)?;
                                    Ok(vec![(i, p, e, src)])
                                },
                            )
                        }
                        Job::PersonKeys => people
                            .wait()
                            .and_then(|others| {
                                let table = person_keys_table(wait()?, &others)?;
                                drop(others);
                                let file =
                                    writer::write_table(&staging, &catalog::PERSON_KEYS, table)?;
                                *lock_ok(&person_keys) =
                                    Some(TableEntry::new(&catalog::PERSON_KEYS, vec![file]));
                                Ok(())
                            })
                            .map(|()| Vec::new()),
                    };
                    match outcome {
                        Ok(done) => lock_ok(&results).extend(done),
                        Err(e) => {
                            fail(e);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // Written only after the reference extracts and every other extract were read.
    let Some(person_keys) = person_keys.into_inner().unwrap_or_else(|p| p.into_inner()) else {
        return Err(Error::InvalidOption(
            "the person keys were not written".into(),
        ));
    };
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, ..)| *i);

    let mut entries: Vec<TableEntry> = vec![person_keys];
    let mut processed: Vec<Processed> = Vec::new();
    let mut sources: Vec<SourceEntry> = Vec::new();
    for (_, p, e, src) in results {
        entries.extend(e);
        processed.push(p);
        sources.push(src);
    }
    bars.finish();

    // Rejects: report always (in extract order); publish only within the limit.
    processed.sort_by_key(|p| EXTRACTS.iter().position(|n| *n == p.counts.extract));
    let report_text = rejects_csv(&processed);
    let last_report = opts.store.join(LAST_REJECTS);
    write_atomic(&last_report, report_text.as_bytes())?;
    let over: Vec<String> = processed
        .iter()
        .filter(|p| p.counts.read > 0)
        .filter(|p| p.counts.rejected as f64 / p.counts.read as f64 > opts.max_reject_rate)
        .map(|p| {
            format!(
                "{}: {} of {} records rejected ({:.2}%)",
                p.counts.extract,
                p.counts.rejected,
                p.counts.read,
                100.0 * p.counts.rejected as f64 / p.counts.read as f64
            )
        })
        .collect();
    if !over.is_empty() {
        return Err(Error::RejectLimit(format!(
            "reject rate above the limit of {:.2}%, nothing published: {}; see {}",
            100.0 * opts.max_reject_rate,
            over.join("; "),
            last_report.display()
        )));
    }
    staging.write_file("rejects.csv", report_text.as_bytes())?;

    sources.sort_by_key(|s| EXTRACTS.iter().position(|n| *n == s.name));
    // Manifest tables in catalogue order.
    entries.sort_by_key(|e| catalog::TABLES.iter().position(|t| t.name == e.name));
    let counts: Vec<ExtractCounts> = EXTRACTS
        .iter()
        .filter_map(|n| processed.iter().find(|p| p.counts.extract == *n))
        .map(|p| p.counts.clone())
        .collect();
    let manifest = Manifest {
        format: store::MANIFEST_FORMAT,
        version: staging.version(),
        created_at: crate::dates::rfc3339(opts.now),
        generator: format!("fivesafes {}", env!("CARGO_PKG_VERSION")),
        pseudonym_key_fingerprint: keys.pseudonym_fingerprint(),
        record_key_fingerprint: keys.record_fingerprint(),
        sources,
        ingest: counts.clone(),
        tables: entries,
    };
    let version = staging.publish(&manifest, opts.fail_point)?;
    let cleanup_after = store.cleanup(&lock, opts.keep_versions)?;
    tracing::info!(
        version = manifest.version,
        old_removed = cleanup_after.old_removed,
        "published store version"
    );
    Ok(IngestReport {
        version,
        counts,
        rejects_report: last_report,
        cleanup,
        elapsed: started.elapsed(),
    })
}

/// Every person's record key, for output control: registered people (objectors included,
/// their hospital rows are kept) and `others`, people seen only in hospital data.
fn person_keys_table(ctx: &Context, others: &FastMap<u64, tables::Person>) -> Result<writer::Rows> {
    let mut keys_rows: Vec<(i64, u8)> = ctx
        .gp_people
        .values()
        .chain(others.values())
        .map(|p| (p.id, p.key))
        .collect();
    keys_rows.sort_unstable();
    if keys_rows.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(Error::InvalidOption(
            "two NHS numbers map to the same patient_id under this key; generate a new \
             pseudonymisation key"
                .into(),
        ));
    }
    let mut rows = writer::Rows::new(&catalog::PERSON_KEYS);
    rows.reserve(keys_rows.len());
    for (id, key) in keys_rows {
        rows.i64(0, id);
        rows.u8(1, key);
        rows.end_row()?;
    }
    Ok(rows)
}

/// The people of hospital records not registered with a GP, gathered from the extract jobs
/// as each finishes reading, for the person-keys job.
struct People {
    state: Mutex<PeopleState>,
    changed: Condvar,
}

struct PeopleState {
    /// Extract jobs not yet read.
    pending: usize,
    /// Their people so far, by NHS number.
    others: FastMap<u64, tables::Person>,
    /// An extract job failed (or ingest stopped): the people will never be complete.
    failed: bool,
}

impl People {
    fn new(pending: usize) -> People {
        People {
            state: Mutex::new(PeopleState {
                pending,
                others: FastMap::default(),
                failed: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Stops the wait of the person-keys job.
    fn fail(&self) {
        lock_ok(&self.state).failed = true;
        self.changed.notify_all();
    }

    /// A token for one extract job: [`Arrival::arrive`] hands over its people; dropped
    /// without arriving (an error, a panic), it stops the person-keys job.
    fn arrival(&self) -> Arrival<'_> {
        Arrival(self, false)
    }

    /// Waits until every extract job has handed over its people, and returns them; an error
    /// when ingest stopped first.
    fn wait(&self) -> Result<FastMap<u64, tables::Person>> {
        let mut state = lock_ok(&self.state);
        while state.pending > 0 && !state.failed {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.failed {
            return Err(stopped());
        }
        Ok(std::mem::take(&mut state.others))
    }
}

/// The error of a job that cannot go on because another one failed (whose error is the one
/// reported).
fn stopped() -> Error {
    Error::InvalidOption("ingest stopped: another extract failed".into())
}

/// One extract job's promise to hand over its people (see [`People::arrival`]).
struct Arrival<'a>(&'a People, bool);

impl Arrival<'_> {
    fn arrive(mut self, others: FastMap<u64, tables::Person>) {
        let mut state = lock_ok(&self.0.state);
        state.others.extend(others);
        state.pending -= 1;
        drop(state);
        self.0.changed.notify_all();
        self.1 = true;
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fail();
        }
    }
}

/// Every raw extract, in processing order.
pub const EXTRACTS: &[&str] = &[
    "practices.csv",
    "postcode_lsoa.csv",
    "gp_objections.csv",
    "gp_patients.csv",
    "gp_events.csv",
    "gp_medications.csv",
    "hes_op.csv",
    "hes_ae.csv",
    "hes_apc.csv",
    "ndoo.csv",
];

/// Extracts of the reference job, read in this order: each needs the ones before it.
const REFERENCE: &[&str] = &[
    "practices.csv",
    "postcode_lsoa.csv",
    "gp_objections.csv",
    "gp_patients.csv",
];

/// Extracts processed in parallel with the reference job, costliest first so that no worker
/// is left with a long job at the end while the others idle (each waits for the
/// registrations only to resolve its people). Cost is read, sort and write time, not file
/// size: at 1M patients, gp_events 9.4 s of CPU, gp_medications 8.2 s, hes_op 5.9 s,
/// hes_apc 4.1 s (wide rows: two keyed record ids and eleven codes each), hes_ae 1.6 s,
/// ndoo 0.8 s. `hes_apc` also needs the postcodes from the reference job before it starts.
const PARALLEL: &[&str] = &[
    "gp_events.csv",
    "gp_medications.csv",
    "hes_op.csv",
    "hes_apc.csv",
    "hes_ae.csv",
    "ndoo.csv",
];

/// One unit of work of the ingest workers.
enum Job {
    /// The reference extracts and registrations ([`REFERENCE`], opened, in order).
    Reference(Vec<Extract>),
    /// One large extract.
    Extract(&'static str, Box<Extract>),
    /// The `person_keys` table, once every extract is read.
    PersonKeys,
}

/// A finished extract: job index, what it produced, its written tables and its source entry.
type Done = (usize, Processed, Vec<TableEntry>, SourceEntry);

/// Sets the shared context when dropped: to the context if one was given, else to `None`, so
/// that workers waiting for it stop instead of blocking forever.
struct Unblock<'a>(&'a OnceLock<Option<Context>>, Option<Context>);

impl Unblock<'_> {
    fn set(&mut self, ctx: Context) {
        self.1 = Some(ctx);
    }
}

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        let _ = self.0.set(self.1.take());
    }
}

/// Reads the reference extracts and the registrations; returns the context every other
/// extract is checked against, and each extract's results (tables not yet written).
fn reference_job(
    extracts: Vec<Extract>,
    pseudo: &Pseudonymiser,
    bars: &Bars,
) -> Result<(Context, Vec<(Processed, SourceEntry)>)> {
    let started = Instant::now();
    let mut done = Vec::new();
    let mut it = extracts.into_iter();
    let mut next = || it.next().expect("every reference extract opened");
    let mut ex = next();
    let bar = bars.bar(&ex);
    let (p, practices) = tables::practices(&mut ex, bar)?;
    done.push((p, source_entry(ex)?));
    let mut ex = next();
    let bar = bars.bar(&ex);
    let (p, (postcodes, lsoas)) = tables::postcodes(&mut ex, bar)?;
    done.push((p, source_entry(ex)?));
    let mut ex = next();
    let bar = bars.bar(&ex);
    let (p, objectors) = tables::objections(&mut ex, bar)?;
    done.push((p, source_entry(ex)?));
    let mut ctx = Context {
        pseudo: pseudo.clone(),
        practices,
        postcodes,
        lsoas,
        objectors,
        gp_people: FastMap::default(),
        ids: FastSet::default(),
    };
    let mut ex = next();
    let bar = bars.bar(&ex);
    let p = tables::patients(&mut ctx, &mut ex, bar)?;
    done.push((p, source_entry(ex)?));
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "reference extracts, objections and registrations read"
    );
    Ok((ctx, done))
}

fn run_parallel_job(
    name: &str,
    ctx: tables::Await<'_>,
    pseudo: &Pseudonymiser,
    ex: &mut Extract,
    bar: impl FnMut(u64),
) -> Result<Processed> {
    let started = Instant::now();
    let out = match name {
        "gp_events.csv" => tables::events(ctx, ex, bar),
        "gp_medications.csv" => tables::medications(ctx, ex, bar),
        "hes_apc.csv" => tables::hes_apc(ctx, ex, bar),
        "hes_op.csv" => tables::hes_op(ctx, pseudo, ex, bar),
        "hes_ae.csv" => tables::hes_ae(ctx, pseudo, ex, bar),
        "ndoo.csv" => tables::ndoo(ctx, ex, bar),
        other => Err(Error::InvalidOption(format!("no parallel job for {other}"))),
    }?;
    tracing::info!(
        extract = name,
        rows = out.counts.read,
        read_ms = started.elapsed().as_millis() as u64,
        "extract read"
    );
    Ok(out)
}

fn write_tables(
    staging: &store::Staging,
    p: &mut Processed,
    fail: Option<FailPoint>,
) -> Result<Vec<TableEntry>> {
    let mut out = Vec::new();
    for (def, rows) in p.tables.drain(..) {
        let file = writer::write_table(staging, def, rows)?;
        if fail == Some(FailPoint::MidTables) {
            return Err(store::injected(FailPoint::MidTables));
        }
        out.push(TableEntry::new(def, vec![file]));
    }
    Ok(out)
}

/// Keys never live inside the store: a copy of the store (backup, transfer) must never carry
/// the secrets that link it back to NHS numbers.
fn refuse_keys_inside_store(keys: &Keys, store: &Path) -> Result<()> {
    if keys.dir.as_os_str().is_empty() {
        return Ok(());
    }
    let canon = |p: &Path| std::fs::canonicalize(p).map_err(|e| Error::io(p, e));
    if canon(&keys.dir)?.starts_with(canon(store)?) {
        return Err(Error::InvalidOption(format!(
            "the keys directory {} is inside the store {}; keys must live outside the store",
            keys.dir.display(),
            store.display()
        )));
    }
    Ok(())
}

fn source_entry(ex: Extract) -> Result<SourceEntry> {
    let name = ex
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (bytes, blake3) = ex.finish()?;
    Ok(SourceEntry {
        name,
        bytes,
        blake3: Some(blake3),
        sha256: None,
    })
}

fn rejects_csv(processed: &[Processed]) -> String {
    let mut s = String::from("extract,line,column,reason\n");
    for p in processed {
        for (line, col, reason) in &p.rejects.details {
            s.push_str(&format!("{},{line},{col},{reason}\n", p.counts.extract));
        }
        let shown = p.rejects.details.len() as u64;
        if p.rejects.count > shown {
            s.push_str(&format!(
                "{},,,{} more rejects not listed\n",
                p.counts.extract,
                p.rejects.count - shown
            ));
        }
    }
    s
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn lock_ok<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Progress bars, one per extract, by bytes read; hidden unless asked for and on a terminal.
struct Bars {
    /// The bar group (hidden when progress is off).
    multi: MultiProgress,
}

impl Bars {
    fn new(show: bool) -> Bars {
        let target = if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    fn bar(&self, ex: &Extract) -> impl FnMut(u64) + use<> {
        let bar = self.multi.add(ProgressBar::new(ex.bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:<20} [{bar:30}] {bytes:>10}/{total_bytes:<10} {elapsed:>4} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        let name = ex
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        bar.set_message(name);
        move |pos| {
            bar.set_position(pos);
            if pos >= bar.length().unwrap_or(0) {
                bar.finish();
            }
        }
    }

    fn finish(&self) {
        let _ = self.multi.clear();
    }
}

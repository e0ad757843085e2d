//! The secure store: versioned Parquet datasets, each with a manifest, published atomically.
//!
//! Layout of a store directory:
//!
//! ```text
//! STORE/
//!   CURRENT                 "v000003 <sha256 of its manifest.json>" — the published version
//!   versions/v000003/
//!     manifest.json         schemas, row counts, per-file SHA-256, privacy metadata
//!     rejects.csv           ingest rejects: table, line, column, reason (never a value)
//!     tables/<table>/part-00000.parquet
//!   .staging-v000004-<pid>/ a version being written (invisible; removed by the next run)
//!   .lock                   held by the one process that may publish
//! ```
//!
//! A version becomes visible only when `CURRENT` is atomically replaced (write, fsync, rename,
//! fsync of the directory) after everything it names is durable. A crash at any point leaves
//! the previous `CURRENT` and its version intact; the next publisher removes leftovers. Readers
//! check the manifest's hash and every file's SHA-256 before using a version.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{TableClass, TableDef};
use crate::{Error, Result};

/// Name of the pointer file.
pub const CURRENT: &str = "CURRENT";
/// Manifest format version written by this build: 2 records each source extract's BLAKE3
/// hash, where format 1 recorded its SHA-256 (table files have a SHA-256 in both).
pub const MANIFEST_FORMAT: u32 = 2;

/// Manifest formats this build reads.
pub const READABLE_FORMATS: std::ops::RangeInclusive<u32> = 1..=MANIFEST_FORMAT;

/// A file of a table, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the version directory.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// A column as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnEntry {
    /// Column name.
    pub name: String,
    /// Arrow data type, as Arrow displays it (`Int64`, `Date32`, `Utf8` …).
    pub data_type: String,
    /// Whether nulls may occur.
    pub nullable: bool,
}

/// A table of a version, with its privacy metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    /// Table name.
    pub name: String,
    /// Personal, public or governance.
    pub class: TableClass,
    /// The privacy unit column of a personal table.
    pub privacy_unit: Option<String>,
    /// Identifying (record-level id) columns.
    pub identifying_columns: Vec<String>,
    /// Secret columns, never visible to analysts.
    pub secret_columns: Vec<String>,
    /// Columns in stored order.
    pub columns: Vec<ColumnEntry>,
    /// Sort order of the rows.
    pub sorted_by: Vec<String>,
    /// Total rows.
    pub rows: u64,
    /// The table's files.
    pub files: Vec<FileEntry>,
}

impl TableEntry {
    /// A manifest entry for a catalogue table with the given files.
    pub fn new(def: &TableDef, files: Vec<FileEntry>) -> TableEntry {
        TableEntry {
            name: def.name.into(),
            class: def.class,
            privacy_unit: def.privacy_unit().map(Into::into),
            identifying_columns: def.identifying.iter().map(|s| s.to_string()).collect(),
            secret_columns: def.secret.iter().map(|s| s.to_string()).collect(),
            columns: def
                .columns
                .iter()
                .map(|c| ColumnEntry {
                    name: c.name.into(),
                    data_type: c.data_type.to_string(),
                    nullable: c.nullable,
                })
                .collect(),
            sorted_by: def.sort_by.iter().map(|s| s.to_string()).collect(),
            rows: files.iter().map(|f| f.rows).sum(),
            files,
        }
    }
}

/// A source extract that a version was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// File name in the extracts directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex BLAKE3 hash (manifest format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Lower-case hex SHA-256 (manifest format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Ingest counts for one extract.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractCounts {
    /// Extract file name.
    pub extract: String,
    /// Data rows read.
    pub read: u64,
    /// Rows written to the store.
    pub accepted: u64,
    /// Rows rejected by validation.
    pub rejected: u64,
    /// GP rows removed because the person holds a Type 1 objection.
    pub removed_by_objection: u64,
}

/// The manifest of one store version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// Version number (1, 2, …).
    pub version: u64,
    /// When ingest published it (RFC 3339 UTC).
    pub created_at: String,
    /// The program that wrote it.
    pub generator: String,
    /// Fingerprint of the pseudonymisation key: versions with equal fingerprints link.
    pub pseudonym_key_fingerprint: String,
    /// Fingerprint of the record-key secret.
    pub record_key_fingerprint: String,
    /// The extracts it was built from.
    pub sources: Vec<SourceEntry>,
    /// Ingest counts per extract.
    pub ingest: Vec<ExtractCounts>,
    /// The tables.
    pub tables: Vec<TableEntry>,
}

impl Manifest {
    /// Looks a table up by name.
    pub fn table(&self, name: &str) -> Option<&TableEntry> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Formats a version number as its directory name.
pub fn version_name(v: u64) -> String {
    format!("v{v:06}")
}

fn parse_version_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?;
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A store directory.
#[derive(Debug, Clone)]
pub struct Store {
    /// The store's root directory.
    root: PathBuf,
}

/// A published, verified store version.
#[derive(Debug, Clone)]
pub struct StoreVersion {
    /// The version directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl StoreVersion {
    /// Absolute paths of a table's files.
    pub fn table_files(&self, name: &str) -> Option<Vec<PathBuf>> {
        self.manifest
            .table(name)
            .map(|t| t.files.iter().map(|f| self.dir.join(&f.path)).collect())
    }
}

/// The exclusive right to publish into a store, held until dropped (an OS file lock, so a
/// killed holder releases it).
#[derive(Debug)]
pub struct StoreLock {
    /// The locked `.lock` file; the lock lives as long as this handle.
    _file: File,
}

/// What a clean-up removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// Half-written staging directories removed.
    pub staging_removed: usize,
    /// Complete but never-published versions removed (a crash between rename and `CURRENT`).
    pub orphans_removed: usize,
    /// Old versions removed by retention.
    pub old_removed: usize,
}

/// Injected failures, for tests that show a crash mid-publish leaves the store intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// After some table files are written into staging.
    MidTables,
    /// After the manifest is written, before the version directory is renamed into place.
    BeforeRename,
    /// After the rename, before `CURRENT` is replaced.
    BeforeCurrent,
}

impl Store {
    /// A handle on the store at `root` (nothing is read yet).
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn versions_dir(&self) -> PathBuf {
        self.root.join("versions")
    }

    /// Creates the store directories if needed and takes the publish lock.
    pub fn lock(&self) -> Result<StoreLock> {
        if !self.root.exists() {
            // A new store is private to its owner: it holds pseudonymised personal data.
            fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::io(&self.root, e))?;
            }
        }
        fs::create_dir_all(self.versions_dir()).map_err(|e| Error::io(&self.root, e))?;
        let path = self.root.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(StoreLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::store(
                &self.root,
                "another ingest is publishing into this store; wait for it to finish",
            )),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Reads `CURRENT`: the published version number and its manifest hash, if any.
    fn read_current(&self) -> Result<Option<(u64, String)>> {
        let path = self.root.join(CURRENT);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut parts = text.split_whitespace();
        let parsed = match (parts.next(), parts.next(), parts.next()) {
            (Some(v), Some(h), None) => parse_version_name(v).map(|v| (v, h.to_string())),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| Error::store(&path, "is malformed; expected \"vNNNNNN <sha256>\""))
    }

    /// The number of the published version, if any, without verifying it.
    pub fn current_version_number(&self) -> Result<Option<u64>> {
        Ok(self.read_current()?.map(|(v, _)| v))
    }

    /// Opens the published version, verifying the manifest hash and every file's size and
    /// SHA-256. Fails with a message naming the first problem found.
    pub fn open_current(&self) -> Result<StoreVersion> {
        let (v, manifest_hash) = self.read_current()?.ok_or_else(|| {
            Error::store(
                &self.root,
                "has no published version (run `fivesafes ingest` first)",
            )
        })?;
        let dir = self.versions_dir().join(version_name(v));
        let manifest_path = dir.join("manifest.json");
        let bytes = fs::read(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
        if hex::encode(Sha256::digest(&bytes)) != manifest_hash {
            return Err(Error::store(
                &manifest_path,
                "does not match the hash recorded in CURRENT: the store was modified after \
                 publication; restore it from backup or re-run ingest",
            ));
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::store(&manifest_path, format!("unreadable manifest: {e}")))?;
        if !READABLE_FORMATS.contains(&manifest.format) || manifest.version != v {
            return Err(Error::store(
                &manifest_path,
                format!(
                    "manifest format {} version {} does not match (expected format {}–{}, version {v})",
                    manifest.format,
                    manifest.version,
                    READABLE_FORMATS.start(),
                    READABLE_FORMATS.end()
                ),
            ));
        }
        let files: Vec<&FileEntry> = manifest.tables.iter().flat_map(|t| &t.files).collect();
        files
            .par_iter()
            .map(|f| verify_file(&dir, f))
            .collect::<Result<Vec<()>>>()?;
        Ok(StoreVersion { dir, manifest })
    }

    fn list_versions(&self) -> Result<Vec<u64>> {
        let dir = self.versions_dir();
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            if let Some(v) = entry.file_name().to_str().and_then(parse_version_name) {
                out.push(v);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Removes what a crashed publisher left behind (staging directories, versions that were
    /// never made current) and versions older than the newest `keep` published ones.
    pub fn cleanup(&self, _lock: &StoreLock, keep: usize) -> Result<Cleanup> {
        let mut report = Cleanup::default();
        let entries = fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            if entry.file_name().to_string_lossy().starts_with(".staging-") {
                remove_dir(&entry.path())?;
                report.staging_removed += 1;
            }
        }
        let current = self.current_version_number()?.unwrap_or(0);
        let (published, orphans): (Vec<u64>, Vec<u64>) = self
            .list_versions()?
            .into_iter()
            .partition(|&v| v <= current);
        for v in orphans {
            remove_dir(&self.versions_dir().join(version_name(v)))?;
            report.orphans_removed += 1;
        }
        let keep = keep.max(1);
        if published.len() > keep {
            for &v in &published[..published.len() - keep] {
                if v != current {
                    remove_dir(&self.versions_dir().join(version_name(v)))?;
                    report.old_removed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Starts a new version in a private staging directory.
    pub fn begin(&self, _lock: &StoreLock) -> Result<Staging> {
        let next = self
            .list_versions()?
            .into_iter()
            .chain(self.current_version_number()?)
            .max()
            .unwrap_or(0)
            + 1;
        let dir = self.root.join(format!(
            ".staging-{}-{}",
            version_name(next),
            std::process::id()
        ));
        fs::create_dir_all(dir.join("tables")).map_err(|e| Error::io(&dir, e))?;
        Ok(Staging {
            store: self.clone(),
            dir,
            version: next,
        })
    }
}

/// A version being written. Dropping it without [`Staging::publish`] leaves a staging
/// directory that the next run removes; nothing is ever visible to readers.
#[derive(Debug)]
pub struct Staging {
    /// The store it belongs to.
    store: Store,
    /// The staging directory.
    dir: PathBuf,
    /// The version number it will be published as.
    version: u64,
}

impl Staging {
    /// The version number this will become.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The staging directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a file for a table part and returns a writer that hashes what it writes.
    pub fn create_table_file(&self, table: &str, part: usize) -> Result<(String, HashingWriter)> {
        let rel = format!("tables/{table}/part-{part:05}.parquet");
        let path = self.dir.join(&rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok((rel, HashingWriter::new(path, file)))
    }

    /// Writes an auxiliary file (such as the rejects report) into the version.
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(rel);
        let mut f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&path, e))?;
        f.sync_all().map_err(|e| Error::io(&path, e))
    }

    /// Writes the manifest, makes everything durable, moves the version into place and
    /// atomically points `CURRENT` at it.
    pub fn publish(self, manifest: &Manifest, fail: Option<FailPoint>) -> Result<StoreVersion> {
        let bytes = serde_json::to_vec_pretty(manifest)
            .map_err(|e| Error::store(&self.dir, format!("cannot encode manifest: {e}")))?;
        self.write_file("manifest.json", &bytes)?;
        sync_tree(&self.dir)?;
        if fail == Some(FailPoint::BeforeRename) {
            return Err(injected(FailPoint::BeforeRename));
        }
        let versions = self.store.versions_dir();
        let target = versions.join(version_name(self.version));
        fs::rename(&self.dir, &target).map_err(|e| Error::io(&target, e))?;
        sync_dir(&versions)?;
        if fail == Some(FailPoint::BeforeCurrent) {
            return Err(injected(FailPoint::BeforeCurrent));
        }
        let root = &self.store.root;
        let tmp = root.join("CURRENT.tmp");
        let line = format!(
            "{} {}\n",
            version_name(self.version),
            hex::encode(Sha256::digest(&bytes))
        );
        {
            let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            f.write_all(line.as_bytes())
                .map_err(|e| Error::io(&tmp, e))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        fs::rename(&tmp, root.join(CURRENT)).map_err(|e| Error::io(root, e))?;
        sync_dir(root)?;
        Ok(StoreVersion {
            dir: target,
            manifest: manifest.clone(),
        })
    }
}

/// The error an injected failure produces.
pub fn injected(point: FailPoint) -> Error {
    Error::store("(test)", format!("injected failure at {point:?}"))
}

/// A writer that computes the SHA-256 and size of what passes through it.
pub struct HashingWriter {
    /// Path, for error messages and the final fsync.
    path: PathBuf,
    /// The file being written.
    file: io::BufWriter<File>,
    /// Running hash.
    hasher: Sha256,
    /// Bytes written so far.
    bytes: u64,
}

impl HashingWriter {
    fn new(path: PathBuf, file: File) -> Self {
        HashingWriter {
            path,
            file: io::BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Flushes and fsyncs the file; returns (bytes, sha256 hex).
    pub fn finish(self) -> Result<(u64, String)> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// SHA-256 and size of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((n_total, hex::encode(h.finalize())))
}

fn verify_file(dir: &Path, f: &FileEntry) -> Result<()> {
    if f.path.contains("..") || Path::new(&f.path).is_absolute() {
        return Err(Error::store(
            dir,
            format!("manifest names an unsafe path {}", f.path),
        ));
    }
    let path = dir.join(&f.path);
    let (bytes, sha) = sha256_file(&path)
        .map_err(|_| Error::store(&path, "is missing or unreadable: the version is incomplete"))?;
    if bytes != f.bytes || sha != f.sha256 {
        return Err(Error::store(
            &path,
            "does not match its manifest checksum: the store was modified or corrupted after \
             publication; restore it from backup or re-run ingest",
        ));
    }
    Ok(())
}

fn remove_dir(path: &Path) -> Result<()> {
    fs::remove_dir_all(path).map_err(|e| Error::io(path, e))
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Fsyncs every directory under `root` (files are synced when written).
fn sync_tree(root: &Path) -> Result<()> {
    for entry in fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        if entry.file_type().map_err(|e| Error::io(root, e))?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(v: u64, files: Vec<FileEntry>) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            version: v,
            created_at: "2026-01-01T00:00:00Z".into(),
            generator: "test".into(),
            pseudonym_key_fingerprint: "00".into(),
            record_key_fingerprint: "00".into(),
            sources: vec![],
            ingest: vec![],
            tables: vec![TableEntry::new(&crate::catalog::LSOAS, files)],
        }
    }

    fn publish_one(store: &Store, payload: &[u8], fail: Option<FailPoint>) -> Result<StoreVersion> {
        publish_with(store, payload, fail, |_| {})
    }

    /// Publishes one version whose manifest `edit` may change first.
    fn publish_with(
        store: &Store,
        payload: &[u8],
        fail: Option<FailPoint>,
        edit: impl FnOnce(&mut Manifest),
    ) -> Result<StoreVersion> {
        let lock = store.lock()?;
        store.cleanup(&lock, 2)?;
        let staging = store.begin(&lock)?;
        let (rel, mut w) = staging.create_table_file("lsoas", 0)?;
        w.write_all(payload).map_err(|e| Error::io("x", e))?;
        let (bytes, sha256) = w.finish()?;
        let mut m = manifest(
            staging.version(),
            vec![FileEntry {
                path: rel,
                rows: 1,
                bytes,
                sha256,
            }],
        );
        edit(&mut m);
        let v = staging.publish(&m, fail)?;
        store.cleanup(&lock, 2)?;
        Ok(v)
    }

    #[test]
    fn earlier_manifest_formats_open_and_later_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        // Format 1 recorded a source's SHA-256, format 2 its BLAKE3 hash.
        for (format, blake3, sha256) in [(1, None, Some("ab")), (2, Some("cd"), None)] {
            publish_with(&store, b"x", None, |m| {
                m.format = format;
                m.sources = vec![SourceEntry {
                    name: "practices.csv".into(),
                    bytes: 1,
                    blake3: blake3.map(String::from),
                    sha256: sha256.map(String::from),
                }];
            })
            .expect("publish");
            let v = store.open_current().expect("open");
            assert_eq!(v.manifest.format, format);
            assert_eq!(v.manifest.sources[0].sha256.as_deref(), sha256);
            assert_eq!(v.manifest.sources[0].blake3.as_deref(), blake3);
        }
        publish_with(&store, b"x", None, |m| m.format = MANIFEST_FORMAT + 1).expect("publish");
        let err = store
            .open_current()
            .expect_err("a format from a later build");
        assert!(err.to_string().contains("manifest format 3"), "{err}");
    }

    #[test]
    fn publish_open_and_failures_leave_previous_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("s"));
        assert!(store.open_current().is_err());
        publish_one(&store, b"one", None).expect("v1");
        assert_eq!(store.open_current().expect("open").manifest.version, 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.root())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "a new store is private to its owner");
        }
        for point in [FailPoint::BeforeRename, FailPoint::BeforeCurrent] {
            assert!(publish_one(&store, b"two", Some(point)).is_err());
            assert_eq!(store.open_current().expect("open").manifest.version, 1);
        }
        // The next run cleans up and publishes; retention keeps two versions.
        let v = publish_one(&store, b"three", None).expect("publish");
        // Failed attempts never consume a number: their leftovers are removed first.
        assert_eq!(v.manifest.version, 2);
        publish_one(&store, b"four", None).expect("publish");
        publish_one(&store, b"five", None).expect("publish");
        let lock = store.lock().expect("lock");
        assert_eq!(store.list_versions().expect("list"), vec![3, 4]);
        // A second locker is refused while the first holds the lock.
        assert!(store.lock().is_err());
        drop(lock);
    }

    #[test]
    fn tampering_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        let v = publish_one(&store, b"payload", None).expect("v1");
        let file = v.dir.join(&v.manifest.tables[0].files[0].path);
        fs::write(&file, b"pAyload").expect("tamper");
        let err = store.open_current().expect_err("checksum");
        assert!(
            err.to_string()
                .contains("does not match its manifest checksum"),
            "{err}"
        );
        fs::write(&file, b"payload").expect("restore");
        store.open_current().expect("restored");
        let m = v.dir.join("manifest.json");
        let mut text = fs::read_to_string(&m).expect("read");
        text = text.replace("\"rows\": 1", "\"rows\": 2");
        fs::write(&m, text).expect("tamper manifest");
        let err = store.open_current().expect_err("manifest hash");
        assert!(
            err.to_string().contains("hash recorded in CURRENT"),
            "{err}"
        );
    }
}

//! The environment's secrets and the keyed functions built on them.
//!
//! A keys directory holds, each as a hex file readable only by its owner:
//! - `pseudonym.key`: HMAC-SHA256 key that turns NHS numbers (and HES record ids) into
//!   pseudonyms;
//! - `record.key`: HMAC-SHA256 key that derives each person's secret record key (0..=255) for
//!   cell-key perturbation;
//! - `audit.key`: Ed25519 signing key for audit checkpoints, with its public half in
//!   `audit.pub` (the file auditors are given; the only file here that may be shared).
//!
//! Keys never live inside the store. Every loader refuses a secret key file that its group or
//! others can read.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// File name of the pseudonymisation key.
pub const PSEUDONYM_KEY: &str = "pseudonym.key";
/// File name of the record-key secret.
pub const RECORD_KEY: &str = "record.key";
/// File name of the audit signing key.
pub const AUDIT_KEY: &str = "audit.key";
/// File name of the audit public key (shareable).
pub const AUDIT_PUB: &str = "audit.pub";

/// The environment's secrets, loaded and checked.
#[derive(Clone)]
pub struct Keys {
    /// Where the keys were loaded from (for messages).
    pub dir: PathBuf,
    /// Pseudonymisation key.
    pseudonym: [u8; 32],
    /// Record-key secret.
    record: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keys")
            .field("dir", &self.dir)
            .field("pseudonym", &self.pseudonym_fingerprint())
            .field("record", &self.record_fingerprint())
            .finish()
    }
}

/// What `init` created.
#[derive(Debug)]
pub struct InitReport {
    /// Files written, in order.
    pub files: Vec<PathBuf>,
}

/// Creates a new keys directory with fresh random keys. Refuses to overwrite existing keys:
/// losing the pseudonymisation key breaks linkage with every earlier store version.
pub fn init(dir: &Path) -> Result<InitReport> {
    let mut rng = rand::rngs::OsRng;
    let mut fresh = || -> Result<[u8; 32]> {
        let mut k = [0u8; 32];
        rng.try_fill_bytes(&mut k).map_err(|e| {
            Error::InvalidOption(format!("operating-system randomness failed: {e}"))
        })?;
        Ok(k)
    };
    init_with(dir, fresh()?, fresh()?, fresh()?)
}

/// Creates a keys directory from given key bytes (tests use fixed keys for golden vectors).
pub fn init_with(
    dir: &Path,
    pseudonym: [u8; 32],
    record: [u8; 32],
    audit_seed: [u8; 32],
) -> Result<InitReport> {
    for name in [PSEUDONYM_KEY, RECORD_KEY, AUDIT_KEY, AUDIT_PUB] {
        let p = dir.join(name);
        if p.exists() {
            return Err(Error::Key {
                path: p,
                message: "already exists; refusing to overwrite keys (move the directory \
                          away first if you really mean to start a new environment)"
                    .into(),
            });
        }
    }
    create_private_dir(dir)?;
    let signing = ed25519_dalek::SigningKey::from_bytes(&audit_seed);
    let public = signing.verifying_key().to_bytes();
    let mut files = Vec::new();
    for (name, bytes, private) in [
        (PSEUDONYM_KEY, pseudonym, true),
        (RECORD_KEY, record, true),
        (AUDIT_KEY, audit_seed, true),
        (AUDIT_PUB, public, false),
    ] {
        let path = dir.join(name);
        write_key_file(&path, &bytes, private)?;
        files.push(path);
    }
    Ok(InitReport { files })
}

impl Keys {
    /// Loads and checks the keys in `dir`.
    pub fn load(dir: &Path) -> Result<Keys> {
        Ok(Keys {
            dir: dir.to_path_buf(),
            pseudonym: read_secret(&dir.join(PSEUDONYM_KEY))?,
            record: read_secret(&dir.join(RECORD_KEY))?,
        })
    }

    /// Builds keys from bytes (tests).
    pub fn from_bytes(pseudonym: [u8; 32], record: [u8; 32]) -> Keys {
        Keys {
            dir: PathBuf::new(),
            pseudonym,
            record,
        }
    }

    /// A short public fingerprint of the pseudonymisation key, recorded in each manifest so
    /// that a version built with another key is recognisable. Reveals nothing about the key.
    pub fn pseudonym_fingerprint(&self) -> String {
        fingerprint(&self.pseudonym)
    }

    /// A short public fingerprint of the record-key secret.
    pub fn record_fingerprint(&self) -> String {
        fingerprint(&self.record)
    }

    /// The keyed functions of ingest.
    pub fn pseudonymiser(&self) -> Pseudonymiser {
        Pseudonymiser {
            pseudonym: HmacSha256::new_from_slice(&self.pseudonym).expect("HMAC takes any key"),
            record: HmacSha256::new_from_slice(&self.record).expect("HMAC takes any key"),
        }
    }
}

/// Loads the audit signing key from a keys directory (checked like every secret).
pub fn load_audit_signing_key(dir: &Path) -> Result<ed25519_dalek::SigningKey> {
    Ok(ed25519_dalek::SigningKey::from_bytes(&read_secret(
        &dir.join(AUDIT_KEY),
    )?))
}

/// Loads an audit public key file (may be readable by anyone).
pub fn load_audit_public_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey> {
    let bytes = read_hex_key(path)?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| Error::Key {
        path: path.to_path_buf(),
        message: "not a valid Ed25519 public key".into(),
    })
}

/// Keyed pseudonymisation (HMAC-SHA256 with the environment's keys). Cheap to clone: the
/// keyed inner and outer states are precomputed, so each call costs two SHA-256 blocks.
#[derive(Clone)]
pub struct Pseudonymiser {
    /// Keyed with the pseudonymisation key.
    pseudonym: HmacSha256,
    /// Keyed with the record-key secret.
    record: HmacSha256,
}

impl Pseudonymiser {
    /// The `patient_id` of an NHS number (given as its 10-digit value): the first eight bytes
    /// of HMAC-SHA256(key, "fivesafes/patient_id/v1" ‖ 10 ASCII digits), big-endian, with the
    /// top bit cleared so that it is a non-negative Int64.
    pub fn patient_id(&self, nhs_number: u64) -> i64 {
        let mut m = self.pseudonym.clone();
        m.update(b"fivesafes/patient_id/v1\0");
        m.update(&ascii10(nhs_number));
        first_i63(&m.finalize().into_bytes())
    }

    /// The secret record key (0..=255) of a person, from their `patient_id`.
    pub fn record_key(&self, patient_id: i64) -> u8 {
        let mut m = self.record.clone();
        m.update(b"fivesafes/record_key/v1\0");
        m.update(&patient_id.to_be_bytes());
        m.finalize().into_bytes()[0]
    }

    /// A keyed pseudonym of a record-level identifier from a source system (HES `epikey`,
    /// `spell_id`, `attendkey`, `aekey`), so that stored ids cannot be linked back to other
    /// releases of the same source. `domain` separates the id spaces.
    pub fn record_id(&self, domain: &str, raw: i64) -> i64 {
        let mut m = self.pseudonym.clone();
        m.update(b"fivesafes/record_id/v1\0");
        m.update(domain.as_bytes());
        m.update(b"\0");
        m.update(&raw.to_be_bytes());
        first_i63(&m.finalize().into_bytes())
    }
}

fn first_i63(digest: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(b) & (u64::MAX >> 1)) as i64
}

fn ascii10(n: u64) -> [u8; 10] {
    let mut out = [b'0'; 10];
    let mut v = n;
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out
}

fn fingerprint(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"fivesafes/key-fingerprint/v1\0");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

fn create_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

fn write_key_file(path: &Path, bytes: &[u8; 32], private: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).map_err(|e| Error::io(path, e))?;
    writeln!(f, "{}", hex::encode(bytes)).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Reads a secret key file, refusing it when its group or others may read it.
fn read_secret(path: &Path) -> Result<[u8; 32]> {
    let meta = fs::metadata(path).map_err(|e| Error::Key {
        path: path.to_path_buf(),
        message: format!("cannot read ({e}); create keys with `fivesafes keys init --dir DIR`"),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Key {
                path: path.to_path_buf(),
                message: format!(
                    "is readable or writable by group or others (mode {mode:04o}); \
                     a secret key must be private to its owner: run `chmod 600 {}`",
                    path.display()
                ),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    read_hex_key(path)
}

fn read_hex_key(path: &Path) -> Result<[u8; 32]> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bytes = hex::decode(text.trim()).map_err(|_| Error::Key {
        path: path.to_path_buf(),
        message: "is not a hex-encoded key".into(),
    })?;
    bytes.try_into().map_err(|_| Error::Key {
        path: path.to_path_buf(),
        message: "must hold exactly 32 bytes (64 hex digits)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> Keys {
        Keys::from_bytes([1u8; 32], [2u8; 32])
    }

    #[test]
    fn golden_pseudonyms() {
        let p = fixed().pseudonymiser();
        // Golden vectors: changing these changes every patient_id in every store.
        assert_eq!(p.patient_id(9434765919), GOLDEN_PATIENT_ID);
        assert_eq!(p.record_key(GOLDEN_PATIENT_ID), GOLDEN_RECORD_KEY);
        assert_eq!(p.record_id("epikey", 123456789012), GOLDEN_EPIKEY);
        assert_eq!(fixed().pseudonym_fingerprint(), GOLDEN_FINGERPRINT);
    }

    const GOLDEN_PATIENT_ID: i64 = 8_332_688_549_393_140_152;
    const GOLDEN_RECORD_KEY: u8 = 143;
    const GOLDEN_EPIKEY: i64 = 2_236_781_769_991_560_621;
    const GOLDEN_FINGERPRINT: &str = "773b67ca6df4b8e7";

    #[test]
    fn pseudonyms_depend_on_key_and_input() {
        let a = fixed().pseudonymiser();
        let b = Keys::from_bytes([3u8; 32], [2u8; 32]).pseudonymiser();
        assert_ne!(a.patient_id(9434765919), b.patient_id(9434765919));
        assert_ne!(a.patient_id(9434765919), a.patient_id(9434765918));
        assert!(a.patient_id(9434765919) >= 0);
        assert_ne!(a.record_id("epikey", 5), a.record_id("spell_id", 5));
        assert_eq!(&ascii10(123), b"0000000123");
    }

    #[test]
    fn init_then_load_and_refuse_loose_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys_dir = dir.path().join("keys");
        let report = init(&keys_dir).expect("init");
        assert_eq!(report.files.len(), 4);
        let keys = Keys::load(&keys_dir).expect("load");
        assert_eq!(keys.pseudonym_fingerprint().len(), 16);
        // Refuses to overwrite.
        assert!(matches!(init(&keys_dir), Err(Error::Key { .. })));
        // The public key is readable and matches the signing key.
        let signing = load_audit_signing_key(&keys_dir).expect("audit key");
        let public = load_audit_public_key(&keys_dir.join(AUDIT_PUB)).expect("audit pub");
        assert_eq!(signing.verifying_key(), public);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = keys_dir.join(PSEUDONYM_KEY);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
            let err = Keys::load(&keys_dir).expect_err("group-readable key must be refused");
            let msg = err.to_string();
            assert!(
                msg.contains("pseudonym.key") && msg.contains("0640"),
                "{msg}"
            );
        }
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path()).expect("init");
        let p = dir.path().join(RECORD_KEY);
        fs::write(&p, "abcd\n").expect("write");
        let err = Keys::load(dir.path()).expect_err("short key");
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }
}

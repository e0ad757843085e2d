//! Signed checkpoints: the server's Ed25519 signature over the Merkle root of the first
//! `tree_size` records. A checkpoint is what makes removal or editing of records detectable
//! by someone who holds only the public key: the records must reproduce the signed root.
//!
//! Signed bytes (what [`Checkpoint::encode`] returns), 77 bytes:
//!
//! ```text
//! [29] b"fivesafes-audit-checkpoint-v1"   domain separation and version
//! u64  tree_size   (big-endian)
//! [32] root        (RFC 6962 root of records 0..tree_size)
//! i64  unix_ms     (big-endian)
//! ```
//!
//! Stored form (one frame payload of `checkpoints.log`, [`Checkpoint::to_bytes`]): the signed
//! bytes followed by the 64-byte signature.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::json;

use super::merkle::Hash;
use super::record::{DecodeError, iso8601};

/// Domain-separation prefix of the signed bytes; a new layout gets a new prefix.
pub const CHECKPOINT_DOMAIN: &[u8] = b"fivesafes-audit-checkpoint-v1";
/// Length of the signed bytes.
pub const SIGNED_LEN: usize = CHECKPOINT_DOMAIN.len() + 8 + 32 + 8;
/// Length of a stored checkpoint (signed bytes and signature).
pub const STORED_LEN: usize = SIGNED_LEN + 64;

/// A signed statement: "the first `tree_size` records of this log have Merkle root `root`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Number of records covered (sequences `0..tree_size`).
    pub tree_size: u64,
    /// RFC 6962 root of their leaf hashes.
    pub root: Hash,
    /// When it was signed, Unix milliseconds (not before the last record it covers).
    pub unix_ms: i64,
    /// Ed25519 signature over [`Checkpoint::encode`].
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Signs a checkpoint. Ed25519 signing is deterministic, so the same inputs always give the
    /// same signature.
    pub fn sign(tree_size: u64, root: Hash, unix_ms: i64, key: &SigningKey) -> Checkpoint {
        let mut c = Checkpoint {
            tree_size,
            root,
            unix_ms,
            signature: [0; 64],
        };
        c.signature = key.sign(&c.encode()).to_bytes();
        c
    }

    /// The signed bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNED_LEN);
        out.extend_from_slice(CHECKPOINT_DOMAIN);
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.unix_ms.to_be_bytes());
        out
    }

    /// Whether the signature is valid for `key` (strict verification: no malleable
    /// signatures, no small-order keys).
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        key.verify_strict(&self.encode(), &Signature::from_bytes(&self.signature))
            .is_ok()
    }

    /// The stored form: signed bytes, then signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.encode();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses the stored form (does not check the signature).
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, DecodeError> {
        let err = |at, problem: &str| DecodeError {
            at,
            problem: problem.into(),
        };
        if bytes.len() != STORED_LEN {
            return Err(err(
                0,
                &format!("checkpoint is {} bytes, not {STORED_LEN}", bytes.len()),
            ));
        }
        if !bytes.starts_with(CHECKPOINT_DOMAIN) {
            return Err(err(0, "unknown checkpoint domain or version"));
        }
        let mut at = CHECKPOINT_DOMAIN.len();
        let mut take = |n: usize| {
            let s = &bytes[at..at + n];
            at += n;
            s
        };
        let mut u64b = [0u8; 8];
        u64b.copy_from_slice(take(8));
        let tree_size = u64::from_be_bytes(u64b);
        let mut root = [0u8; 32];
        root.copy_from_slice(take(32));
        u64b.copy_from_slice(take(8));
        let unix_ms = i64::from_be_bytes(u64b);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(take(64));
        Ok(Checkpoint {
            tree_size,
            root,
            unix_ms,
            signature,
        })
    }

    /// The checkpoint as JSON (hex hashes, ISO 8601 time).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "tree_size": self.tree_size,
            "root": hex::encode(self.root),
            "unix_ms": self.unix_ms,
            "time": iso8601(self.unix_ms),
            "signature": hex::encode(self.signature),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifies_and_round_trips() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let c = Checkpoint::sign(5, [1; 32], 1_000, &key);
        assert_eq!(c.encode().len(), SIGNED_LEN);
        assert!(c.verify(&key.verifying_key()));
        assert!(!c.verify(&other.verifying_key()));
        assert_eq!(Checkpoint::from_bytes(&c.to_bytes()), Ok(c));
        let mut moved = c;
        moved.tree_size = 6;
        assert!(!moved.verify(&key.verifying_key()));
        assert!(Checkpoint::from_bytes(&c.to_bytes()[1..]).is_err());
    }
}

//! Authentication: API tokens and the request metadata that carries them.
//!
//! A token is 32 random bytes, written `fs_` + URL-safe base64. The configuration holds only
//! its SHA-256; a presented token is hashed and compared in constant time against every
//! principal's hash. Clients send `authorization: Bearer <token>`, or do a Flight SQL
//! `Handshake` with Basic credentials (user = principal, password = token), which answers
//! with the bearer header to use.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use crate::config::PrincipalConfig;

/// Prefix of every token (makes leaked tokens easy to find with secret scanners).
pub const TOKEN_PREFIX: &str = "fs_";

/// Header that selects the project of a call.
pub const PROJECT_HEADER: &str = "x-fivesafes-project";

/// A new random token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Lower-case hex SHA-256 of a token, as stored in the configuration.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The `[[principal]]` entries for principals and their tokens (only hashes are kept).
pub fn principals<'a>(
    tokens: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<PrincipalConfig> {
    tokens
        .into_iter()
        .map(|(name, token)| PrincipalConfig {
            name: name.clone(),
            token_sha256: token_hash(token),
        })
        .collect()
}

/// Why a request is not authenticated (recorded in the audit log; clients get one generic
/// message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials at all.
    Missing,
    /// The header is not `Bearer …` or `Basic …`, or does not decode.
    Malformed,
    /// No principal has this token (or Basic user and token do not match).
    BadToken,
}

impl AuthFailure {
    /// For the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "no credentials",
            AuthFailure::Malformed => "malformed credentials",
            AuthFailure::BadToken => "unknown token",
        }
    }
}

/// The principals the server knows.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// (name, token hash bytes).
    principals: Vec<(String, [u8; 32])>,
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// From the configuration's principals (hashes already checked as hex).
    pub fn new(principals: &[PrincipalConfig]) -> Authenticator {
        Authenticator {
            principals: principals
                .iter()
                .filter_map(|p| {
                    let bytes = hex::decode(&p.token_sha256).ok()?;
                    let hash: [u8; 32] = bytes.try_into().ok()?;
                    Some((p.name.clone(), hash))
                })
                .collect(),
        }
    }

    /// The principal owning `token`, checking every principal (no early exit on a match).
    pub fn principal_of_token(&self, token: &str) -> Option<String> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, h) in &self.principals {
            if ct_eq(h, &hash) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Authenticates a request from its `authorization` header (Bearer, or Basic with the
    /// token as password).
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<String, AuthFailure> {
        let Some(value) = metadata.get("authorization") else {
            return Err(AuthFailure::Missing);
        };
        let value = value.to_str().map_err(|_| AuthFailure::Malformed)?.trim();
        if let Some(token) = strip_prefix_ci(value, "bearer ") {
            return self
                .principal_of_token(token.trim())
                .ok_or(AuthFailure::BadToken);
        }
        if let Some(basic) = strip_prefix_ci(value, "basic ") {
            let decoded = STANDARD
                .decode(basic.trim())
                .map_err(|_| AuthFailure::Malformed)?;
            let text = String::from_utf8(decoded).map_err(|_| AuthFailure::Malformed)?;
            let (user, token) = text.split_once(':').ok_or(AuthFailure::Malformed)?;
            return match self.principal_of_token(token) {
                Some(p) if p == user => Ok(p),
                _ => Err(AuthFailure::BadToken),
            };
        }
        Err(AuthFailure::Malformed)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(token: &str) -> Authenticator {
        Authenticator::new(&[PrincipalConfig {
            name: "ana".into(),
            token_sha256: token_hash(token),
        }])
    }

    fn md(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().expect("ascii"));
        m
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 3 + 43);
    }

    #[test]
    fn token_hash_golden() {
        assert_eq!(
            token_hash("fs_test"),
            "7431dabfbecb65668743847fe03b3a88bda07806b6778fbdfe034dd21d5ab07d"
        );
    }

    #[test]
    fn bearer_and_basic() {
        let t = new_token();
        let a = auth(&t);
        assert_eq!(
            a.authenticate(&md(&format!("Bearer {t}"))),
            Ok("ana".into())
        );
        assert_eq!(
            a.authenticate(&md(&format!("bearer  {t}"))),
            Ok("ana".into())
        );
        let basic = STANDARD.encode(format!("ana:{t}"));
        assert_eq!(
            a.authenticate(&md(&format!("Basic {basic}"))),
            Ok("ana".into())
        );
        let wrong_user = STANDARD.encode(format!("bob:{t}"));
        assert_eq!(
            a.authenticate(&md(&format!("Basic {wrong_user}"))),
            Err(AuthFailure::BadToken)
        );
        assert_eq!(
            a.authenticate(&md("Bearer fs_nope")),
            Err(AuthFailure::BadToken)
        );
        assert_eq!(a.authenticate(&md("Token x")), Err(AuthFailure::Malformed));
        assert_eq!(
            a.authenticate(&MetadataMap::new()),
            Err(AuthFailure::Missing)
        );
    }
}

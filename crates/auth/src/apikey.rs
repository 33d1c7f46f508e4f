//! API keys of partner systems: the 12345 hotline's platform, a city's
//! reporting app or FixMyStreet speaking Open311. A partner is a principal
//! like any other (role `partner`, its organisation and territory); its
//! key stands where a person's token would.
//!
//! A key is `gck_<id>_<secret>`: the id names the entry (so a key is found
//! without trying every entry), the secret is 32 random bytes in base64url.
//! The services keep only each key's SHA-256, one entry per line of the key
//! file:
//!
//! ```text
//! # id  sha256-of-the-whole-key  subject  organisation  territory
//! fms-2026  9f86d0…  partner-fixmystreet  org-fixmystreet  990101
//! ```
//!
//! A plain SHA-256 suffices: the secret has 256 bits of entropy, so there is
//! nothing for a slow hash to protect against guessing. Rotation: add the
//! new key's line (same subject), hand the key over, remove the old line;
//! the services read the file again when it changes.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::principal::{Principal, TokenRole};

/// What every key starts with: a bearer value that starts otherwise is a
/// token.
pub const PREFIX: &str = "gck_";

/// Whether a bearer value is an API key (rather than a JWT).
pub fn is_api_key(bearer: &str) -> bool {
    bearer.starts_with(PREFIX)
}

/// The stored form of a key: hex SHA-256 of the whole key string.
pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A key's id: what lies between the prefix and the next underscore (an
/// id has none; the secret, in base64url, may).
fn id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (valid_id(id) && secret.len() >= 32).then_some(id)
}

/// 1-32 lower-case letters, digits and `-`.
pub fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The key string for an id and 32 random bytes.
pub fn compose(id: &str, secret: &[u8; 32]) -> String {
    use base64::Engine as _;
    format!("{PREFIX}{id}_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the API key is malformed: expected gck_<id>_<secret>")]
    Malformed,
    /// Unknown id and wrong secret read the same to the caller.
    #[error("the API key is not valid")]
    Invalid,
}

/// A line of the key file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ApiKeyFileError {
    pub line: usize,
    pub problem: String,
}

#[derive(Clone)]
struct Entry {
    digest: [u8; 32],
    principal: Principal,
}

/// The configured keys, by id.
#[derive(Clone, Default)]
pub struct ApiKeys {
    by_id: HashMap<String, Entry>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.by_id.keys().collect();
        ids.sort();
        f.debug_struct("ApiKeys").field("ids", &ids).finish()
    }
}

impl ApiKeys {
    /// Read a key file: one entry per line, `#` comments and blank lines
    /// skipped; every problem names its line.
    pub fn parse(text: &str) -> Result<Self, ApiKeyFileError> {
        let mut by_id = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let problem = |problem: String| ApiKeyFileError { line, problem };
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [id, hash, subject, organisation, territory] = fields[..] else {
                return Err(problem(format!(
                    "expected 5 fields (id sha256 subject organisation territory), found {}",
                    fields.len()
                )));
            };
            if !valid_id(id) {
                return Err(problem(format!("id {id:?} must be 1-32 lower-case letters, digits or -")));
            }
            let mut digest = [0u8; 32];
            if hex::decode_to_slice(hash, &mut digest).is_err() {
                return Err(problem("the key's SHA-256 must be 64 hex digits".into()));
            }
            let principal = Principal::new(subject, TokenRole::Partner.as_str(), organisation, territory)
                .map_err(|e| problem(e.to_string().replace("claim ", "")))?;
            if by_id.insert(id.to_owned(), Entry { digest, principal }).is_some() {
                return Err(problem(format!("id {id:?} appears twice")));
            }
        }
        Ok(Self { by_id })
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The partner a key belongs to.
    pub fn verify(&self, key: &str) -> Result<Principal, ApiKeyError> {
        let id = id_of(key).ok_or(ApiKeyError::Malformed)?;
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        match self.by_id.get(id) {
            Some(entry) if bool::from(entry.digest.ct_eq(&presented)) => Ok(entry.principal.clone()),
            _ => Err(ApiKeyError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(keys: &[(&str, &str, &str, &str)]) -> String {
        keys.iter()
            .map(|(key, subject, organisation, territory)| {
                let id = id_of(key).unwrap();
                format!("{id} {} {subject} {organisation} {territory}\n", digest(key))
            })
            .collect()
    }

    #[test]
    fn a_key_verifies_into_its_partner_and_nothing_else_does() {
        let fms = compose("fms-2026", &[7; 32]);
        let hotline = compose("hotline", &[9; 32]);
        let keys = ApiKeys::parse(&format!(
            "# partners\n\n{}",
            file(&[(&fms, "partner-fms", "org-fms", "990101"), (&hotline, "partner-12345", "org-12345", "990101001")])
        ))
        .unwrap();
        assert_eq!(keys.len(), 2);
        let partner = keys.verify(&fms).unwrap();
        assert_eq!((partner.subject.as_str(), partner.role), ("partner-fms", TokenRole::Partner));
        assert_eq!(partner.territory.as_str(), "990101");
        assert_eq!(keys.verify(&hotline).unwrap().territory.as_str(), "990101001");
        // The right id with another secret, an unknown id, a mangled key.
        assert_eq!(keys.verify(&compose("fms-2026", &[8; 32])), Err(ApiKeyError::Invalid));
        assert_eq!(keys.verify(&compose("unknown", &[7; 32])), Err(ApiKeyError::Invalid));
        assert_eq!(keys.verify(&fms[..fms.len() - 1]), Err(ApiKeyError::Invalid));
        assert_eq!(keys.verify("gck_fms-2026"), Err(ApiKeyError::Malformed));
        assert_eq!(keys.verify("eyJhbGciOi.x.y"), Err(ApiKeyError::Malformed));
        assert!(is_api_key(&fms) && !is_api_key("eyJhbGciOi.x.y"));
        // Nothing of the key in its Debug.
        assert!(!format!("{keys:?}").contains(&digest(&fms)));
    }

    #[test]
    fn a_secret_with_underscores_still_names_its_id() {
        // 0xff bytes encode as `_` in base64url.
        let key = compose("demo", &[0xff; 32]);
        assert!(key["gck_demo_".len()..].contains('_'), "{key}");
        let keys = ApiKeys::parse(&file(&[(&key, "partner-demo", "org-demo", "990101")])).unwrap();
        assert_eq!(keys.verify(&key).unwrap().subject, "partner-demo");
    }

    #[test]
    fn a_bad_line_is_named() {
        let good = digest(&compose("a", &[1; 32]));
        let cases = [
            ("a b c\n", 1, "expected 5 fields"),
            (&format!("\nBad {good} p o 990101\n")[..], 2, "id \"Bad\""),
            ("a 00 p o 990101\n", 1, "64 hex digits"),
            (&format!("a {good} p o 99010\n")[..], 1, "6-digit county or 9-digit township"),
            (&format!("a {good} p o 990101\na {good} q o 990101\n")[..], 2, "appears twice"),
        ];
        for (text, line, problem) in cases {
            let error = ApiKeys::parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.problem.contains(problem), "{text:?}: {error}");
        }
    }
}

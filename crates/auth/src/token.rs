//! Bearer tokens: JWTs signed by the identity provider (EdDSA, ES256 or
//! RS256 public keys from configuration) or, in development only, by a
//! shared development secret (HS256, key id `dev`).
//!
//! Verification is pure: the instant to check expiry against is an argument.
//! Signature, algorithm, issuer and audience are checked by `jsonwebtoken`;
//! the times (`exp`, `nbf`, `iat`, with the configured clock skew, and a
//! maximum lifetime so a leaked long-lived token is refused) are checked
//! here, against that instant. Every claim is typed: a claim of the wrong
//! JSON type is a malformed token, never a missing one.

use std::collections::HashMap;

use jiff::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::principal::{Principal, PrincipalError};

/// The key id of the development secret.
pub const DEV_KEY_ID: &str = "dev";
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The shortest development secret accepted.
pub const MIN_DEV_SECRET_BYTES: usize = 32;

/// The signature algorithms a configured key may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlgorithm {
    EdDSA,
    ES256,
    RS256,
}

impl TokenAlgorithm {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
        }
    }
}

/// A token's `aud`: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims a gridcase token carries. Unknown extra claims are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: Audience,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// grid_worker, grid_leader, handling_unit, command_centre, county_auditor or admin.
    pub role: String,
    /// The organisation the caller acts for.
    pub org: String,
    /// A region-code prefix (grid, township, county) or, for a handling unit, its unit id.
    pub territory: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token is unsigned (alg \"none\"): only signed tokens are accepted")]
    Unsigned,
    #[error("the token's algorithm {0:?} is not one this server accepts (EdDSA, ES256, RS256, HS256)")]
    UnsupportedAlgorithm(String),
    #[error("the token has no key id (kid)")]
    MissingKeyId,
    #[error("the token is signed with a key this server does not know ({0})")]
    UnknownKey(String),
    #[error("the token's algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token was issued by someone this server does not trust")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token lives longer than the {max_seconds} s this server accepts")]
    LifetimeTooLong { max_seconds: i64 },
    #[error("the token's identity is malformed: {0}")]
    BadIdentity(#[from] PrincipalError),
}

/// The header fields read before a key is chosen, checked in our own words
/// (a JSON library's error text says nothing useful to a caller).
struct PeekedHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn peek_header(token: &str) -> Result<PeekedHeader, TokenError> {
    use base64::Engine as _;

    #[derive(Deserialize)]
    struct RawHeader {
        alg: Option<serde_json::Value>,
        kid: Option<serde_json::Value>,
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        let unsigned = parts.len() == 2 && parts[0].len() < 512;
        // "header.payload" without a signature is how `alg: none` often comes.
        if !unsigned {
            return Err(TokenError::Malformed(
                "a token is three base64url parts separated by dots (header.payload.signature)".into(),
            ));
        }
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[0].trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("the header is not base64url".into()))?;
    let raw: RawHeader =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("the header is not a JSON object".into()))?;
    let alg = match raw.alg {
        Some(serde_json::Value::String(alg)) => alg,
        Some(_) => return Err(TokenError::Malformed("the header's alg is not a string".into())),
        None => return Err(TokenError::Malformed("the header names no algorithm (alg)".into())),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::Unsigned);
    }
    if parts.len() != 3 {
        return Err(TokenError::Malformed("the token has no signature part".into()));
    }
    let alg = match alg.as_str() {
        "EdDSA" => Algorithm::EdDSA,
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "ES384" => Algorithm::ES384,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        _ => return Err(TokenError::UnsupportedAlgorithm(alg)),
    };
    let kid = match raw.kid {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(kid)) => Some(kid),
        Some(_) => return Err(TokenError::Malformed("the header's kid is not a string".into())),
    };
    Ok(PeekedHeader { alg, kid })
}

/// Who this server trusts and how strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierSettings {
    /// The expected `iss`.
    pub issuer: String,
    /// The expected `aud` (one of the token's audiences).
    pub audience: String,
    /// Tolerated clock difference with the issuer, in seconds.
    pub clock_skew_seconds: i64,
    /// The longest `exp - iat` accepted, in seconds.
    pub max_lifetime_seconds: i64,
}

impl Default for VerifierSettings {
    fn default() -> Self {
        Self {
            issuer: "gridcase".into(),
            audience: "gridcase".into(),
            clock_skew_seconds: 60,
            max_lifetime_seconds: 12 * 3600,
        }
    }
}

struct Key {
    algorithm: Algorithm,
    decoding: DecodingKey,
}

/// The keys a server verifies tokens with, by key id.
pub struct KeySet {
    settings: VerifierSettings,
    keys: HashMap<String, Key>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key id {0:?} is configured twice")]
    Duplicate(String),
    #[error("key id must be 1-64 letters, digits or -_.")]
    BadKeyId,
    #[error("key id {DEV_KEY_ID:?} is reserved for the development secret")]
    ReservedKeyId,
    #[error("not a {algorithm:?} public key in PEM: {reason}")]
    BadPem { algorithm: TokenAlgorithm, reason: String },
    #[error("the development secret must be at least {MIN_DEV_SECRET_BYTES} bytes")]
    ShortSecret,
}

impl KeySet {
    pub fn new(settings: VerifierSettings) -> Self {
        Self { settings, keys: HashMap::new() }
    }

    pub fn settings(&self) -> &VerifierSettings {
        &self.settings
    }

    /// Trust an identity provider's public key.
    pub fn add_public_key(&mut self, kid: &str, algorithm: TokenAlgorithm, pem: &[u8]) -> Result<(), KeyError> {
        let kid_ok = (1..=64).contains(&kid.len())
            && kid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !kid_ok {
            return Err(KeyError::BadKeyId);
        }
        if kid == DEV_KEY_ID {
            return Err(KeyError::ReservedKeyId);
        }
        let decoding = match algorithm {
            TokenAlgorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            TokenAlgorithm::ES256 => DecodingKey::from_ec_pem(pem),
            TokenAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        }
        .map_err(|e| KeyError::BadPem { algorithm, reason: e.to_string() })?;
        self.insert(kid, Key { algorithm: algorithm.jwt(), decoding })
    }

    /// Trust the development secret (key id `dev`), and get the issuer that
    /// signs with it.
    pub fn add_dev_secret(&mut self, secret: &[u8]) -> Result<DevIssuer, KeyError> {
        if secret.len() < MIN_DEV_SECRET_BYTES {
            return Err(KeyError::ShortSecret);
        }
        self.insert(DEV_KEY_ID, Key { algorithm: Algorithm::HS256, decoding: DecodingKey::from_secret(secret) })?;
        Ok(DevIssuer::new(secret, &self.settings))
    }

    fn insert(&mut self, kid: &str, key: Key) -> Result<(), KeyError> {
        if self.keys.contains_key(kid) {
            return Err(KeyError::Duplicate(kid.to_owned()));
        }
        self.keys.insert(kid.to_owned(), key);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The configured key ids, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Verify `token` at `now` and return who it names, and until when.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let header = peek_header(token)?;
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = self.keys.get(&kid).ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        if header.alg != key.algorithm {
            return Err(TokenError::AlgorithmMismatch);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        // Times are checked below against `now`, not the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::InvalidAlgorithm => TokenError::AlgorithmMismatch,
                    ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                    ErrorKind::InvalidAudience => TokenError::WrongAudience,
                    _ => TokenError::Malformed(e.to_string()),
                }
            })?
            .claims;
        self.check_times(&claims, now)?;
        let principal = Principal::new(&claims.sub, &claims.role, &claims.org, &claims.territory)?;
        let valid_until = Timestamp::from_second(claims.exp.saturating_add(self.settings.clock_skew_seconds))
            .map_err(|_| TokenError::Malformed("exp is out of range".into()))?;
        Ok(Verified { principal, valid_until })
    }

    fn check_times(&self, claims: &Claims, now: Timestamp) -> Result<(), TokenError> {
        let (now, skew) = (now.as_second(), self.settings.clock_skew_seconds);
        if now >= claims.exp.saturating_add(skew) {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf.saturating_sub(skew) > now) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat.saturating_sub(skew) > now {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.exp.saturating_sub(claims.iat) > self.settings.max_lifetime_seconds {
            return Err(TokenError::LifetimeTooLong { max_seconds: self.settings.max_lifetime_seconds });
        }
        Ok(())
    }
}

/// A token that verified: who it names, and the instant from which it no
/// longer verifies (its `exp` plus the clock skew).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: Principal,
    pub valid_until: Timestamp,
}

/// Signs development tokens with the development secret. Exists only where
/// a development secret is configured.
#[derive(Clone)]
pub struct DevIssuer {
    key: EncodingKey,
    issuer: String,
    audience: String,
    max_lifetime_seconds: i64,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl DevIssuer {
    pub fn new(secret: &[u8], settings: &VerifierSettings) -> Self {
        Self {
            key: EncodingKey::from_secret(secret),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            max_lifetime_seconds: settings.max_lifetime_seconds,
        }
    }

    /// The claims of a token for this identity, valid from `now` for `lifetime_seconds`.
    pub fn claims(&self, principal: &Principal, now: Timestamp, lifetime_seconds: i64) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: Audience::One(self.audience.clone()),
            sub: principal.subject.clone(),
            iat: now.as_second(),
            exp: now.as_second() + lifetime_seconds.clamp(1, self.max_lifetime_seconds),
            nbf: None,
            role: principal.role.as_str().into(),
            org: principal.organisation.to_string(),
            territory: principal.territory.to_string(),
        }
    }

    /// Sign any claims (tests use this to make tokens that must be refused).
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(DEV_KEY_ID.into());
        jsonwebtoken::encode(&header, claims, &self.key).expect("HS256 signing cannot fail")
    }

    /// A token for `principal`, valid from `now` for `lifetime_seconds`
    /// (at most the verifier's maximum lifetime).
    pub fn mint(&self, principal: &Principal, now: Timestamp, lifetime_seconds: i64) -> String {
        self.sign(&self.claims(principal, now, lifetime_seconds))
    }

    pub fn max_lifetime_seconds(&self) -> i64 {
        self.max_lifetime_seconds
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
    const NOW: i64 = 1_790_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    fn setup() -> (KeySet, DevIssuer) {
        let mut keys = KeySet::new(VerifierSettings::default());
        let issuer = keys.add_dev_secret(SECRET).unwrap();
        (keys, issuer)
    }

    fn centre() -> Principal {
        Principal::new("cc-op-1", "command_centre", "cc-990101001", "990101001").unwrap()
    }

    #[test]
    fn a_minted_token_verifies_into_its_principal() {
        let (keys, issuer) = setup();
        let token = issuer.mint(&centre(), now(), 3600);
        assert_eq!(keys.verify(&token, now()).map(|v| v.principal), Ok(centre()));
    }

    #[test]
    fn expiry_and_skew_are_checked_against_the_given_instant() {
        let (keys, issuer) = setup();
        let token = issuer.mint(&centre(), now(), 600);
        let at = |s: i64| Timestamp::from_second(NOW + s).unwrap();
        assert!(keys.verify(&token, at(659)).is_ok(), "within the 60 s skew");
        assert_eq!(keys.verify(&token, at(0)).unwrap().valid_until, at(660));
        assert_eq!(keys.verify(&token, at(660)), Err(TokenError::Expired));
        assert_eq!(keys.verify(&token, at(-61)), Err(TokenError::IssuedInFuture));
        let mut claims = issuer.claims(&centre(), now(), 600);
        claims.nbf = Some(NOW + 300);
        assert_eq!(keys.verify(&issuer.sign(&claims), now()), Err(TokenError::NotYetValid));
        claims.nbf = None;
        claims.exp = NOW + 13 * 3600;
        assert_eq!(keys.verify(&issuer.sign(&claims), now()), Err(TokenError::LifetimeTooLong { max_seconds: 43200 }));
    }

    #[test]
    fn claims_of_the_wrong_type_are_malformed_not_missing() {
        let (keys, issuer) = setup();
        let mut claims = serde_json::to_value(issuer.claims(&centre(), now(), 600)).unwrap();
        claims["nbf"] = serde_json::json!("99999999999");
        let token = jsonwebtoken::encode(
            &Header { kid: Some(DEV_KEY_ID.into()), ..Header::new(Algorithm::HS256) },
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(keys.verify(&token, now()), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let (keys, issuer) = setup();
        let other = DevIssuer::new(b"another secret of at least thirty-two bytes", keys.settings());
        assert_eq!(keys.verify(&other.mint(&centre(), now(), 600), now()), Err(TokenError::BadSignature));

        let mut claims = issuer.claims(&centre(), now(), 600);
        claims.aud = Audience::One("another-system".into());
        assert_eq!(keys.verify(&issuer.sign(&claims), now()), Err(TokenError::WrongAudience));
        claims.aud = Audience::Many(vec!["another-system".into(), "gridcase".into()]);
        assert!(keys.verify(&issuer.sign(&claims), now()).is_ok(), "one of several audiences is ours");
        claims.iss = "someone-else".into();
        assert_eq!(keys.verify(&issuer.sign(&claims), now()), Err(TokenError::WrongIssuer));

        // alg: none, with and without a signature part.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&issuer.claims(&centre(), now(), 600)).unwrap());
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"dev"}"#);
        for token in [format!("{none_header}.{payload}."), format!("{none_header}.{payload}")] {
            let refused = keys.verify(&token, now());
            assert_eq!(refused, Err(TokenError::Unsigned), "{token}");
            assert_eq!(
                refused.unwrap_err().to_string(),
                "the token is unsigned (alg \"none\"): only signed tokens are accepted"
            );
        }
        let odd = URL_SAFE_NO_PAD.encode(br#"{"alg":"XS999","kid":"dev"}"#);
        assert_eq!(
            keys.verify(&format!("{odd}.{payload}.c2ln"), now()),
            Err(TokenError::UnsupportedAlgorithm("XS999".into()))
        );
        // A token claiming another algorithm for the development key.
        let hs512 = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT","kid":"dev"}"#);
        assert_eq!(keys.verify(&format!("{hs512}.{payload}.c2ln"), now()), Err(TokenError::AlgorithmMismatch));

        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rotated-away".into());
        let token =
            jsonwebtoken::encode(&header, &issuer.claims(&centre(), now(), 600), &EncodingKey::from_secret(SECRET))
                .unwrap();
        assert_eq!(keys.verify(&token, now()), Err(TokenError::UnknownKey("rotated-away".into())));
        header.kid = None;
        let token =
            jsonwebtoken::encode(&header, &issuer.claims(&centre(), now(), 600), &EncodingKey::from_secret(SECRET))
                .unwrap();
        assert_eq!(keys.verify(&token, now()), Err(TokenError::MissingKeyId));
        assert_eq!(keys.verify(&"a".repeat(9000), now()), Err(TokenError::TooLong));
        assert_eq!(
            keys.verify("not a token", now()).unwrap_err().to_string(),
            "the token is malformed: a token is three base64url parts separated by dots (header.payload.signature)"
        );
    }

    #[test]
    fn an_identity_providers_eddsa_token_verifies_and_its_public_key_is_no_hmac_secret() {
        let public = include_bytes!("../testdata/idp-ed25519.pub.pem");
        let private = include_bytes!("../testdata/idp-ed25519.pem");
        let mut keys = KeySet::new(VerifierSettings::default());
        keys.add_public_key("idp-2026", TokenAlgorithm::EdDSA, public).unwrap();
        let (_, issuer) = setup();
        let claims = issuer.claims(&centre(), now(), 600);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("idp-2026".into());
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_pem(private).unwrap()).unwrap();
        assert_eq!(keys.verify(&token, now()).map(|v| v.principal), Ok(centre()));
        // The classic confusion: HS256 "signed" with the public key as the secret.
        header.alg = Algorithm::HS256;
        let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(public)).unwrap();
        assert_eq!(keys.verify(&forged, now()), Err(TokenError::AlgorithmMismatch));
    }

    #[test]
    fn a_token_naming_a_bad_identity_is_refused() {
        let (keys, issuer) = setup();
        let mut claims = issuer.claims(&centre(), now(), 600);
        claims.territory = "990101".into();
        assert!(matches!(keys.verify(&issuer.sign(&claims), now()), Err(TokenError::BadIdentity(_))));
        claims.role = "superuser".into();
        assert!(matches!(keys.verify(&issuer.sign(&claims), now()), Err(TokenError::BadIdentity(_))));
    }

    #[test]
    fn short_secrets_and_bad_keys_are_refused_at_configuration() {
        let mut keys = KeySet::new(VerifierSettings::default());
        assert_eq!(keys.add_dev_secret(b"short").unwrap_err(), KeyError::ShortSecret);
        assert!(matches!(
            keys.add_public_key("idp-2026", TokenAlgorithm::EdDSA, b"not pem"),
            Err(KeyError::BadPem { .. })
        ));
        assert_eq!(keys.add_public_key("dev", TokenAlgorithm::EdDSA, b"x").unwrap_err(), KeyError::ReservedKeyId);
        assert!(keys.is_empty());
    }
}

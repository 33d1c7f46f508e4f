//! Crypto-shredding of residents' personal fields, without IO.
//!
//! Each case that records a resident's contact details gets its own random
//! data key (AES-256-GCM). The details are sealed under it before the filing
//! is appended, so the log, its copies and the read models only ever hold
//! ciphertext; destroying the data key (see `gridcase_eventlog::keys`) erases
//! them everywhere at once while the events, and the hashes over them, stay
//! as they are. Data keys are stored wrapped (sealed) under a master key from
//! the operator's key file ([`MasterKeys`]); the file may list older master
//! keys, which still unwrap but no longer wrap, so the master key can be
//! rotated.
//!
//! AES-256-GCM from `ring`, which the services already link for TLS: a
//! maintained, audited implementation using the CPU's AES instructions, and
//! no new dependency. Nonces are 96 random bits: a data key seals one
//! contact (a retried filing reuses the key with a new nonce), and a master
//! key wraps one data key per case, millions over its life, far below the
//! 2^32 messages that random GCM nonces allow per key.
//!
//! The associated data binds each ciphertext to its case (and a wrapped key
//! to its master key's id), so a ciphertext copied onto another case does
//! not open.

use std::fmt;

use gridcase_domain::{CaseId, ResidentContact, SealedData};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The AEAD every sealed field and wrapped key uses, as stored.
pub const ALGORITHM: &str = "AES-256-GCM";
const KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the system's random number generator failed")]
    Random,
    #[error("the ciphertext does not open under this key (wrong key, wrong case, or altered)")]
    DoesNotOpen,
    #[error("sealed with {0:?}, this build opens only {ALGORITHM}")]
    UnknownAlgorithm(String),
    #[error("the key was wrapped under master key {0:?}, which the key file does not hold")]
    UnknownMasterKey(String),
    #[error("the opened contact details are malformed: {0}")]
    Malformed(String),
}

/// A case's data key. Never printed; zeroed when dropped.
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SealError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| SealError::Random)?;
        Ok(Self(bytes))
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32 bytes is an AES-256 key"))
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        zero(&mut self.0);
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

fn random_nonce() -> Result<[u8; NONCE_LEN], SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| SealError::Random)?;
    Ok(nonce)
}

fn seal(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<SealedData, SealError> {
    let nonce = random_nonce()?;
    let mut buffer = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buffer)
        .map_err(|_| SealError::Random)?;
    Ok(SealedData { nonce: nonce.to_vec(), ciphertext: buffer })
}

/// The plaintext, in the buffer it was opened in (no copy left behind);
/// callers zero it when done.
fn open(key: &LessSafeKey, aad: &[u8], sealed: &SealedData) -> Result<Vec<u8>, SealError> {
    let nonce = Nonce::try_assume_unique_for_key(&sealed.nonce).map_err(|_| SealError::DoesNotOpen)?;
    let mut buffer = sealed.ciphertext.clone();
    let len = key.open_in_place(nonce, Aad::from(aad), &mut buffer).map_err(|_| SealError::DoesNotOpen)?.len();
    buffer.truncate(len);
    Ok(buffer)
}

/// Overwrite with zeros in a way the compiler may not drop as a dead store
/// (the `zeroize` crate, RustCrypto's, which `ring`'s users rely on too).
fn zero(bytes: &mut [u8]) {
    zeroize::Zeroize::zeroize(bytes);
}

fn contact_aad(case_id: &CaseId) -> Vec<u8> {
    format!("gridcase/contact/v1/{case_id}").into_bytes()
}

/// Seal a resident's contact details under the case's data key.
pub fn seal_contact(key: &DataKey, case_id: &CaseId, contact: &ResidentContact) -> Result<SealedData, SealError> {
    let mut plain = serde_json::to_vec(contact).expect("contact details serialise");
    let sealed = seal(&key.aead(), &contact_aad(case_id), &plain);
    zero(&mut plain);
    sealed
}

/// Open contact details sealed by [`seal_contact`] for the same case.
pub fn open_contact(key: &DataKey, case_id: &CaseId, sealed: &SealedData) -> Result<ResidentContact, SealError> {
    let mut plain = open(&key.aead(), &contact_aad(case_id), sealed)?;
    let contact = serde_json::from_slice(&plain).map_err(|e| SealError::Malformed(e.to_string()));
    zero(&mut plain);
    contact
}

/// Sealed data as JSON: `{"alg", "nonce", "ciphertext"}`, bytes in base64.
/// How a filing stores its sealed contact details, and how the read models
/// keep them (ciphertext only) for the query service to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedJson {
    pub alg: String,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

impl From<SealedData> for SealedJson {
    fn from(sealed: SealedData) -> Self {
        SealedJson { alg: ALGORITHM.to_owned(), nonce: sealed.nonce, ciphertext: sealed.ciphertext }
    }
}

impl SealedJson {
    /// The sealed data, if this build knows its algorithm.
    pub fn into_sealed(self) -> Result<SealedData, SealError> {
        if self.alg != ALGORITHM {
            return Err(SealError::UnknownAlgorithm(self.alg));
        }
        Ok(SealedData { nonce: self.nonce, ciphertext: self.ciphertext })
    }

    pub fn to_json(sealed: &SealedData) -> String {
        serde_json::to_string(&SealedJson::from(sealed.clone())).expect("sealed data serialise")
    }

    pub fn from_json(text: &str) -> Result<SealedData, SealError> {
        serde_json::from_str::<SealedJson>(text).map_err(|e| SealError::Malformed(e.to_string()))?.into_sealed()
    }
}

/// A data key as the key store holds it: sealed under a master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The id of the master key that wrapped it (a line of the key file).
    pub master: String,
    pub alg: String,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub wrapped: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("line {line}: expected `<id> <64 hex digits>`")]
    Malformed { line: usize },
    #[error("line {line}: the id must be 1-64 letters, digits or ._-")]
    BadId { line: usize },
    #[error("line {line}: master key {id:?} is listed twice")]
    Duplicate { line: usize, id: String },
    #[error("the key file lists no master key")]
    Empty,
}

/// The master keys of a deployment, from its key file: one line per key,
/// `<id> <64 hex digits>`, `#` comments. The first key is current (it wraps
/// new data keys); the others only unwrap keys wrapped before a rotation.
pub struct MasterKeys {
    keys: Vec<(String, LessSafeKey)>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys").field("ids", &self.ids().collect::<Vec<_>>()).finish()
    }
}

impl MasterKeys {
    pub fn parse(text: &str) -> Result<Self, MasterKeyError> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let mut parts = content.split_whitespace();
            let (Some(id), Some(hex_key), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(MasterKeyError::Malformed { line });
            };
            let id_ok = (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !id_ok {
                return Err(MasterKeyError::BadId { line });
            }
            let bytes = hex::decode(hex_key).map_err(|_| MasterKeyError::Malformed { line })?;
            if bytes.len() != KEY_LEN {
                return Err(MasterKeyError::Malformed { line });
            }
            if keys.iter().any(|(known, _)| known == id) {
                return Err(MasterKeyError::Duplicate { line, id: id.to_owned() });
            }
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("32 bytes"));
            keys.push((id.to_owned(), key));
        }
        if keys.is_empty() {
            return Err(MasterKeyError::Empty);
        }
        Ok(Self { keys })
    }

    /// A new key file line: `<id> <64 random hex digits>`.
    pub fn generate_line(id: &str) -> Result<String, SealError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| SealError::Random)?;
        Ok(format!("{id} {}", hex::encode(bytes)))
    }

    /// The id of the key that wraps new data keys.
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    fn wrap_aad(case_id: &CaseId, master: &str) -> Vec<u8> {
        format!("gridcase/data-key/v1/{case_id}/{master}").into_bytes()
    }

    /// Wrap a case's data key under the current master key.
    pub fn wrap(&self, case_id: &CaseId, key: &DataKey) -> Result<WrappedKey, SealError> {
        let (id, master) = &self.keys[0];
        let sealed = seal(master, &Self::wrap_aad(case_id, id), &key.0)?;
        Ok(WrappedKey {
            master: id.clone(),
            alg: ALGORITHM.to_owned(),
            nonce: sealed.nonce,
            wrapped: sealed.ciphertext,
        })
    }

    /// Unwrap a case's data key, under whichever listed master key wrapped it.
    pub fn unwrap(&self, case_id: &CaseId, wrapped: &WrappedKey) -> Result<DataKey, SealError> {
        if wrapped.alg != ALGORITHM {
            return Err(SealError::UnknownAlgorithm(wrapped.alg.clone()));
        }
        let (_, master) = self
            .keys
            .iter()
            .find(|(id, _)| *id == wrapped.master)
            .ok_or_else(|| SealError::UnknownMasterKey(wrapped.master.clone()))?;
        let sealed = SealedData { nonce: wrapped.nonce.clone(), ciphertext: wrapped.wrapped.clone() };
        let mut plain = open(master, &Self::wrap_aad(case_id, &wrapped.master), &sealed)?;
        let bytes: Result<[u8; KEY_LEN], _> = plain.as_slice().try_into();
        zero(&mut plain);
        Ok(DataKey(bytes.map_err(|_| SealError::DoesNotOpen)?))
    }
}

/// Bytes as standard base64 in JSON.
pub(crate) mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use gridcase_domain::{PersonName, PhoneNumber};

    use super::*;

    fn case(n: u128) -> CaseId {
        CaseId::parse(&uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n).to_string()).unwrap()
    }

    fn contact() -> ResidentContact {
        ResidentContact {
            name: Some(PersonName::parse("张三").unwrap()),
            phone: Some(PhoneNumber::parse("13812345678").unwrap()),
            email: None,
        }
    }

    #[test]
    fn a_sealed_contact_opens_for_its_case_only() {
        let key = DataKey::generate().unwrap();
        let sealed = seal_contact(&key, &case(1), &contact()).unwrap();
        assert_eq!(open_contact(&key, &case(1), &sealed).unwrap(), contact());
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("13812345678"));
        assert_eq!(open_contact(&key, &case(2), &sealed), Err(SealError::DoesNotOpen));
        let other = DataKey::generate().unwrap();
        assert_eq!(open_contact(&other, &case(1), &sealed), Err(SealError::DoesNotOpen));
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert_eq!(open_contact(&key, &case(1), &altered), Err(SealError::DoesNotOpen));
        // A new nonce every time: two seals of the same details differ.
        let again = seal_contact(&key, &case(1), &contact()).unwrap();
        assert_ne!(again, sealed);
    }

    #[test]
    fn master_keys_wrap_with_the_first_and_unwrap_with_any() {
        let old_line = MasterKeys::generate_line("2025-01").unwrap();
        let new_line = MasterKeys::generate_line("2026-12").unwrap();
        let before = MasterKeys::parse(&format!("# comment\n{old_line}\n")).unwrap();
        let key = DataKey::generate().unwrap();
        let wrapped = before.wrap(&case(1), &key).unwrap();
        assert_eq!(wrapped.master, "2025-01");

        let rotated = MasterKeys::parse(&format!("{new_line}\n{old_line}  # retired after rewrap\n")).unwrap();
        assert_eq!(rotated.current_id(), "2026-12");
        let unwrapped = rotated.unwrap(&case(1), &wrapped).unwrap();
        assert_eq!(unwrapped.0, key.0);
        assert_eq!(rotated.wrap(&case(1), &unwrapped).unwrap().master, "2026-12");
        // Bound to its case and its master key id.
        assert_eq!(rotated.unwrap(&case(2), &wrapped).unwrap_err(), SealError::DoesNotOpen);
        let relabelled = WrappedKey { master: "2026-12".into(), ..wrapped.clone() };
        assert_eq!(rotated.unwrap(&case(1), &relabelled).unwrap_err(), SealError::DoesNotOpen);
        let only_new = MasterKeys::parse(&new_line).unwrap();
        assert_eq!(only_new.unwrap(&case(1), &wrapped).unwrap_err(), SealError::UnknownMasterKey("2025-01".into()));
    }

    #[test]
    fn key_files_are_checked_line_by_line() {
        let line = MasterKeys::generate_line("a").unwrap();
        assert_eq!(MasterKeys::parse("# nothing\n\n").unwrap_err(), MasterKeyError::Empty);
        assert_eq!(MasterKeys::parse("a 00ff").unwrap_err(), MasterKeyError::Malformed { line: 1 });
        assert_eq!(MasterKeys::parse("\nonlyid").unwrap_err(), MasterKeyError::Malformed { line: 2 });
        assert_eq!(MasterKeys::parse(&format!("{line} extra")).unwrap_err(), MasterKeyError::Malformed { line: 1 });
        let bad_id = line.replacen('a', "a/b", 1);
        assert_eq!(MasterKeys::parse(&bad_id).unwrap_err(), MasterKeyError::BadId { line: 1 });
        assert_eq!(
            MasterKeys::parse(&format!("{line}\n{line}")).unwrap_err(),
            MasterKeyError::Duplicate { line: 2, id: "a".into() }
        );
        assert!(format!("{:?}", MasterKeys::parse(&line).unwrap()).contains("\"a\""));
        assert!(!format!("{:?}", MasterKeys::parse(&line).unwrap()).contains(&line[2..]));
    }
}

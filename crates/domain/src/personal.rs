//! Residents' personal data. China's Personal Information Protection Law
//! applies: these types never print their contents through `Debug` or
//! `Display`; the raw value is only reachable through `expose()`, which makes
//! every place that reveals it easy to find.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonalDataError {
    #[error(
        "must be a mainland mobile number (11 digits starting 13-19) or a landline with area code (e.g. 010-12345678)"
    )]
    BadPhone,
    #[error("must be 1-{max} characters and not blank")]
    BadName { max: usize },
    #[error("must be an e-mail address (name@domain), at most 254 characters")]
    BadEmail,
}

/// A mainland phone number, normalised (no spaces, no +86). Masked when shown:
/// `138****5678`.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(text: &str) -> Result<Self, PersonalDataError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let compact = compact.strip_prefix("+86").unwrap_or(&compact).to_owned();
        // Digits and a dash only: the splits below count bytes (a number
        // with other characters once split inside one; found by fuzzing).
        if !compact.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return Err(PersonalDataError::BadPhone);
        }
        let bytes = compact.as_bytes();
        let is_mobile = bytes.len() == 11
            && bytes.iter().all(u8::is_ascii_digit)
            && bytes[0] == b'1'
            && (b'3'..=b'9').contains(&bytes[1]);
        let is_landline = {
            let (area, number) = match compact.split_once('-') {
                Some((area, number)) => (area, number),
                None => {
                    compact.split_at(compact.len().min(if compact.starts_with("01") || compact.starts_with("02") {
                        3
                    } else {
                        4
                    }))
                }
            };
            area.starts_with('0')
                && (3..=4).contains(&area.len())
                && (7..=8).contains(&number.len())
                && area.bytes().chain(number.bytes()).all(|b| b.is_ascii_digit())
        };
        if is_mobile || is_landline { Ok(Self(compact)) } else { Err(PersonalDataError::BadPhone) }
    }

    /// The unmasked number. Call only where the reader's role may see it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        let keep_head = 3.min(chars.len());
        let keep_tail = 4.min(chars.len().saturating_sub(keep_head));
        let hidden = chars.len() - keep_head - keep_tail;
        let mut out: String = chars[..keep_head].iter().collect();
        out.extend(std::iter::repeat_n('*', hidden));
        out.extend(&chars[chars.len() - keep_tail..]);
        out
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PersonalDataError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

/// A resident's name. Masked when shown: first character kept (`张**`).
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonName(String);

impl PersonName {
    pub const MAX_CHARS: usize = 50;

    pub fn parse(text: &str) -> Result<Self, PersonalDataError> {
        let trimmed = text.trim();
        let count = trimmed.chars().count();
        if count == 0 || count > Self::MAX_CHARS || trimmed.chars().any(char::is_control) {
            return Err(PersonalDataError::BadName { max: Self::MAX_CHARS });
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        let mut chars = self.0.chars();
        let first = chars.next().unwrap_or('*');
        std::iter::once(first).chain(chars.map(|_| '*')).collect()
    }
}

impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonName({})", self.masked())
    }
}

impl TryFrom<String> for PersonName {
    type Error = PersonalDataError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PersonName> for String {
    fn from(value: PersonName) -> Self {
        value.0
    }
}

/// How to reach the resident who raised the matter, if they agreed to leave it.
/// An e-mail address, as much as a form can check one: something before
/// one `@`, a domain with a dot after it, no spaces or controls.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub const MAX_CHARS: usize = 254;

    pub fn parse(text: &str) -> Result<Self, PersonalDataError> {
        let text = text.trim();
        let fine = text.len() <= Self::MAX_CHARS
            && !text.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
            && match text.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.split('.').count() >= 2
                        && domain.split('.').all(|label| !label.is_empty())
                }
                None => false,
            };
        if fine { Ok(Self(text.to_owned())) } else { Err(PersonalDataError::BadEmail) }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `z***@example.org`: the first character, and the domain.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let first = local.chars().next().unwrap_or('*');
        format!("{first}***@{domain}")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.masked())
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = PersonalDataError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ResidentContact {
    pub name: Option<PersonName>,
    pub phone: Option<PhoneNumber>,
    /// Added with the partners' channel; absent in sealed details written
    /// before, and left out when there is none (so those bytes are as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
}

/// Contact details as a filing records them. Intake seals them under the
/// case's data key before the filing is decided; the domain never needs to
/// read them, so it treats the sealed form as opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// In clear: history written before personal fields were encrypted (the
    /// log is immutable, so such events keep their clear text).
    Clear(ResidentContact),
    /// Encrypted under the case's data key (crypto-shredding: destroying the
    /// key erases the details everywhere the event was copied).
    Sealed(SealedData),
}

/// An AEAD ciphertext and the nonce it was sealed with. Which algorithm,
/// which key and which associated data is the envelope's sealing module's
/// business.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedData {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedData({} bytes)", self.ciphertext.len())
    }
}

/// What a case holds of its resident's contact details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactState {
    /// None were left.
    #[default]
    None,
    /// Recorded with the filing (sealed or, in old history, in clear).
    Given,
    /// Erased (`ResidentDataErased`): no read shows them again.
    Erased,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_with_other_characters_is_refused_not_split_inside_one() {
        for text in ["门路12号", "010门12345678", "0门-12345678", "13８12345678"] {
            assert_eq!(PhoneNumber::parse(text), Err(PersonalDataError::BadPhone), "{text}");
        }
    }

    #[test]
    fn phones_parse_and_mask() {
        let mobile = PhoneNumber::parse("+86 138 1234 5678").unwrap();
        assert_eq!(mobile.expose(), "13812345678");
        assert_eq!(mobile.to_string(), "138****5678");
        assert_eq!(format!("{mobile:?}"), "PhoneNumber(138****5678)");
        assert_eq!(PhoneNumber::parse("010-12345678").unwrap().masked(), "010*****5678");
        assert!(PhoneNumber::parse("0571-8765432").is_ok());
        for bad in ["", "12345", "12812345678", "1381234567x", "138123456789", "10-1234567", "abc"] {
            assert_eq!(PhoneNumber::parse(bad), Err(PersonalDataError::BadPhone), "{bad:?}");
        }
    }

    #[test]
    fn emails_parse_and_mask() {
        let email = EmailAddress::parse(" zhang.san@example.org ").unwrap();
        assert_eq!(email.expose(), "zhang.san@example.org");
        assert_eq!(email.to_string(), "z***@example.org");
        assert!(!format!("{email:?}").contains("zhang"));
        for bad in ["", "zhang", "@example.org", "a@b", "a@@b.org", "a b@c.org", "a@b..org", "a@b.org,c@d.org"] {
            assert_eq!(EmailAddress::parse(bad), Err(PersonalDataError::BadEmail), "{bad:?}");
        }
    }

    #[test]
    fn names_are_masked() {
        let name = PersonName::parse(" 张三丰 ").unwrap();
        assert_eq!(name.expose(), "张三丰");
        assert_eq!(name.to_string(), "张**");
        assert_eq!(format!("{name:?}"), "PersonName(张**)");
        assert!(PersonName::parse("   ").is_err());
        assert!(PersonName::parse(&"名".repeat(51)).is_err());
    }
}

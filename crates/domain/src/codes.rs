//! Codes of the administrative hierarchy and the category taxonomy.
//!
//! A grid code is China's 12-digit statistical division code of the village or
//! community the grid belongs to (6 digits county, 3 township, 3 village), plus
//! a 3-digit grid number (15 digits); a micro-grid adds 2 more (17 digits).
//! These types only check the shape; whether a code exists is a question for
//! the grid registry (reference data).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("must contain digits only")]
    NotDigits,
    #[error("must be {expected} digits long, got {actual}")]
    WrongLength { expected: &'static str, actual: usize },
    #[error("township part (digits 7-9) must be 001-399, got {0}")]
    TownshipOutOfRange(String),
    #[error("{part} part must not be all zeros")]
    ZeroPart { part: &'static str },
    #[error("must be 1-64 characters of letters, digits, '-', '_', '.' or ':'")]
    BadOrgCode,
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn non_zero(part: &'static str, digits: &str) -> Result<(), CodeError> {
    if digits.bytes().all(|b| b == b'0') { Err(CodeError::ZeroPart { part }) } else { Ok(()) }
}

/// The code of a grid (15 digits) or micro-grid (17 digits).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GridCode(String);

impl GridCode {
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        if !all_digits(text) {
            return Err(CodeError::NotDigits);
        }
        if text.len() != 15 && text.len() != 17 {
            return Err(CodeError::WrongLength { expected: "15 (grid) or 17 (micro-grid)", actual: text.len() });
        }
        let township = &text[6..9];
        let township_number: u32 = township.parse().map_err(|_| CodeError::NotDigits)?;
        if !(1..=399).contains(&township_number) {
            return Err(CodeError::TownshipOutOfRange(township.to_owned()));
        }
        non_zero("county", &text[0..6])?;
        non_zero("village", &text[9..12])?;
        non_zero("grid", &text[12..15])?;
        if text.len() == 17 {
            non_zero("micro-grid", &text[15..17])?;
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn county(&self) -> &str {
        &self.0[..6]
    }

    pub fn township(&self) -> TownshipCode {
        TownshipCode(self.0[..9].to_owned())
    }

    pub fn village(&self) -> &str {
        &self.0[..12]
    }

    /// The grid a micro-grid belongs to; a grid is its own grid.
    pub fn grid(&self) -> &str {
        &self.0[..15]
    }

    pub fn is_micro_grid(&self) -> bool {
        self.0.len() == 17
    }
}

impl fmt::Display for GridCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for GridCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GridCode({})", self.0)
    }
}

impl TryFrom<String> for GridCode {
    type Error = CodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<GridCode> for String {
    fn from(value: GridCode) -> Self {
        value.0
    }
}

/// The 9-digit code of a township or street (county + township digits).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TownshipCode(String);

impl TownshipCode {
    /// Nine digits: a county (not all zeros) and a township (001-399).
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        if !all_digits(text) {
            return Err(CodeError::NotDigits);
        }
        if text.len() != 9 {
            return Err(CodeError::WrongLength { expected: "9", actual: text.len() });
        }
        non_zero("county", &text[0..6])?;
        let township: u32 = text[6..9].parse().map_err(|_| CodeError::NotDigits)?;
        if !(1..=399).contains(&township) {
            return Err(CodeError::TownshipOutOfRange(text[6..9].to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TownshipCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A category of the taxonomy: 2-digit major and 2-digit minor code, e.g.
/// `0102` (市容环境 → 暴露垃圾).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CategoryCode(String);

impl CategoryCode {
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        if !all_digits(text) {
            return Err(CodeError::NotDigits);
        }
        if text.len() != 4 {
            return Err(CodeError::WrongLength { expected: "4 (2-digit major + 2-digit minor)", actual: text.len() });
        }
        non_zero("major", &text[..2])?;
        non_zero("minor", &text[2..])?;
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn major(&self) -> &str {
        &self.0[..2]
    }
}

impl fmt::Display for CategoryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CategoryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CategoryCode({})", self.0)
    }
}

impl TryFrom<String> for CategoryCode {
    type Error = CodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<CategoryCode> for String {
    fn from(value: CategoryCode) -> Self {
        value.0
    }
}

/// The identifier of an organisation: a handling unit, a command centre, a
/// county office (e.g. `cc-110101001`, `unit.police.110101001`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgCode(String);

impl OrgCode {
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        let ok = (1..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok { Ok(Self(text.to_owned())) } else { Err(CodeError::BadOrgCode) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgCode({})", self.0)
    }
}

impl TryFrom<String> for OrgCode {
    type Error = CodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<OrgCode> for String {
    fn from(value: OrgCode) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn township_codes() {
        assert_eq!(TownshipCode::parse("990101001").unwrap(), GridCode::parse("990101001001001").unwrap().township());
        assert_eq!(TownshipCode::parse("9901"), Err(CodeError::WrongLength { expected: "9", actual: 4 }));
        assert_eq!(TownshipCode::parse("990101400"), Err(CodeError::TownshipOutOfRange("400".into())));
        assert_eq!(TownshipCode::parse("000000001"), Err(CodeError::ZeroPart { part: "county" }));
        assert_eq!(TownshipCode::parse("99010100a"), Err(CodeError::NotDigits));
    }

    #[test]
    fn grid_codes() {
        let grid = GridCode::parse("110101001001001").unwrap();
        assert_eq!(grid.township().as_str(), "110101001");
        assert_eq!(grid.village(), "110101001001");
        assert!(!grid.is_micro_grid());
        let micro = GridCode::parse("11010100100100102").unwrap();
        assert!(micro.is_micro_grid());
        assert_eq!(micro.grid(), "110101001001001");

        let cases = [
            ("", CodeError::NotDigits),
            ("11010100100100a", CodeError::NotDigits),
            ("110101001001", CodeError::WrongLength { expected: "15 (grid) or 17 (micro-grid)", actual: 12 }),
            ("1101010010010011", CodeError::WrongLength { expected: "15 (grid) or 17 (micro-grid)", actual: 16 }),
            ("110101400001001", CodeError::TownshipOutOfRange("400".into())),
            ("110101000001001", CodeError::TownshipOutOfRange("000".into())),
            ("000000001001001", CodeError::ZeroPart { part: "county" }),
            ("110101001000001", CodeError::ZeroPart { part: "village" }),
            ("110101001001000", CodeError::ZeroPart { part: "grid" }),
            ("11010100100100100", CodeError::ZeroPart { part: "micro-grid" }),
        ];
        for (input, expected) in cases {
            assert_eq!(GridCode::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn category_codes() {
        assert_eq!(CategoryCode::parse("0102").unwrap().major(), "01");
        assert_eq!(
            CategoryCode::parse("012"),
            Err(CodeError::WrongLength { expected: "4 (2-digit major + 2-digit minor)", actual: 3 })
        );
        assert_eq!(CategoryCode::parse("0100"), Err(CodeError::ZeroPart { part: "minor" }));
        assert_eq!(CategoryCode::parse("01x2"), Err(CodeError::NotDigits));
    }

    #[test]
    fn org_codes() {
        assert!(OrgCode::parse("unit.police:110101001").is_ok());
        assert_eq!(OrgCode::parse(""), Err(CodeError::BadOrgCode));
        assert_eq!(OrgCode::parse("has space"), Err(CodeError::BadOrgCode));
        assert_eq!(OrgCode::parse(&"a".repeat(65)), Err(CodeError::BadOrgCode));
    }
}

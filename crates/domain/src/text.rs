use std::fmt;

/// Free text written by a person: a description, a reason, a note. Trimmed,
/// never blank, bounded in length (counted in characters, not bytes).
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Text(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("is required and must not be blank")]
    Blank,
    #[error("must be at most {max} characters, got {actual}")]
    TooLong { max: usize, actual: usize },
    #[error("must not contain control characters other than newline and tab")]
    ControlCharacters,
}

impl Text {
    /// Limit for reasons, notes and summaries.
    pub const REASON_MAX: usize = 1000;
    /// Limit for a case's description.
    pub const DESCRIPTION_MAX: usize = 2000;

    pub fn parse(text: &str, max: usize) -> Result<Self, TextError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(TextError::Blank);
        }
        let actual = trimmed.chars().count();
        if actual > max {
            return Err(TextError::TooLong { max, actual });
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(TextError::ControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// A reason, a note or a summary.
    pub fn reason(text: &str) -> Result<Self, TextError> {
        Self::parse(text, Self::REASON_MAX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert_eq!(Text::parse("  漏水  ", 10).unwrap().as_str(), "漏水");
        assert_eq!(Text::parse(" \n ", 10), Err(TextError::Blank));
        assert_eq!(Text::parse("一二三", 2), Err(TextError::TooLong { max: 2, actual: 3 }));
        assert_eq!(Text::parse("a\u{0007}b", 10), Err(TextError::ControlCharacters));
        assert!(Text::parse("line one\nline two", 100).is_ok());
    }
}

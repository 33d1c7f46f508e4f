use gridcase_domain::{CaseId, GridCode, TownshipCode};

/// The root of every case subject.
pub const CASES_PREFIX: &str = "gridcase.case";

/// The subject of one case: `gridcase.case.<township>.<case id>`, where the
/// township is the 9-digit county+township code. A command centre consumes
/// its township alone with `gridcase.case.<township>.>`, a county with
/// `gridcase.case.<county>*` filters applied per township.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaseSubject(String);

impl TryFrom<String> for CaseSubject {
    type Error = String;

    fn try_from(subject: String) -> Result<Self, Self::Error> {
        match Self::parse(&subject) {
            Some(_) => Ok(Self(subject)),
            None => Err(format!("not a case subject: {subject:?}")),
        }
    }
}

impl From<CaseSubject> for String {
    fn from(subject: CaseSubject) -> Self {
        subject.0
    }
}

impl CaseSubject {
    pub fn new(township: &TownshipCode, case_id: &CaseId) -> Self {
        Self(format!("{CASES_PREFIX}.{township}.{case_id}"))
    }

    pub fn for_grid(grid: &GridCode, case_id: &CaseId) -> Self {
        Self::new(&grid.township(), case_id)
    }

    /// The filter that matches every case of one township.
    pub fn township_filter(township: &TownshipCode) -> String {
        format!("{CASES_PREFIX}.{township}.>")
    }

    /// The filter that matches every case.
    pub fn all_filter() -> String {
        format!("{CASES_PREFIX}.>")
    }

    /// The subject of a message, if it is a case subject.
    pub fn from_subject(subject: &str) -> Option<Self> {
        Self::parse(subject).map(|_| Self(subject.to_owned()))
    }

    /// The wildcard that finds a case's subject from its id alone.
    pub fn locator(case_id: &CaseId) -> String {
        format!("{CASES_PREFIX}.*.{case_id}")
    }

    /// Parse a subject back into its township code and case id.
    pub fn parse(subject: &str) -> Option<(String, CaseId)> {
        let rest = subject.strip_prefix(CASES_PREFIX)?.strip_prefix('.')?;
        let (township, case_id) = rest.split_once('.')?;
        let valid_township = township.len() == 9 && township.bytes().all(|b| b.is_ascii_digit());
        if !valid_township {
            return None;
        }
        Some((township.to_owned(), CaseId::parse(case_id).ok()?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The township code this subject is filed under.
    pub fn township(&self) -> &str {
        let rest = self.0.strip_prefix(CASES_PREFIX).and_then(|r| r.strip_prefix('.')).unwrap_or_default();
        rest.split_once('.').map_or("", |(township, _)| township)
    }

    /// The id of the case this subject holds.
    pub fn case_id(&self) -> CaseId {
        Self::parse(&self.0).map(|(_, case_id)| case_id).expect("a case subject is built from a case id")
    }
}

impl std::fmt::Display for CaseSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        let grid = GridCode::parse("110101001001001").unwrap();
        let case_id = CaseId::parse("019a0000-0000-7000-8000-000000000001").unwrap();
        let subject = CaseSubject::for_grid(&grid, &case_id);
        assert_eq!(subject.as_str(), "gridcase.case.110101001.019a0000-0000-7000-8000-000000000001");
        assert_eq!(CaseSubject::parse(subject.as_str()), Some(("110101001".to_owned(), case_id)));
        assert_eq!(CaseSubject::township_filter(&grid.township()), "gridcase.case.110101001.>");
        assert_eq!(CaseSubject::parse("gridcase.case.1101.x"), None);
        assert_eq!(CaseSubject::from_subject(subject.as_str()), Some(subject.clone()));
        assert_eq!(CaseSubject::locator(&case_id), "gridcase.case.*.019a0000-0000-7000-8000-000000000001");
        let json = serde_json::to_string(&subject).unwrap();
        assert_eq!(serde_json::from_str::<CaseSubject>(&json).unwrap(), subject);
        assert!(serde_json::from_str::<CaseSubject>("\"gridcase.case.1101.x\"").is_err());
    }
}

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jiff::civil::{Date, Weekday};
use sha2::{Digest, Sha256};

/// One year's official schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearFile {
    pub year: i16,
    pub holidays: BTreeSet<Date>,
    pub working_weekends: BTreeSet<Date>,
    /// Where the schedule comes from (the State Council notice).
    pub source: String,
    /// First 12 hex digits of the file's SHA-256: which version was used.
    pub digest: String,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}, line {line}: {problem}")]
    Invalid { file: PathBuf, line: usize, problem: String },
    #[error("{file}: year {year} is already defined by {other}")]
    DuplicateYear { file: PathBuf, year: i16, other: PathBuf },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYear {
    year: toml::Spanned<i16>,
    source: String,
    #[serde(default)]
    holidays: Vec<toml::Spanned<String>>,
    #[serde(default)]
    working_weekends: Vec<toml::Spanned<String>>,
}

/// Every year file of a calendar directory.
#[derive(Debug, Clone, Default)]
pub struct YearTable {
    years: BTreeMap<i16, YearFile>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

impl YearFile {
    /// Parse one year file. `holidays` entries are dates (`2026-10-01`) or
    /// inclusive ranges (`2026-10-01..2026-10-07`); `working_weekends` are
    /// dates that must fall on a Saturday or Sunday.
    pub fn parse(path: &Path, text: &str) -> Result<Self, CalendarError> {
        let invalid = |offset: usize, problem: String| CalendarError::Invalid {
            file: path.to_owned(),
            line: line_of(text, offset),
            problem,
        };
        let raw: RawYear = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |span| span.start);
            invalid(offset, e.message().to_owned())
        })?;
        let year = *raw.year.get_ref();
        if !(2000..=2100).contains(&year) {
            return Err(invalid(raw.year.span().start, format!("year {year} is out of range 2000-2100")));
        }
        let date = |entry: &toml::Spanned<String>, text_value: &str| -> Result<Date, CalendarError> {
            let parsed: Date = text_value
                .trim()
                .parse()
                .map_err(|_| invalid(entry.span().start, format!("{text_value:?} is not a date like 2026-10-01")))?;
            if parsed.year() != year {
                return Err(invalid(entry.span().start, format!("{parsed} is not in {year}")));
            }
            Ok(parsed)
        };
        let mut holidays = BTreeSet::new();
        for entry in &raw.holidays {
            let value = entry.get_ref();
            let (first, last) = match value.split_once("..") {
                Some((a, b)) => (date(entry, a)?, date(entry, b)?),
                None => {
                    let single = date(entry, value)?;
                    (single, single)
                }
            };
            if last < first {
                return Err(invalid(entry.span().start, format!("range {value:?} ends before it starts")));
            }
            let mut day = first;
            while day <= last {
                holidays.insert(day);
                day = day.tomorrow().expect("in range");
            }
        }
        let mut working_weekends = BTreeSet::new();
        for entry in &raw.working_weekends {
            let day = date(entry, entry.get_ref())?;
            if !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
                return Err(invalid(entry.span().start, format!("{day} is a {:?}, not a weekend day", day.weekday())));
            }
            if holidays.contains(&day) {
                return Err(invalid(
                    entry.span().start,
                    format!("{day} is listed both as a holiday and a working day"),
                ));
            }
            working_weekends.insert(day);
        }
        let digest = hex::encode(Sha256::digest(text.as_bytes()))[..12].to_owned();
        Ok(Self { year, holidays, working_weekends, source: raw.source, digest, path: path.to_owned() })
    }
}

impl YearTable {
    pub fn new(files: impl IntoIterator<Item = YearFile>) -> Result<Self, CalendarError> {
        let mut years: BTreeMap<i16, YearFile> = BTreeMap::new();
        for file in files {
            if let Some(other) = years.get(&file.year) {
                return Err(CalendarError::DuplicateYear {
                    file: file.path.clone(),
                    year: file.year,
                    other: other.path.clone(),
                });
            }
            years.insert(file.year, file);
        }
        Ok(Self { years })
    }

    /// Load every `*.toml` file of `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, CalendarError> {
        let read_error = |source| CalendarError::Read { file: dir.to_owned(), source };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        paths.sort();
        let mut files = Vec::new();
        for path in paths {
            let text =
                std::fs::read_to_string(&path).map_err(|source| CalendarError::Read { file: path.clone(), source })?;
            files.push(YearFile::parse(&path, &text)?);
        }
        Self::new(files)
    }

    pub fn year(&self, year: i16) -> Option<&YearFile> {
        self.years.get(&year)
    }

    pub fn years(&self) -> impl Iterator<Item = &YearFile> {
        self.years.values()
    }

    /// Whether the year has a file; operators must add next year's before it starts.
    pub fn has(&self, year: i16) -> bool {
        self.years.contains_key(&year)
    }
}

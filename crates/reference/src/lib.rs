//! Reference data every service validates against: the grid registry and the
//! category taxonomy. Both are CSV files under `deploy/reference/` (operators
//! keep them in a spreadsheet), parsed and checked once at start-up into
//! lookups. Errors name the file, the line and the problem.
//!
//! `regions.csv`: `code,level,name,parent,command_centre` where `level` is
//! `county` (6 digits), `township` (9), `village` (12), `grid` (15) or
//! `micro_grid` (17); `parent` is the code of the level above (a prefix of
//! `code`; empty for a county); `command_centre` is required on townships.
//!
//! `categories.csv`: `code,major,name,default_tier`.
//!
//! `grids.geojson` (optional): the grids' boundaries (see [`boundaries`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod boundaries;

use gridcase_domain::{CategoryCode, GridCode, OrgCode, Tier};

pub use boundaries::{Boundaries, Shape};

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}, line {line}: {problem}")]
    Invalid { file: PathBuf, line: u64, problem: String },
    #[error("{file}{}: {problem}", feature.map(|f| format!(", feature {f}")).unwrap_or_default())]
    Shape { file: PathBuf, feature: Option<usize>, problem: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    County,
    Township,
    Village,
    Grid,
    MicroGrid,
}

impl Level {
    fn code_len(self) -> usize {
        match self {
            Level::County => 6,
            Level::Township => 9,
            Level::Village => 12,
            Level::Grid => 15,
            Level::MicroGrid => 17,
        }
    }

    fn parent_len(self) -> Option<usize> {
        match self {
            Level::County => None,
            Level::Township => Some(6),
            Level::Village => Some(9),
            Level::Grid => Some(12),
            Level::MicroGrid => Some(15),
        }
    }
}

/// One node of the administrative hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub code: String,
    pub level: Level,
    pub name: String,
    pub parent: Option<String>,
    /// Set on townships: the command centre in charge.
    pub command_centre: Option<OrgCode>,
}

#[derive(Debug, serde::Deserialize)]
struct RegionRow {
    code: String,
    level: Level,
    name: String,
    #[serde(default)]
    parent: String,
    #[serde(default)]
    command_centre: String,
}

/// The grid registry: every county, township, village, grid and micro-grid.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    regions: BTreeMap<String, Region>,
}

impl Registry {
    pub fn parse(file: &Path, csv_text: &str) -> Result<Self, ReferenceError> {
        let invalid = |line: u64, problem: String| ReferenceError::Invalid { file: file.to_owned(), line, problem };
        let mut reader =
            csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(csv_text.as_bytes());
        let mut regions = BTreeMap::new();
        let mut lines = BTreeMap::new();
        let headers = reader.headers().map_err(|e| invalid(1, e.to_string()))?.clone();
        for record in reader.records() {
            let record = record.map_err(|e| invalid(e.position().map_or(0, |p| p.line()), e.to_string()))?;
            let line = record.position().map_or(0, |p| p.line());
            let row: RegionRow = record.deserialize(Some(&headers)).map_err(|e| invalid(line, e.to_string()))?;
            let code = row.code;
            if code.len() != row.level.code_len() || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    line,
                    format!("code {code:?} must be {} digits for a {:?}", row.level.code_len(), row.level),
                ));
            }
            if matches!(row.level, Level::Grid | Level::MicroGrid)
                && let Err(e) = GridCode::parse(&code)
            {
                return Err(invalid(line, format!("grid code {code:?} {e}")));
            }
            let parent = match row.level.parent_len() {
                None if row.parent.is_empty() => None,
                None => return Err(invalid(line, "a county has no parent".into())),
                Some(len) if row.parent == code[..len] => Some(row.parent),
                Some(len) => {
                    return Err(invalid(
                        line,
                        format!("parent must be {:?} (the first {len} digits of the code)", &code[..len]),
                    ));
                }
            };
            let command_centre = match (row.level, row.command_centre.is_empty()) {
                (Level::Township, true) => {
                    return Err(invalid(line, "a township needs its command_centre".into()));
                }
                (_, true) => None,
                (_, false) => Some(
                    OrgCode::parse(&row.command_centre)
                        .map_err(|e| invalid(line, format!("command_centre {:?} {e}", row.command_centre)))?,
                ),
            };
            if row.name.trim().is_empty() {
                return Err(invalid(line, format!("region {code} needs a name")));
            }
            if regions.contains_key(&code) {
                return Err(invalid(line, format!("code {code} appears twice (first on line {})", lines[&code])));
            }
            lines.insert(code.clone(), line);
            regions.insert(code.clone(), Region { code, level: row.level, name: row.name, parent, command_centre });
        }
        for region in regions.values() {
            if let Some(parent) = &region.parent
                && !regions.contains_key(parent)
            {
                return Err(invalid(
                    lines[&region.code],
                    format!("parent {parent} of {} is not in the registry", region.code),
                ));
            }
        }
        Ok(Self { regions })
    }

    pub fn region(&self, code: &str) -> Option<&Region> {
        self.regions.get(code)
    }

    /// The registry entry of a grid or micro-grid, if it is registered.
    pub fn grid(&self, code: &GridCode) -> Option<&Region> {
        self.regions.get(code.as_str()).filter(|r| matches!(r.level, Level::Grid | Level::MicroGrid))
    }

    /// The township a grid belongs to.
    pub fn township_of(&self, code: &GridCode) -> Option<&Region> {
        self.regions.get(code.township().as_str())
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Every region, in code order.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }

    pub fn grids(&self) -> impl Iterator<Item = &Region> {
        self.regions.values().filter(|r| matches!(r.level, Level::Grid | Level::MicroGrid))
    }
}

/// One category of the taxonomy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub code: CategoryCode,
    pub major: String,
    pub name: String,
    pub default_tier: Tier,
}

#[derive(Debug, serde::Deserialize)]
struct CategoryRow {
    code: String,
    major: String,
    name: String,
    default_tier: String,
}

#[derive(Debug, Clone, Default)]
pub struct Taxonomy {
    categories: BTreeMap<CategoryCode, Category>,
}

impl Taxonomy {
    pub fn parse(file: &Path, csv_text: &str) -> Result<Self, ReferenceError> {
        let invalid = |line: u64, problem: String| ReferenceError::Invalid { file: file.to_owned(), line, problem };
        let mut reader =
            csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(csv_text.as_bytes());
        let mut categories = BTreeMap::new();
        let headers = reader.headers().map_err(|e| invalid(1, e.to_string()))?.clone();
        for record in reader.records() {
            let record = record.map_err(|e| invalid(e.position().map_or(0, |p| p.line()), e.to_string()))?;
            let line = record.position().map_or(0, |p| p.line());
            let row: CategoryRow = record.deserialize(Some(&headers)).map_err(|e| invalid(line, e.to_string()))?;
            let code = CategoryCode::parse(&row.code).map_err(|e| invalid(line, format!("code {:?} {e}", row.code)))?;
            let default_tier = Tier::parse(&row.default_tier).ok_or_else(|| {
                invalid(
                    line,
                    format!("default_tier {:?} must be CRITICAL, URGENT, NORMAL or COMPLEX", row.default_tier),
                )
            })?;
            if row.name.is_empty() || row.major.is_empty() {
                return Err(invalid(line, format!("category {code} needs a major and a name")));
            }
            if categories.contains_key(&code) {
                return Err(invalid(line, format!("code {code} appears twice")));
            }
            categories.insert(code.clone(), Category { code, major: row.major, name: row.name, default_tier });
        }
        Ok(Self { categories })
    }

    pub fn category(&self, code: &CategoryCode) -> Option<&Category> {
        self.categories.get(code)
    }

    pub fn len(&self) -> usize {
        self.categories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Category> {
        self.categories.values()
    }
}

/// The reference files of a directory.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    pub registry: Registry,
    pub taxonomy: Taxonomy,
    /// The grids' shapes; empty when the directory has no `grids.geojson`.
    pub boundaries: Boundaries,
    /// SHA-256 (hex) of `grids.geojson`, when there is one.
    pub boundaries_sha256: Option<String>,
    /// SHA-256 (hex) of `regions.csv` and of `categories.csv` as loaded, so
    /// operators can tell which version a service runs with.
    pub regions_sha256: String,
    pub categories_sha256: String,
}

impl Reference {
    pub const REGIONS_FILE: &str = "regions.csv";
    pub const CATEGORIES_FILE: &str = "categories.csv";
    pub const BOUNDARIES_FILE: &str = "grids.geojson";

    /// Load `regions.csv`, `categories.csv` and (if present) `grids.geojson`
    /// from `dir`.
    pub fn load(dir: &Path) -> Result<Self, ReferenceError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|text| (path.clone(), text))
                .map_err(|source| ReferenceError::Read { file: path, source })
        };
        let (regions_path, regions) = read(Self::REGIONS_FILE)?;
        let (categories_path, categories) = read(Self::CATEGORIES_FILE)?;
        let registry = Registry::parse(&regions_path, &regions)?;
        let (boundaries, boundaries_sha256) = boundaries::load(dir, &registry)?;
        Ok(Self {
            registry,
            boundaries,
            boundaries_sha256,
            taxonomy: Taxonomy::parse(&categories_path, &categories)?,
            regions_sha256: sha256_hex(regions.as_bytes()),
            categories_sha256: sha256_hex(categories.as_bytes()),
        })
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGIONS: &str = "\
code,level,name,parent,command_centre
990101,county,示范县,,
990101001,township,城关街道,990101,cc-990101001
990101001001,village,东门社区,990101001,
990101001001001,grid,东门一网格,990101001001,
99010100100100101,micro_grid,东门一网格1号微网格,990101001001001,
";

    fn problem(text: &str) -> String {
        match Registry::parse(Path::new("regions.csv"), text) {
            Err(ReferenceError::Invalid { line, problem, .. }) => format!("line {line}: {problem}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn loads_a_hierarchy() {
        let registry = Registry::parse(Path::new("regions.csv"), REGIONS).unwrap();
        let grid = GridCode::parse("99010100100100101").unwrap();
        assert_eq!(registry.grid(&grid).unwrap().name, "东门一网格1号微网格");
        assert_eq!(registry.township_of(&grid).unwrap().command_centre.as_ref().unwrap().as_str(), "cc-990101001");
        assert!(registry.grid(&GridCode::parse("990101001001002").unwrap()).is_none());
        assert_eq!(registry.grids().count(), 2);
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let header = "code,level,name,parent,command_centre\n990101,county,示范县,,\n";
        assert_eq!(
            problem(&format!("{header}99010100,township,X,990101,cc-1\n")),
            "line 3: code \"99010100\" must be 9 digits for a Township"
        );
        assert_eq!(
            problem(&format!("{header}990101001,township,X,990101,\n")),
            "line 3: a township needs its command_centre"
        );
        assert_eq!(
            problem(&format!("{header}990101001001,village,X,990101002,\n")),
            "line 3: parent must be \"990101001\" (the first 9 digits of the code)"
        );
        assert_eq!(
            problem(&format!("{header}990101001001,village,X,990101001,\n")),
            "line 3: parent 990101001 of 990101001001 is not in the registry"
        );
        assert_eq!(
            problem(&format!("{header}990101,county,again,,\n")),
            "line 3: code 990101 appears twice (first on line 2)"
        );
        assert!(problem(&format!("{header}990101001,province,X,990101,cc\n")).starts_with("line 3: "));
    }

    #[test]
    fn taxonomy_rules() {
        let ok = "code,major,name,default_tier\n0202,基础设施,井盖缺失,CRITICAL\n";
        let taxonomy = Taxonomy::parse(Path::new("categories.csv"), ok).unwrap();
        assert_eq!(taxonomy.category(&CategoryCode::parse("0202").unwrap()).unwrap().default_tier, Tier::Critical);
        let bad = "code,major,name,default_tier\n0202,基础设施,井盖缺失,SOON\n";
        let error = Taxonomy::parse(Path::new("categories.csv"), bad).unwrap_err().to_string();
        assert_eq!(error, "categories.csv, line 2: default_tier \"SOON\" must be CRITICAL, URGENT, NORMAL or COMPLEX");
    }

    #[test]
    fn the_shipped_demo_data_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/reference");
        let reference = Reference::load(&dir).unwrap();
        assert!(reference.registry.grids().count() >= 10);
        assert!(reference.taxonomy.len() >= 15);
    }
}

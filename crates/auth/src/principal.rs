//! The verified caller: who they are, in which role, for which organisation,
//! over which territory.

use std::fmt;

use gridcase_domain::OrgCode;

/// The roles of `shared/domain.md`, as tokens name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenRole {
    /// 网格员: files cases in their own grid, adds information, sees the cases they filed.
    GridWorker,
    /// 网格长: as a grid worker, and sees every case of their grid.
    GridLeader,
    /// 处置单位: acts on the cases dispatched to it.
    HandlingUnit,
    /// 指挥中心: runs the lifecycle of the cases of its township.
    CommandCentre,
    /// 县网格办: reads and audits every case of its county; changes nothing.
    CountyAuditor,
    /// Manages reference data; reads no case.
    Admin,
    /// A partner system (the 12345 hotline's platform, a city's reporting
    /// app through Open311): files residents' requests in its territory and
    /// reads back only the cases it filed. Authenticates with an API key,
    /// never a token.
    Partner,
}

impl TokenRole {
    pub const ALL: [TokenRole; 7] = [
        TokenRole::GridWorker,
        TokenRole::GridLeader,
        TokenRole::HandlingUnit,
        TokenRole::CommandCentre,
        TokenRole::CountyAuditor,
        TokenRole::Admin,
        TokenRole::Partner,
    ];

    /// The claim value: `grid_worker`, `grid_leader`, `handling_unit`,
    /// `command_centre`, `county_auditor`, `admin`, `partner`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::GridWorker => "grid_worker",
            TokenRole::GridLeader => "grid_leader",
            TokenRole::HandlingUnit => "handling_unit",
            TokenRole::CommandCentre => "command_centre",
            TokenRole::CountyAuditor => "county_auditor",
            TokenRole::Admin => "admin",
            TokenRole::Partner => "partner",
        }
    }

    pub fn parse(text: &str) -> Option<TokenRole> {
        TokenRole::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// The role recorded as the actor of the events this role causes; admins
    /// cause none.
    pub fn actor_role(self) -> Option<gridcase_domain::ActorRole> {
        match self {
            TokenRole::GridWorker => Some(gridcase_domain::ActorRole::GridWorker),
            TokenRole::GridLeader => Some(gridcase_domain::ActorRole::GridLeader),
            TokenRole::HandlingUnit => Some(gridcase_domain::ActorRole::HandlingUnit),
            TokenRole::CommandCentre => Some(gridcase_domain::ActorRole::CommandCentre),
            TokenRole::CountyAuditor => Some(gridcase_domain::ActorRole::CountyAuditor),
            TokenRole::Admin => None,
            TokenRole::Partner => Some(gridcase_domain::ActorRole::Partner),
        }
    }

    /// The role with its indefinite article, for messages: "an admin",
    /// "a command_centre".
    pub fn with_article(self) -> String {
        let article = if self.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        format!("{article} {}", self.as_str())
    }

    /// What a territory of this role looks like, for error messages.
    pub fn territory_shape(self) -> &'static str {
        match self {
            TokenRole::GridWorker | TokenRole::GridLeader => "a 15-digit grid or 17-digit micro-grid code",
            TokenRole::HandlingUnit => "the unit's organisation code",
            TokenRole::CommandCentre => "a 9-digit township code",
            TokenRole::CountyAuditor => "a 6-digit county code",
            TokenRole::Admin => "a 6-digit county code",
            TokenRole::Partner => "a 6-digit county or 9-digit township code",
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a principal may act: a region-code prefix (grid, township, county)
/// or, for a handling unit, the unit itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Territory {
    Region(String),
    Unit(OrgCode),
}

impl Territory {
    /// Whether a grid code lies inside this territory.
    pub fn contains_grid(&self, grid: &str) -> bool {
        matches!(self, Territory::Region(prefix) if grid.starts_with(prefix.as_str()))
    }

    /// Whether a region-code prefix asked for lies inside this territory
    /// (equal or narrower).
    pub fn contains_region(&self, region: &str) -> bool {
        matches!(self, Territory::Region(prefix) if region.starts_with(prefix.as_str()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Territory::Region(prefix) => prefix,
            Territory::Unit(unit) => unit.as_str(),
        }
    }
}

impl fmt::Display for Territory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("claim sub must be 1-64 letters, digits or -_.:@")]
    BadSubject,
    #[error(
        "claim role must be one of grid_worker, grid_leader, handling_unit, command_centre, county_auditor, admin, partner"
    )]
    UnknownRole,
    #[error("claim org must be 1-64 letters, digits or -_.:")]
    BadOrganisation,
    #[error("claim territory of a {role} must be {shape}")]
    BadTerritory { role: TokenRole, shape: &'static str },
}

/// A caller whose token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: TokenRole,
    pub organisation: OrgCode,
    pub territory: Territory,
}

fn digits(text: &str, lengths: &[usize]) -> bool {
    lengths.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

impl Principal {
    /// Check the identity claims: a known role, and a territory of the shape
    /// that role has.
    pub fn new(subject: &str, role: &str, organisation: &str, territory: &str) -> Result<Self, PrincipalError> {
        let subject_ok = (1..=64).contains(&subject.len())
            && subject.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'));
        if !subject_ok {
            return Err(PrincipalError::BadSubject);
        }
        let role = TokenRole::parse(role).ok_or(PrincipalError::UnknownRole)?;
        let organisation = OrgCode::parse(organisation).map_err(|_| PrincipalError::BadOrganisation)?;
        let bad = PrincipalError::BadTerritory { role, shape: role.territory_shape() };
        let territory = match role {
            TokenRole::GridWorker | TokenRole::GridLeader => {
                gridcase_domain::GridCode::parse(territory).map_err(|_| bad)?;
                Territory::Region(territory.to_owned())
            }
            TokenRole::CommandCentre if digits(territory, &[9]) => Territory::Region(territory.to_owned()),
            TokenRole::CountyAuditor | TokenRole::Admin if digits(territory, &[6]) => {
                Territory::Region(territory.to_owned())
            }
            TokenRole::Partner if digits(territory, &[6, 9]) => Territory::Region(territory.to_owned()),
            TokenRole::HandlingUnit => Territory::Unit(OrgCode::parse(territory).map_err(|_| bad)?),
            _ => return Err(bad),
        };
        Ok(Self { subject: subject.to_owned(), role, organisation, territory })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn territories_have_the_shape_of_their_role() {
        let ok = [
            ("grid_worker", "990101001001001"),
            ("grid_leader", "990101001001002"),
            ("grid_worker", "99010100100100101"),
            ("handling_unit", "unit-streetlights"),
            ("command_centre", "990101001"),
            ("county_auditor", "990101"),
            ("admin", "990101"),
            ("partner", "990101"),
            ("partner", "990101001"),
        ];
        for (role, territory) in ok {
            let result = Principal::new("p-1", role, "org-1", territory);
            assert!(result.is_ok(), "{role} {territory}: {result:?}");
        }
        let bad = [
            ("grid_worker", "990101001"),
            ("grid_leader", "99010100100101"),
            ("command_centre", "990101"),
            ("command_centre", "990101001001001"),
            ("county_auditor", "990101001"),
            ("handling_unit", "unit with spaces"),
            ("command_centre", "99010100a"),
        ];
        for (role, territory) in bad {
            assert!(
                matches!(Principal::new("p-1", role, "org-1", territory), Err(PrincipalError::BadTerritory { .. })),
                "{role} {territory}"
            );
        }
        assert_eq!(Principal::new("p-1", "root", "org-1", "990101"), Err(PrincipalError::UnknownRole));
        assert_eq!(Principal::new("", "admin", "org-1", "990101"), Err(PrincipalError::BadSubject));
        assert_eq!(Principal::new("p 1", "admin", "org-1", "990101"), Err(PrincipalError::BadSubject));
    }

    #[test]
    fn roles_take_the_right_article_in_messages() {
        assert_eq!(TokenRole::Admin.with_article(), "an admin");
        assert_eq!(TokenRole::CountyAuditor.with_article(), "a county_auditor");
        assert_eq!(TokenRole::GridWorker.with_article(), "a grid_worker");
    }

    #[test]
    fn a_region_territory_contains_what_starts_with_it() {
        let township = Territory::Region("990101001".into());
        assert!(township.contains_grid("990101001001001"));
        assert!(!township.contains_grid("990101002001001"));
        assert!(township.contains_region("990101001001"));
        assert!(!township.contains_region("990101"));
        assert!(!Territory::Unit(OrgCode::parse("990101001").unwrap()).contains_grid("990101001001001"));
    }
}

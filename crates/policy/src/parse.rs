use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gridcase_calendar::WorkingHours;
use gridcase_domain::{CategoryCode, OrgCode, RequestKind, Tier};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::{CategorySelector, Escalation, Level, Limit, Policy, Residents, Retention, Route, Thresholds, TierLimits};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}, line {line}: {problem}")]
    Invalid { file: PathBuf, line: usize, problem: String },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Spanned<String>,
    #[serde(default)]
    thresholds: Option<Spanned<RawThresholds>>,
    clocks: RawClocks,
    tiers: BTreeMap<Spanned<String>, RawTier>,
    #[serde(default)]
    working_hours: RawHours,
    #[serde(default)]
    registration: RawRegistration,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    escalation: Option<RawEscalation>,
    #[serde(default)]
    retention: Option<RawRetention>,
    #[serde(default)]
    residents: Option<RawResidents>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResidents {
    #[serde(default)]
    reply: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    callback: Option<Spanned<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    contact_days: Spanned<i64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    yellow_card: Spanned<String>,
    red_card: Spanned<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    warning_percent: u32,
    yellow_card_percent: u32,
    red_card_percent: u32,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClocks {
    register: Spanned<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    acknowledge: Spanned<String>,
    resolve: Spanned<String>,
    verify: Spanned<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHours {
    #[serde(default)]
    default: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    organisations: BTreeMap<Spanned<String>, Spanned<Vec<String>>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRegistration {
    #[serde(default)]
    manual: Vec<Spanned<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    category: Spanned<String>,
    #[serde(default)]
    region: Option<Spanned<String>>,
    unit: Spanned<String>,
    #[serde(default)]
    tier: Option<Spanned<String>>,
    #[serde(default)]
    acknowledge: Option<Spanned<String>>,
    #[serde(default)]
    resolve: Option<Spanned<String>>,
    #[serde(default)]
    verify: Option<Spanned<String>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

impl Policy {
    /// Load and validate a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PolicyError::Read { file: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    /// Parse and validate policy text; errors name the file, line and problem.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyError> {
        let at = |offset: usize, problem: String| PolicyError::Invalid {
            file: path.to_owned(),
            line: line_of(text, offset),
            problem,
        };
        let raw: RawPolicy =
            toml::from_str(text).map_err(|e| at(e.span().map_or(0, |s| s.start), e.message().to_owned()))?;
        let limit =
            |value: &Spanned<String>| Limit::parse(value.get_ref()).map_err(|e| at(value.span().start, e.to_string()));
        let tier = |value: &Spanned<String>| {
            Tier::parse(value.get_ref()).ok_or_else(|| {
                at(
                    value.span().start,
                    format!("{:?} is not a tier: CRITICAL, URGENT, NORMAL or COMPLEX", value.get_ref()),
                )
            })
        };

        if raw.version.get_ref().trim().is_empty() {
            return Err(at(raw.version.span().start, "version must not be empty".into()));
        }

        let thresholds = match &raw.thresholds {
            None => Thresholds { warning_percent: 70, yellow_card_percent: 100, red_card_percent: 200 },
            Some(spanned) => {
                let t = spanned.get_ref();
                if !(0 < t.warning_percent
                    && t.warning_percent < t.yellow_card_percent
                    && t.yellow_card_percent <= t.red_card_percent
                    && t.red_card_percent <= 10_000)
                {
                    return Err(at(
                        spanned.span().start,
                        "thresholds must satisfy 0 < warning_percent < yellow_card_percent <= red_card_percent <= 10000".into(),
                    ));
                }
                Thresholds {
                    warning_percent: t.warning_percent,
                    yellow_card_percent: t.yellow_card_percent,
                    red_card_percent: t.red_card_percent,
                }
            }
        };

        let mut tiers = BTreeMap::new();
        for (name, limits) in &raw.tiers {
            let tier = tier(name)?;
            tiers.insert(
                tier,
                TierLimits {
                    acknowledge: limit(&limits.acknowledge)?,
                    resolve: limit(&limits.resolve)?,
                    verify: limit(&limits.verify)?,
                },
            );
        }
        for tier in Tier::ALL {
            if !tiers.contains_key(&tier) {
                return Err(at(0, format!("tier {tier} is not defined: add [tiers.{tier}]")));
            }
        }

        let hours = |value: &Spanned<Vec<String>>| {
            WorkingHours::parse(value.get_ref()).map_err(|e| at(value.span().start, e.to_string()))
        };
        let default_hours = match &raw.working_hours.default {
            Some(value) => hours(value)?,
            None => WorkingHours::default(),
        };
        let mut org_hours = BTreeMap::new();
        for (org, value) in &raw.working_hours.organisations {
            let code = OrgCode::parse(org.get_ref()).map_err(|e| at(org.span().start, format!("organisation {e}")))?;
            org_hours.insert(code, hours(value)?);
        }

        let mut manual_registration = BTreeSet::new();
        for code in &raw.registration.manual {
            let category = CategoryCode::parse(code.get_ref())
                .map_err(|e| at(code.span().start, format!("category {:?} {e}", code.get_ref())))?;
            manual_registration.insert(category);
        }

        let mut routes: Vec<Route> = Vec::new();
        for spanned in &raw.routes {
            let raw_route = spanned.get_ref();
            let line = line_of(text, spanned.span().start);
            let category_text = raw_route.category.get_ref();
            let category = if category_text.len() == 2 && category_text.bytes().all(|b| b.is_ascii_digit()) {
                CategorySelector::Major(category_text.clone())
            } else {
                CategorySelector::Exact(CategoryCode::parse(category_text).map_err(|e| {
                    at(
                        raw_route.category.span().start,
                        format!("category {category_text:?} must be a 2-digit major or a 4-digit code: {e}"),
                    )
                })?)
            };
            let region = raw_route.region.as_ref().map(|r| r.get_ref().clone()).unwrap_or_default();
            if region.len() > 17 || !region.bytes().all(|b| b.is_ascii_digit()) {
                let offset = raw_route.region.as_ref().map_or(spanned.span().start, |r| r.span().start);
                return Err(at(offset, format!("region {region:?} must be a region-code prefix (digits)")));
            }
            let unit = OrgCode::parse(raw_route.unit.get_ref())
                .map_err(|e| at(raw_route.unit.span().start, format!("unit {e}")))?;
            let optional = |value: &Option<Spanned<String>>| value.as_ref().map(&limit).transpose();
            let route = Route {
                category,
                region,
                unit,
                tier: raw_route.tier.as_ref().map(&tier).transpose()?,
                acknowledge: optional(&raw_route.acknowledge)?,
                resolve: optional(&raw_route.resolve)?,
                verify: optional(&raw_route.verify)?,
                line,
            };
            if let Some(other) = routes.iter().find(|r| r.category == route.category && r.region == route.region) {
                return Err(at(
                    spanned.span().start,
                    format!("this route covers the same category and region as the route on line {}", other.line),
                ));
            }
            routes.push(route);
        }

        let level = |value: &Spanned<String>| match value.get_ref().as_str() {
            "township" => Ok(Level::Township),
            "county" => Ok(Level::County),
            other => Err(at(value.span().start, format!("{other:?} is not a level: township or county"))),
        };
        let escalation = match &raw.escalation {
            None => Escalation { yellow_card: Level::County, red_card: Level::County },
            Some(e) => Escalation { yellow_card: level(&e.yellow_card)?, red_card: level(&e.red_card)? },
        };
        let retention = match &raw.retention {
            None => None,
            Some(r) => {
                let days = *r.contact_days.get_ref();
                if !(1..=Retention::MAX_DAYS as i64).contains(&days) {
                    return Err(at(
                        r.contact_days.span().start,
                        format!("contact_days must be 1-{} days, got {days}", Retention::MAX_DAYS),
                    ));
                }
                Some(Retention { contact_days: days as u32 })
            }
        };
        let mut residents = Residents::default();
        if let Some(raw_residents) = &raw.residents {
            for (kind, value) in &raw_residents.reply {
                let kind_of = RequestKind::parse(kind.get_ref()).ok_or_else(|| {
                    let kinds: Vec<&str> = RequestKind::ALL.iter().map(|k| k.as_str()).collect();
                    at(
                        kind.span().start,
                        format!("{:?} is not a kind of request: {}", kind.get_ref(), kinds.join(", ")),
                    )
                })?;
                residents.reply.insert(kind_of, limit(value)?);
            }
            if let Some(callback) = &raw_residents.callback {
                residents.callback = limit(callback)?;
            }
        }
        let register = limit(&raw.clocks.register)?;
        let digest = hex::encode(Sha256::digest(text.as_bytes()))[..12].to_owned();
        Ok(Policy {
            version: raw.version.into_inner(),
            digest,
            tiers,
            register,
            thresholds,
            default_hours,
            hours: org_hours,
            manual_registration,
            routes,
            escalation,
            retention,
            residents,
        })
    }
}

//! The dispatch policy and the working calendar, loaded once at start.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use gridcase_calendar::{Calendar, YearTable};
use gridcase_policy::Policy;

/// Where the dispatch policy and the working calendar are.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Dispatch policy file (tiers, routes, thresholds, escalation).
    #[arg(long, env = "GRIDCASE_POLICY", default_value = "deploy/policy/policy.toml")]
    pub policy: PathBuf,

    /// Directory of working-calendar year files (2025.toml, 2026.toml, …).
    #[arg(long, env = "GRIDCASE_CALENDAR_DIR", default_value = "deploy/calendar")]
    pub calendar_dir: PathBuf,
}

impl PolicyArgs {
    /// Load and validate both; errors name the file and line.
    pub fn load(&self) -> anyhow::Result<(Policy, Calendar)> {
        let policy = Policy::load(&self.policy).context("loading the dispatch policy")?;
        let years = YearTable::load_dir(&self.calendar_dir).context("loading the working calendar")?;
        let calendar = Calendar::new(Arc::new(years), policy.default_hours.clone());
        tracing::info!(
            policy = %policy.stamp(),
            routes = policy.routes.len(),
            calendar_years = ?calendar.years().years().map(|y| y.year).collect::<Vec<_>>(),
            "dispatch policy and calendar loaded"
        );
        Ok((policy, calendar))
    }
}

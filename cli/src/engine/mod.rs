//! Plan and apply.
//!
//! `read` finds the stack's resources by their deterministic names and tags; `desired::desired`
//! says what the config wants; `plan::diff` compares the two without I/O; `apply` carries a
//! plan out wave by wave. Apply re-plans each wave against fresh ids, so a run that was killed
//! half-way is finished by the next run: every step is "make it so", never "do this once".
//! Every kind is handled through its [`kinds::Resource`] impl, listed in `kinds`.

pub mod apply;
mod converge;
pub mod desired;
pub mod kinds;
pub mod model;
pub mod plan;

use std::collections::BTreeMap;

use futures::future;

pub use apply::{Applied, apply, delete};
pub use converge::{Serving, converge};

use crate::aws::{AwsError, Clients};
use crate::build::Artifact;
use crate::config::Config;
use crate::names::Target;
use model::{Kind, LiveState, Spec};
use plan::Plan;

/// Reads everything of the stack that exists, every kind at once.
pub async fn read(
    clients: &Clients,
    config: &Config,
    desired: &[Spec],
) -> Result<LiveState, AwsError> {
    let names = config.names();
    let names = &names;
    let parts = future::try_join_all(Kind::ALL.map(|kind| async move {
        let expected: Vec<String> = desired
            .iter()
            .filter(|s| s.kind() == kind)
            .map(|s| s.id().name)
            .collect();
        let mut part = LiveState::default();
        kind.read(clients, names, &expected, &mut part).await?;
        Ok::<_, AwsError>(part)
    }))
    .await?;
    let mut live = LiveState::default();
    for part in parts {
        live.resources.extend(part.resources);
        live.foreign.extend(part.foreign);
    }
    Ok(live)
}

/// Refuses, before the first change, a stack the account cannot take as it is: resources
/// with the stack's names but not its tags, or access logs without the account's logging role
/// (which the config did not ask wsctl to set).
pub fn refuse(
    config: &Config,
    target: &Target,
    live: &LiveState,
) -> Result<(), crate::error::Error> {
    use crate::config::AccountRole;
    if !live.foreign.is_empty() {
        return Err(crate::error::Error::Conflict(live.foreign.clone()));
    }
    if let Some(logs) = &config.access_logs
        && logs.account_role() == AccountRole::Existing
        && live.logging_role().is_none()
    {
        return Err(crate::error::Error::NoLoggingRole {
            region: target.region.clone(),
            role: crate::aws::account::LOGGING_ROLE,
        });
    }
    Ok(())
}

/// Reads and checks `path` as every command needs it: the config's own rules, then the limits
/// only the stack built from it shows ([`desired::size_problems`]). Nothing reaches AWS before.
pub fn load_config(path: &std::path::Path) -> Result<Config, crate::config::ConfigError> {
    let config = Config::load(path)?;
    let problems = desired::size_problems(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(crate::config::ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Refuses `plan` when it deletes (or replaces) a table with DynamoDB's deletion protection
/// on: DeleteTable would be refused half-way, so the whole run is refused before it starts.
/// `doing` names the run and `then` what to do once the protection is off.
pub fn refuse_protected(
    plan: &plan::Plan,
    live: &LiveState,
    doing: &'static str,
    then: &'static str,
) -> Result<(), crate::error::Error> {
    let tables: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, plan::Action::Delete | plan::Action::Replace(_)))
        .filter(|c| {
            matches!(
                live.resources.get(&c.id).map(|l| &l.spec),
                Some(model::Spec::Table(t)) if t.deletion_protection
            )
        })
        .map(|c| c.id.name.clone())
        .collect();
    if tables.is_empty() {
        return Ok(());
    }
    Err(crate::error::Error::Protected {
        doing,
        tables,
        then,
    })
}

/// Plan for the whole stack (all kinds at once), as `plan` and `status` show it.
pub fn full_plan(
    config: &Config,
    target: &Target,
    artifacts: &BTreeMap<String, Artifact>,
    live: &LiveState,
) -> Plan {
    let wanted = desired::desired(config, target, artifacts);
    plan::diff(&wanted, live, &Kind::ALL)
}

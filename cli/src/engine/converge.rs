//! A deploy from start to end: what `deploy` and `dev` both run.

use std::collections::BTreeMap;

use super::desired::Target;
use super::plan::Change;
use crate::aws::Clients;
use crate::build::Artifact;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;

/// Makes the account match the config: read, refuse on foreign namesakes, apply. Returns the
/// target with the API's id and the changes made.
pub async fn converge(
    config: &Config,
    clients: &Clients,
    mut target: Target,
    artifacts: &BTreeMap<String, Artifact>,
    printer: &Printer,
) -> Result<(Target, Vec<Change>), Error> {
    let probe = super::desired::desired(config, &target, artifacts);
    let live = super::read(clients, config, &probe).await?;
    // Refuse before the first change, so a conflict never leaves a half-made stack.
    if !live.foreign.is_empty() {
        return Err(Error::Conflict(live.foreign));
    }
    target.locate(&live);
    let plan = super::full_plan(config, &target, artifacts, &live);
    printer.note(format!(
        "Deploying {}/{} to account {} in {}: {} change(s).",
        config.stack,
        config.stage,
        target.account,
        target.region,
        plan.changes.len()
    ));
    let reporter = printer.reporter(plan.changes.len());
    let (applied, _, target) =
        super::apply(clients, config, target, artifacts, live, &reporter).await;
    reporter.finish();
    if !applied.failed.is_empty() {
        return Err(Error::Partial(applied.failed));
    }
    Ok((target, applied.done))
}

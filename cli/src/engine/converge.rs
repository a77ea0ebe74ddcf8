//! A deploy from start to end: what `deploy` and `dev` both run.

use std::collections::BTreeMap;

use super::plan::{Change, Plan};
use crate::aws::{Clients, apigw};
use crate::build::Artifact;
use crate::config::Config;
use crate::error::Error;
use crate::names::Target;
use crate::output::Printer;

/// What a deploy makes sure of once the changes are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Serving {
    /// That the stage serves what changed (a deployment of it), as on AWS.
    Checked,
    /// Nothing: no client connects through the stage (`wsctl dev` serves its own gateway from
    /// the control plane).
    NotChecked,
}

/// Makes the account match the config: read, refuse on foreign namesakes, let `confirm` see
/// the plan (and refuse it), apply, and check the stage serves what changed as `serving`
/// says. Returns the target with the API's id and the changes made.
pub async fn converge(
    config: &Config,
    clients: &Clients,
    mut target: Target,
    artifacts: &BTreeMap<String, Artifact>,
    printer: &Printer,
    serving: Serving,
    confirm: impl FnOnce(&Plan) -> Result<(), Error>,
) -> Result<(Target, Vec<Change>), Error> {
    let probe = super::desired::desired(config, &target, artifacts);
    let live = super::read(clients, config, &probe).await?;
    // Refuse before the first change, so a conflict never leaves a half-made stack.
    super::refuse(config, &target, &live)?;
    target.locate(&live);
    let plan = super::full_plan(config, &target, artifacts, &live);
    crate::aws::lambda::room_to_reserve(clients, &probe, &live).await??;
    super::refuse_protected(&plan, &live, "the deploy", "deploy this change")?;
    confirm(&plan)?;
    let deploys = serving == Serving::Checked && plan.changes.iter().any(needs_deployment);
    let before = match live.api_id() {
        Some(api) if deploys => apigw::served(clients, api, &config.stage).await?,
        _ => apigw::Served::default(),
    };
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
    for change in &applied.done {
        if let Some(note) = &change.note {
            printer.note(format!("note: {}: {note}", change.id));
        }
    }
    if !applied.failed.is_empty() {
        return Err(Error::Partial(applied.failed));
    }
    if let Some(api) = target.api_id.as_deref()
        && serving == Serving::Checked
        && applied.done.iter().any(needs_deployment)
    {
        apigw::confirm_deployment(clients, api, &config.stage, &before, &|n| printer.note(n))
            .await?;
    }
    Ok((target, applied.done))
}

fn needs_deployment(change: &Change) -> bool {
    change.id.kind.needs_deployment(&change.action)
}

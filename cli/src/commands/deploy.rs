use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::args::BuildArgs;
use crate::aws::Clients;
use crate::build::Artifact;
use crate::config::Config;
use crate::engine;
use crate::engine::desired::Target;
use crate::engine::plan::Change;
use crate::error::Error;
use crate::output::Printer;

pub async fn run(
    config: &Config,
    aws: &crate::aws::AwsArgs,
    args: &BuildArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let artifacts = super::artifacts(config, args, printer).await?;
    let started = Instant::now();
    let (clients, target) = super::connect(config, aws).await?;
    let (target, done) = converge(config, &clients, target, &artifacts, printer).await?;
    let seconds = started.elapsed().as_secs_f64();
    let (url, connections) = super::urls(&target, &config.stage).unwrap_or_default();
    if printer.json() {
        printer.result_json(&json!({
            "stack": config.stack, "stage": config.stage, "changes": done,
            "url": url, "connections_url": connections, "seconds": seconds,
        }));
    } else {
        let what = if done.is_empty() {
            "no changes".to_string()
        } else {
            format!("{} change(s)", done.len())
        };
        printer.result(format!(
            "Deployed {}/{}: {what} in {seconds:.1} s.",
            config.stack, config.stage
        ));
        printer.result(format!(
            "  WebSocket URL:    {url}\n  @connections URL: {connections}"
        ));
    }
    Ok(())
}

/// Makes the account match the config: read, refuse on foreign namesakes, apply. Returns the
/// target with the API's id and the changes made.
pub async fn converge(
    config: &Config,
    clients: &Clients,
    mut target: Target,
    artifacts: &BTreeMap<String, Artifact>,
    printer: &Printer,
) -> Result<(Target, Vec<Change>), Error> {
    let probe = engine::desired::desired(config, &target, artifacts);
    let live = engine::read(clients, config, &probe).await?;
    // Refuse before the first change, so a conflict never leaves a half-made stack.
    if !live.foreign.is_empty() {
        return Err(Error::Conflict(live.foreign));
    }
    target.api_id = live.api_id().map(str::to_string);
    let plan = engine::full_plan(config, &target, artifacts, &live);
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
        engine::apply(clients, config, target, artifacts, live, &reporter).await;
    reporter.finish();
    if !applied.failed.is_empty() {
        return Err(Error::Partial(applied.failed));
    }
    Ok((target, applied.done))
}

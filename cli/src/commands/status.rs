use serde_json::json;

use crate::config::Config;
use crate::engine;
use crate::engine::model::Spec;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::Stack;

/// What exists, where it answers, and how it differs from the config. Does not build: code
/// is compared with the last build's zips when there are any.
pub async fn run(
    config: &Config,
    aws: &crate::aws::AwsArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let stack = Stack::open(config, aws).await?;
    let (config, profile) = &super::as_served(config, &stack, printer).await?;
    let mut artifacts = crate::build::existing(config, *profile);
    let (clients, mut target) = (&stack.clients, stack.target.clone());
    let probe = engine::desired::desired(config, &target, &artifacts);
    let live = engine::read(clients, config, &probe).await?;
    target.locate(&live);
    // Without a local build, code cannot be compared: take what is deployed as current.
    for logical in config.functions.keys() {
        if artifacts.contains_key(logical) {
            continue;
        }
        let name = config.names().function(logical);
        if let Some(Spec::Function(f)) = live
            .resources
            .get(&engine::model::ResourceId {
                kind: engine::model::Kind::Function,
                name,
            })
            .map(|l| &l.spec)
        {
            artifacts.insert(
                logical.clone(),
                crate::build::Artifact {
                    zip: Default::default(),
                    sha256: f.code_sha256.clone(),
                    bytes: 0,
                    architecture: f.architecture.clone(),
                    rebuilt: false,
                },
            );
        }
    }
    let plan = engine::full_plan(config, &target, &artifacts, &live);
    let urls = stack
        .find_gateway()
        .await?
        .map(|g| (g.websocket.clone(), g.connections_url()));
    let domain = stack.custom_domain().await?;
    let deployed = !live.resources.is_empty();
    if printer.json() {
        let resources: Vec<_> = live
            .resources
            .iter()
            .map(|(id, l)| json!({"kind": id.kind, "name": id.name, "id": l.physical_id}))
            .collect();
        printer.result_json(&json!({
            "stack": config.stack, "stage": config.stage, "account": target.account, "region": target.region,
            "deployed": deployed, "url": urls.as_ref().map(|u| &u.0), "connections_url": urls.as_ref().map(|u| &u.1),
            "resources": resources, "foreign": live.foreign, "in_sync": plan.is_empty(), "drift": plan.changes,
            "domain": domain.as_ref().map(|d| d.json()),
        }));
        return Ok(());
    }
    if !deployed {
        printer.result(format!(
            "{}/{} is not deployed in account {} ({}). Run `wsctl deploy`.",
            config.stack, config.stage, target.account, target.region
        ));
        return Ok(());
    }
    printer.result(format!(
        "{}/{} in account {} ({}): {} resource(s)",
        config.stack,
        config.stage,
        target.account,
        target.region,
        live.resources.len()
    ));
    for (id, l) in &live.resources {
        let physical = l
            .physical_id
            .as_deref()
            .filter(|p| *p != id.name)
            .map(|p| format!("  ({p})"))
            .unwrap_or_default();
        printer.result(format!("  {:<12} {}{physical}", id.kind.label(), id.name));
    }
    if let Some((url, connections)) = urls {
        printer.result(format!(
            "  WebSocket URL:    {url}\n  @connections URL: {connections}"
        ));
    }
    if let (Some(d), Some(c)) = (&domain, &config.domain) {
        printer.result(d.lines(&c.name));
    }
    for f in &live.foreign {
        printer.result(format!(
            "  ! {f} exists without this stack's tags (left alone)"
        ));
    }
    if plan.is_empty() {
        printer.result("In sync with the config.");
    } else {
        printer.result(format!(
            "Drifted from the config:\n{}",
            plan.to_string().trim_end()
        ));
    }
    Ok(())
}

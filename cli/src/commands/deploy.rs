use std::time::Instant;

use serde_json::json;

use crate::args::DeployArgs;
use crate::build::Profile;
use crate::config::Config;
use crate::engine;
use crate::engine::plan::Plan;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::Stack;

pub async fn run(
    config: &Config,
    aws: &crate::aws::AwsArgs,
    args: &DeployArgs,
    printer: &Printer,
) -> Result<(), Error> {
    if args.print_policy || args.print_boundary {
        let which = if args.print_boundary {
            crate::aws::policy::Printed::Boundary
        } else {
            crate::aws::policy::Printed::Deployer
        };
        return crate::aws::policy::print(config, aws, which, printer).await;
    }
    let artifacts = super::artifacts(config, &args.build, Profile::Lambda, printer).await?;
    let started = Instant::now();
    let stack = Stack::open(config, aws).await?;
    let (clients, target) = (&stack.clients, stack.target.clone());
    let confirm = |plan: &Plan| {
        let dropping = plan.dropping();
        if dropping.is_empty() || args.yes {
            return Ok(());
        }
        let list = dropping
            .iter()
            .map(|c| {
                format!(
                    "  {} {}: {}",
                    c.action.symbol(),
                    c.id,
                    c.drops.unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let question = format!(
            "{}\n{} change(s) of {}/{} drop connected clients or stored data:\n{list}\nMake them?",
            plan.to_string().trim_end(),
            dropping.len(),
            config.stack,
            config.stage
        );
        super::confirm(config, &question, || {
            Error::Unconfirmed(format!(
                "deploy would make {} change(s) that drop connected clients or stored data, and needs confirmation:\n{list}\nnothing was changed\nhint: review `wsctl plan`, then pass --yes to make them non-interactively",
                dropping.len()
            ))
        })
    };
    let serving = engine::Serving::Checked;
    let (_, done) = engine::converge(
        config, clients, target, &artifacts, printer, serving, confirm,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    // The deploy is done: a failed lookup of its URLs is said, not turned into a failure.
    let (url, connections) = match stack.find_gateway().await {
        Ok(gateway) => gateway
            .map(|g| (g.websocket.clone(), g.connections_url()))
            .unwrap_or_default(),
        Err(e) => {
            printer.note(format!("the stage's URLs could not be read: {e}"));
            Default::default()
        }
    };
    let domain = match stack.custom_domain().await {
        Ok(domain) => domain,
        Err(e) => {
            printer.note(format!("the custom domain could not be read: {e}"));
            None
        }
    };
    if printer.json() {
        printer.result_json(&json!({
            "stack": config.stack, "stage": config.stage, "changes": done,
            "url": url, "connections_url": connections, "seconds": seconds,
            "domain": domain.as_ref().map(|d| d.json()),
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
        if let (Some(d), Some(c)) = (&domain, &config.domain) {
            printer.result(d.lines(&c.name));
        }
    }
    Ok(())
}

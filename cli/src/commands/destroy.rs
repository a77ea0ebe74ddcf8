use serde_json::json;

use crate::config::Config;
use crate::engine;
use crate::engine::Applied;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::Stack;

/// Deletes everything carrying the stack's tags; resources without them are never touched.
pub async fn run(
    config: &Config,
    aws: &crate::aws::AwsArgs,
    yes: bool,
    printer: &Printer,
) -> Result<(), Error> {
    let stack = Stack::open(config, aws).await?;
    let (clients, mut target) = (&stack.clients, stack.target.clone());
    let live = engine::read(clients, config, &[]).await?;
    target.locate(&live);
    let plan = engine::plan::diff(&[], &live, &engine::model::Kind::ALL);
    if plan.is_empty() {
        if printer.json() {
            printer
                .result_json(&json!({"stack": config.stack, "stage": config.stage, "deleted": []}));
        } else {
            printer.result(format!(
                "Nothing to destroy: no resource of {}/{} exists.",
                config.stack, config.stage
            ));
        }
        return Ok(());
    }
    engine::refuse_protected(&plan, &live, "destroy", "run `wsctl destroy` again")?;
    if !yes {
        let question = format!(
            "{}\nDelete these {} resource(s) of {}/{}?",
            plan.to_string().trim_end(),
            plan.changes.len(),
            config.stack,
            config.stage
        );
        super::confirm(config, &question, || Error::Usage {
            usage: format!(
                "destroy would delete {} resource(s) and needs confirmation\nhint: pass --yes to confirm non-interactively",
                plan.changes.len()
            ),
        })?;
    }
    let reporter = printer.reporter(plan.changes.len());
    let mut applied = Applied::default();
    let mut live = live;
    engine::delete(
        clients,
        &target,
        &mut live,
        plan.changes,
        &reporter,
        &mut applied,
    )
    .await;
    reporter.finish();
    if !applied.failed.is_empty() {
        return Err(Error::Partial(applied.failed));
    }
    if printer.json() {
        printer.result_json(
            &json!({"stack": config.stack, "stage": config.stage, "deleted": applied.done}),
        );
    } else {
        printer.result(format!(
            "Destroyed {}/{}: {} resource(s) deleted.",
            config.stack,
            config.stage,
            applied.done.len()
        ));
    }
    Ok(())
}

use serde_json::json;

use crate::args::BuildArgs;
use crate::config::Config;
use crate::engine;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::Stack;

pub async fn run(
    config: &Config,
    aws: &crate::aws::AwsArgs,
    args: &BuildArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let stack = Stack::open(config, aws).await?;
    let (config, profile) = &super::as_served(config, &stack, printer).await?;
    let artifacts = super::artifacts(config, args, *profile, printer).await?;
    let (clients, mut target) = (&stack.clients, stack.target.clone());
    let probe = engine::desired::desired(config, &target, &artifacts);
    let live = engine::read(clients, config, &probe).await?;
    engine::refuse(config, &target, &live)?;
    target.locate(&live);
    let plan = engine::full_plan(config, &target, &artifacts, &live);
    if printer.json() {
        printer.result_json(
            &json!({ "stack": config.stack, "stage": config.stage, "changes": plan.changes }),
        );
    } else {
        printer.result(plan.to_string().trim_end());
    }
    Ok(())
}

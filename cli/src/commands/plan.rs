use std::fmt::Display;

use serde::Serialize;

use crate::args::BuildArgs;
use crate::config::Config;
use crate::engine;
use crate::engine::plan::Plan;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::Stack;

pub async fn run(
    config: &Config,
    aws: &crate::aws::AwsArgs,
    args: &BuildArgs,
    printer: &Printer,
) -> Result<Planned, Error> {
    let stack = Stack::open(config, aws).await?;
    let (config, profile) = &super::as_served(config, &stack, printer).await?;
    let artifacts = super::artifacts(config, args, *profile, printer).await?;
    let (clients, mut target) = (&stack.clients, stack.target.clone());
    let probe = engine::desired::desired(config, &target, &artifacts);
    let live = engine::read(clients, config, &probe).await?;
    engine::refuse(config, &target, &live)?;
    target.locate(&live);
    let plan = engine::full_plan(config, &target, &artifacts, &live);
    Ok(Planned {
        stack: config.stack.clone(),
        stage: config.stage.clone(),
        changes: plan,
    })
}

/// `wsctl plan`'s answer.
#[derive(Debug, Serialize)]
pub struct Planned {
    stack: String,
    stage: String,
    #[serde(serialize_with = "Plan::serialize_changes")]
    changes: Plan,
}

impl Display for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.changes.to_string().trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let planned = Planned {
            stack: "chat".into(),
            stage: "dev".into(),
            changes: Plan::default(),
        };
        assert_eq!(
            crate::output::forms(&planned),
            (
                "{\n  \"changes\": [],\n  \"stack\": \"chat\",\n  \"stage\": \"dev\"\n}".into(),
                "No changes: the stack matches the config.".into()
            )
        );
    }
}

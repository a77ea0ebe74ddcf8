use std::fmt::Display;

use serde::Serialize;

use crate::config::Config;
use crate::engine;
use crate::engine::Applied;
use crate::engine::plan::Change;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::Stack;

/// Deletes everything carrying the stack's tags; resources without them are never touched.
pub async fn run(
    config: &Config,
    aws: &crate::aws::AwsArgs,
    yes: bool,
    printer: &Printer,
) -> Result<Destroyed, Error> {
    let stack = Stack::open(config, aws).await?;
    let (clients, mut target) = (&stack.clients, stack.target.clone());
    let live = engine::read(clients, config, &[]).await?;
    target.locate(&live);
    let plan = engine::plan::diff(&[], &live, &engine::model::Kind::ALL);
    let destroyed = |deleted| Destroyed {
        stack: config.stack.clone(),
        stage: config.stage.clone(),
        deleted,
    };
    if plan.is_empty() {
        return Ok(destroyed(Vec::new()));
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
    Ok(destroyed(applied.done))
}

/// `wsctl destroy`'s answer.
#[derive(Debug, Serialize)]
pub struct Destroyed {
    stack: String,
    stage: String,
    deleted: Vec<Change>,
}

impl Display for Destroyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Destroyed { stack, stage, .. } = self;
        match self.deleted.len() {
            0 => write!(
                f,
                "Nothing to destroy: no resource of {stack}/{stage} exists."
            ),
            n => write!(f, "Destroyed {stack}/{stage}: {n} resource(s) deleted."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let nothing = Destroyed {
            stack: "chat".into(),
            stage: "dev".into(),
            deleted: vec![],
        };
        assert_eq!(
            crate::output::forms(&nothing),
            (
                "{\n  \"deleted\": [],\n  \"stack\": \"chat\",\n  \"stage\": \"dev\"\n}".into(),
                "Nothing to destroy: no resource of chat/dev exists.".into()
            )
        );
    }
}

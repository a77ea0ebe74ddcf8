use std::fmt::Display;
use std::time::Instant;

use serde::Serialize;

use crate::args::DeployArgs;
use crate::build::Profile;
use crate::config::Config;
use crate::engine;
use crate::engine::plan::{Change, Plan};
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{CustomDomain, Stack};

pub async fn run(
    config: &Config,
    aws: &crate::aws::AwsArgs,
    args: &DeployArgs,
    printer: &Printer,
) -> Result<Deployed, Error> {
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
    let publish_endpoint = match config.publish_endpoint {
        true => match stack.publish_endpoint().await {
            Ok(url) => url,
            Err(e) => {
                printer.note(format!("the publish endpoint's URL could not be read: {e}"));
                None
            }
        },
        false => None,
    };
    let dashboard = (config.dashboard && !stack.emulated()).then(|| {
        crate::aws::cloudwatch::dashboard::console_url(
            &stack.target.region,
            &stack.names.dashboard(),
        )
    });
    Ok(Deployed {
        stack: config.stack.clone(),
        stage: config.stage.clone(),
        changes: done,
        url,
        connections_url: connections,
        seconds,
        domain,
        dashboard,
        publish_endpoint,
    })
}

/// `wsctl deploy`'s answer.
#[derive(Debug, Serialize)]
pub struct Deployed {
    stack: String,
    stage: String,
    /// What was done, in the order it finished.
    changes: Vec<Change>,
    url: String,
    connections_url: String,
    seconds: f64,
    domain: Option<CustomDomain>,
    /// The stage's dashboard in the AWS console, when the config has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard: Option<String>,
    /// The URL backends publish through (`publish_endpoint: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_endpoint: Option<String>,
}

impl Display for Deployed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.changes.is_empty() {
            "no changes".to_string()
        } else {
            format!("{} change(s)", self.changes.len())
        };
        write!(
            f,
            "Deployed {}/{}: {what} in {:.1} s.\n  WebSocket URL:    {}\n  @connections URL: {}",
            self.stack, self.stage, self.seconds, self.url, self.connections_url
        )?;
        if let Some(endpoint) = &self.publish_endpoint {
            write!(f, "\n  Publish endpoint: {endpoint}")?;
        }
        if let Some(dashboard) = &self.dashboard {
            write!(f, "\n  Dashboard:        {dashboard}")?;
        }
        if let Some(domain) = &self.domain {
            write!(f, "\n{domain}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{Kind, ResourceId};
    use crate::engine::plan::Action;

    /// `wsctl deploy --output json` as scripts read it.
    #[test]
    fn both_forms_are_pinned() {
        let deployed = Deployed {
            stack: "chat".into(),
            stage: "dev".into(),
            changes: vec![Change {
                id: ResourceId {
                    kind: Kind::Table,
                    name: "chat-dev-connections".into(),
                },
                action: Action::Create,
                drops: None,
                after: None,
                note: None,
            }],
            url: "wss://abc.execute-api.eu-west-1.amazonaws.com/dev".into(),
            connections_url: "https://abc.execute-api.eu-west-1.amazonaws.com/dev/@connections"
                .into(),
            seconds: 12.25,
            domain: None,
            dashboard: None,
            publish_endpoint: None,
        };
        let (json, text) = crate::output::forms(&deployed);
        assert_eq!(
            json,
            r#"{
  "changes": [
    {
      "action": "create",
      "drops": null,
      "kind": "table",
      "name": "chat-dev-connections"
    }
  ],
  "connections_url": "https://abc.execute-api.eu-west-1.amazonaws.com/dev/@connections",
  "domain": null,
  "seconds": 12.25,
  "stack": "chat",
  "stage": "dev",
  "url": "wss://abc.execute-api.eu-west-1.amazonaws.com/dev"
}"#
        );
        assert_eq!(
            text,
            "Deployed chat/dev: 1 change(s) in 12.2 s.\n  WebSocket URL:    wss://abc.execute-api.eu-west-1.amazonaws.com/dev\n  @connections URL: https://abc.execute-api.eu-west-1.amazonaws.com/dev/@connections"
        );
    }
}

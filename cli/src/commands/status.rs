use std::fmt::Display;

use serde::Serialize;

use crate::aws::cloudwatch::alarm::AlarmState;
use crate::config::Config;
use crate::engine;
use crate::engine::model::{Kind, ResourceId, Spec};
use crate::engine::plan::Plan;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{CustomDomain, Stack};

/// What exists, where it answers, and how it differs from the config. Does not build: code
/// is compared with the last build's zips when there are any.
pub async fn run(
    config: &Config,
    aws: &crate::aws::AwsArgs,
    printer: &Printer,
) -> Result<Status, Error> {
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
    // Alarms are read only when the config has them: a stage without any makes no call.
    let mut alarms = match config.alarms {
        Some(_) => crate::aws::cloudwatch::alarm::states(clients, &config.names()).await?,
        None => Vec::new(),
    };
    // Only the stack's own: a namesake without its tags is listed under `foreign`.
    alarms.retain(|a| {
        live.resources.contains_key(&ResourceId {
            kind: Kind::Alarm,
            name: a.name.clone(),
        })
    });
    let publish_endpoint = live
        .resources
        .iter()
        .find(|(id, _)| id.kind == Kind::FunctionUrl)
        .and_then(|(_, l)| l.physical_id.clone());
    Ok(Status {
        stack: config.stack.clone(),
        stage: config.stage.clone(),
        account: target.account,
        region: target.region,
        deployed: !live.resources.is_empty(),
        url: urls.as_ref().map(|u| u.0.clone()),
        connections_url: urls.map(|u| u.1),
        publish_endpoint,
        alarms,
        resources: live
            .resources
            .iter()
            .map(|(id, l)| Resource {
                kind: id.kind,
                name: id.name.clone(),
                id: l.physical_id.clone(),
            })
            .collect(),
        foreign: live.foreign,
        in_sync: plan.is_empty(),
        drift: plan,
        domain,
    })
}

/// `wsctl status`'s answer.
#[derive(Debug, Serialize)]
pub struct Status {
    stack: String,
    stage: String,
    account: String,
    region: String,
    deployed: bool,
    url: Option<String>,
    connections_url: Option<String>,
    /// The publish endpoint's URL (`publish_endpoint: true`), when it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_endpoint: Option<String>,
    /// The stack's alarms and their states, when the config has `alarms:`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alarms: Vec<AlarmState>,
    resources: Vec<Resource>,
    /// Resources with the stack's names but not its tags, left alone.
    foreign: Vec<ResourceId>,
    in_sync: bool,
    #[serde(serialize_with = "Plan::serialize_changes")]
    drift: Plan,
    domain: Option<CustomDomain>,
}

#[derive(Debug, Serialize)]
struct Resource {
    kind: Kind,
    name: String,
    id: Option<String>,
}

impl Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Status {
            stack,
            stage,
            account,
            region,
            ..
        } = self;
        if !self.deployed {
            return write!(
                f,
                "{stack}/{stage} is not deployed in account {account} ({region}). Run `wsctl deploy`."
            );
        }
        write!(
            f,
            "{stack}/{stage} in account {account} ({region}): {} resource(s)",
            self.resources.len()
        )?;
        for r in &self.resources {
            let physical =
                r.id.as_deref()
                    .filter(|p| *p != r.name)
                    .map(|p| format!("  ({p})"))
                    .unwrap_or_default();
            write!(f, "\n  {:<12} {}{physical}", r.kind.label(), r.name)?;
        }
        if let (Some(url), Some(connections)) = (&self.url, &self.connections_url) {
            write!(
                f,
                "\n  WebSocket URL:    {url}\n  @connections URL: {connections}"
            )?;
        }
        if let Some(endpoint) = &self.publish_endpoint {
            write!(f, "\n  Publish endpoint: {endpoint}")?;
        }
        if !self.alarms.is_empty() {
            let firing: Vec<&AlarmState> =
                self.alarms.iter().filter(|a| a.state == "ALARM").collect();
            let ok = self.alarms.iter().filter(|a| a.state == "OK").count();
            write!(
                f,
                "\n  Alarms:           {} in alarm, {ok} OK, {} without enough data",
                firing.len(),
                self.alarms.len() - firing.len() - ok
            )?;
            for a in firing {
                let since = a.since.as_deref().unwrap_or("?");
                write!(f, "\n    ! {} since {since}: {}", a.name, a.reason)?;
            }
        }
        if let Some(domain) = &self.domain {
            write!(f, "\n{domain}")?;
        }
        for foreign in &self.foreign {
            write!(
                f,
                "\n  ! {foreign} exists without this stack's tags (left alone)"
            )?;
        }
        if self.in_sync {
            write!(f, "\nIn sync with the config.")
        } else {
            write!(
                f,
                "\nDrifted from the config:\n{}",
                self.drift.to_string().trim_end()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let status = Status {
            stack: "chat".into(),
            stage: "dev".into(),
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            deployed: true,
            url: Some("wss://abc.execute-api.eu-west-1.amazonaws.com/dev".into()),
            connections_url: Some(
                "https://abc.execute-api.eu-west-1.amazonaws.com/dev/@connections".into(),
            ),
            publish_endpoint: None,
            alarms: vec![],
            resources: vec![Resource {
                kind: Kind::Api,
                name: "chat-dev".into(),
                id: Some("abc".into()),
            }],
            foreign: vec![],
            in_sync: true,
            drift: Plan::default(),
            domain: None,
        };
        let (json, text) = crate::output::forms(&status);
        assert_eq!(
            json,
            r#"{
  "account": "123456789012",
  "connections_url": "https://abc.execute-api.eu-west-1.amazonaws.com/dev/@connections",
  "deployed": true,
  "domain": null,
  "drift": [],
  "foreign": [],
  "in_sync": true,
  "region": "eu-west-1",
  "resources": [
    {
      "id": "abc",
      "kind": "api",
      "name": "chat-dev"
    }
  ],
  "stack": "chat",
  "stage": "dev",
  "url": "wss://abc.execute-api.eu-west-1.amazonaws.com/dev"
}"#
        );
        assert_eq!(
            text,
            "chat/dev in account 123456789012 (eu-west-1): 1 resource(s)\n  api          chat-dev  (abc)\n  WebSocket URL:    wss://abc.execute-api.eu-west-1.amazonaws.com/dev\n  @connections URL: https://abc.execute-api.eu-west-1.amazonaws.com/dev/@connections\nIn sync with the config."
        );

        // With the publish endpoint and alarms, one of them going off.
        let mut status = status;
        status.publish_endpoint = Some("https://u1.lambda-url.eu-west-1.on.aws/".into());
        let state = |name: &str, state: &str| AlarmState {
            name: name.into(),
            state: state.into(),
            reason: format!("{state} reason"),
            since: Some("2026-12-07T18:00:00Z".into()),
        };
        status.alarms = vec![
            state("chat-dev-failed-posts", "OK"),
            state("chat-dev-function-errors", "ALARM"),
            state("chat-dev-fanout-ms", "INSUFFICIENT_DATA"),
        ];
        let (_, text) = crate::output::forms(&status);
        assert!(
            text.contains("\n  Publish endpoint: https://u1.lambda-url.eu-west-1.on.aws/\n  Alarms:           1 in alarm, 1 OK, 1 without enough data\n    ! chat-dev-function-errors since 2026-12-07T18:00:00Z: ALARM reason\n"),
            "{text}"
        );
    }
}

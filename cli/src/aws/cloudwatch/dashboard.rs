//! The stage's dashboard. CloudWatch tags alarms and Contributor Insights rules only, not
//! dashboards ("TagResource", CloudWatch API Reference), so a dashboard is the stack's when its
//! first widget carries the stack's mark ([`Names::dashboard_mark`]).

use serde::Serialize;
use serde_json::Value;

use crate::aws::{AwsError, CallContext, Clients, found};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec};
use crate::names::Names;

/// Where the dashboard opens in the AWS console of `region`'s partition.
pub fn console_url(region: &str, name: &str) -> String {
    use wsctl_functions::partition::Partition;
    let host = match Partition::of(region) {
        Partition::Aws => "console.aws.amazon.com",
        Partition::AwsCn => "console.amazonaws.cn",
        Partition::AwsUsGov => "console.amazonaws-us-gov.com",
    };
    format!("https://{host}/cloudwatch/home?region={region}#dashboards/dashboard/{name}")
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DashboardSpec {
    pub name: String,
    /// The dashboard body ("Dashboard Body Structure and Syntax", CloudWatch API Reference).
    pub body: Value,
}

impl Resource for DashboardSpec {
    const LABEL: &'static str = "dashboard";
    /// After the API and the alarms: its widgets name the API's id and the alarms' ARNs.
    const WAVE: u8 = 9;

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(
        clients: &Clients,
        names: &Names,
        expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let name = names.dashboard();
        let Some(got) = found(
            clients
                .cloudwatch
                .get_dashboard()
                .dashboard_name(&name)
                .send()
                .await,
        )
        .ctx("GetDashboard", &name)?
        else {
            return Ok(());
        };
        let body: Value = got
            .dashboard_body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        let id = ResourceId {
            kind: Kind::Dashboard,
            name: name.clone(),
        };
        let marked = body["widgets"][0]["properties"]["markdown"]
            .as_str()
            .is_some_and(|m| m.contains(&names.dashboard_mark()));
        if !marked {
            if expected.contains(&name) {
                live.foreign.push(id);
            }
            return Ok(());
        }
        live.resources.insert(
            id,
            Live {
                spec: Spec::Dashboard(DashboardSpec { name, body }),
                physical_id: got.dashboard_arn,
            },
        );
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let put = cx
            .clients
            .cloudwatch
            .put_dashboard()
            .dashboard_name(&self.name)
            .dashboard_body(self.body.to_string())
            .send()
            .await
            .ctx("PutDashboard", &self.name)?;
        // A body CloudWatch takes with remarks is kept; the remarks are said.
        for message in put.dashboard_validation_messages.unwrap_or_default() {
            cx.reporter.note(&format!(
                "dashboard {}: {} ({})",
                self.name,
                message.message.unwrap_or_default(),
                message.data_path.unwrap_or_default()
            ));
        }
        Ok(None)
    }

    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        // DeleteDashboards answers ResourceNotFound for a name that does not exist.
        found(
            cx.clients
                .cloudwatch
                .delete_dashboards()
                .dashboard_names(name)
                .send()
                .await,
        )
        .ctx("DeleteDashboards", name)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_link_is_the_partitions() {
        assert_eq!(
            console_url("eu-west-1", "chat-dev"),
            "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/chat-dev"
        );
        assert!(console_url("cn-north-1", "x").starts_with("https://console.amazonaws.cn/"));
        assert!(
            console_url("us-gov-west-1", "x").starts_with("https://console.amazonaws-us-gov.com/")
        );
    }
}

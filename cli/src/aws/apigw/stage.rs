//! The stage: its settings, tags and access log, changed in place.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSpec {
    pub name: String,
    pub auto_deploy: bool,
    pub throttling_burst: i32,
    pub throttling_rate: f64,
    pub access_log: Option<AccessLog>,
    pub tags: Tags,
}

/// Where and how the stage writes its access log (API reference, AccessLogSettings).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessLog {
    /// The log group's ARN, without the `:*` of its streams.
    pub destination_arn: String,
    pub format: String,
    /// The account's CloudWatch Logs role API Gateway writes through: said in the plan, never
    /// compared (it is the account's setting, planned on its own).
    #[serde(skip)]
    pub role: String,
}

impl AccessLog {
    fn settings(access_log: Option<&AccessLog>) -> AccessLogSettings {
        // An empty AccessLogSettings turns access logging off.
        let builder = AccessLogSettings::builder();
        match access_log {
            Some(a) => builder
                .destination_arn(&a.destination_arn)
                .format(&a.format)
                .build(),
            None => builder.build(),
        }
    }
}

impl StageSpec {
    /// UpdateStage and stage tagging, in place: the stage keeps its deployment, its URL and
    /// its connected clients. `Ok(false)` when the endpoint lacks one of the calls.
    async fn update_in_place(
        &self,
        current: &StageSpec,
        cx: &Applying<'_>,
    ) -> Result<bool, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        let logs_changed = self.access_log != current.access_log;
        let settings_changed = self.auto_deploy != current.auto_deploy
            || self.throttling_burst != current.throttling_burst
            || self.throttling_rate != current.throttling_rate
            || logs_changed;
        if settings_changed {
            let sent = clients
                .apigw
                .update_stage()
                .api_id(api_id)
                .stage_name(&self.name)
                .auto_deploy(self.auto_deploy)
                .set_access_log_settings(
                    logs_changed.then(|| AccessLog::settings(self.access_log.as_ref())),
                )
                .default_route_settings(
                    RouteSettings::builder()
                        .throttling_burst_limit(self.throttling_burst)
                        .throttling_rate_limit(self.throttling_rate)
                        .build(),
                )
                .customize()
                .config_override(attempts())
                .send()
                .await;
            match sent {
                Err(e) if emulated(clients) && unimplemented(&e) => {
                    cx.reporter.note(
                        "the endpoint does not implement UpdateStage; replacing the stage instead",
                    );
                    return Ok(false);
                }
                other => {
                    other.ctx("UpdateStage", &self.name)?;
                }
            }
        }
        let Some(change) = TagChange::between(Some(&current.tags), &self.tags) else {
            return Ok(true);
        };
        let arn = stage_resource_arn(&clients.region, api_id, &self.name);
        if !retag(clients, &arn, change, &self.name, true).await? {
            cx.reporter.note(
                "the endpoint does not implement tagging a stage; replacing the stage instead",
            );
            return Ok(false);
        }
        Ok(true)
    }
}

impl Resource for StageSpec {
    const LABEL: &'static str = "stage";
    const WAVE: u8 = 6;

    fn name(&self) -> &str {
        &self.name
    }

    fn drops(_name: &str, action: &crate::engine::plan::Action) -> Option<&'static str> {
        stage_drops(action)
    }

    /// A new stage serves nothing before its first deployment; its settings change in place.
    fn needs_deployment(action: &crate::engine::plan::Action) -> bool {
        matches!(
            action,
            crate::engine::plan::Action::Create | crate::engine::plan::Action::Replace(_)
        )
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        clients
            .apigw
            .create_stage()
            .api_id(api_id)
            .stage_name(&self.name)
            .auto_deploy(self.auto_deploy)
            .default_route_settings(
                RouteSettings::builder()
                    .throttling_burst_limit(self.throttling_burst)
                    .throttling_rate_limit(self.throttling_rate)
                    .build(),
            )
            .set_access_log_settings(
                self.access_log
                    .as_ref()
                    .map(|a| AccessLog::settings(Some(a))),
            )
            .set_tags(Some(self.tags.clone().into_iter().collect()))
            .description("managed by wsctl")
            .send()
            .await
            .ctx("CreateStage", &self.name)?;
        Ok(Some(self.name.clone()))
    }

    /// Every field of a stage changes in place on AWS (UpdateStage, TagResource). An emulator
    /// lacking those calls gets the stage replaced instead, without asking again: a local
    /// emulator's stage serves no client (`wsctl dev` serves its own gateway from what the
    /// control plane says), so nothing is dropped, and stopping half-way through an apply to
    /// ask would leave the stack half-changed for no gain.
    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        if physical_id.is_none() {
            return self.create(cx).await;
        }
        if self.update_in_place(current, cx).await? {
            return Ok(Some(self.name.clone()));
        }
        Self::delete(&self.name, physical_id, cx).await?;
        self.create(cx).await
    }
    async fn delete(
        _name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let Some(id) = physical_id else {
            return Ok(());
        };
        let request = cx.clients.apigw.delete_stage();
        found(request.api_id(cx.api_id()).stage_name(id).send().await).ctx("DeleteStage", id)?;
        Ok(())
    }

    fn goes_with(_name: &str, other: &ResourceId) -> bool {
        goes_with_the_api(other)
    }

    fn note(&self, current: Option<&Self>) -> Option<String> {
        let a = self.access_log.as_ref()?;
        if current.is_some_and(|c| c.access_log.is_some()) || a.role.is_empty() {
            return None;
        }
        let group = a
            .destination_arn
            .rsplit("log-group:")
            .next()
            .unwrap_or_default();
        Some(format!(
            "API Gateway writes the stage's access log to log group {group}, through the account's CloudWatch Logs role {}",
            a.role
        ))
    }
}

//! Integrations: how a route reaches its function.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrationSpec {
    /// The function it invokes (logical key).
    pub function: String,
    pub uri: String,
    pub timeout_ms: i32,
}

impl IntegrationSpec {
    async fn put(
        &self,
        cx: &Applying<'_>,
        existing: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        if let Some(id) = existing {
            clients
                .apigw
                .update_integration()
                .api_id(api_id)
                .integration_id(id)
                .integration_uri(&self.uri)
                .timeout_in_millis(self.timeout_ms)
                .send()
                .await
                .ctx("UpdateIntegration", &self.function)?;
            return Ok(Some(id.to_string()));
        }
        let created = clients
            .apigw
            .create_integration()
            .api_id(api_id)
            .integration_type(IntegrationType::AwsProxy)
            .integration_method("POST")
            .integration_uri(&self.uri)
            .timeout_in_millis(self.timeout_ms)
            .send()
            .await
            .ctx("CreateIntegration", &self.function)?;
        Ok(Some(created.integration_id.unwrap_or_default()))
    }
}

impl Resource for IntegrationSpec {
    const LABEL: &'static str = "integration";
    const WAVE: u8 = 3;

    fn name(&self) -> &str {
        &self.function
    }

    fn needs_deployment(_action: &crate::engine::plan::Action) -> bool {
        true
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        self.put(cx, None).await
    }

    async fn update(
        &self,
        _current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        self.put(cx, physical_id).await
    }

    async fn delete(
        _name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let Some(id) = physical_id else {
            return Ok(());
        };
        let request = cx.clients.apigw.delete_integration();
        found(request.api_id(cx.api_id()).integration_id(id).send().await)
            .ctx("DeleteIntegration", id)?;
        Ok(())
    }

    fn goes_with(_name: &str, other: &ResourceId) -> bool {
        goes_with_the_api(other)
    }
}

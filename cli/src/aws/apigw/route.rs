//! Routes: a route key, its integration and its authorizer.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSpec {
    pub route_key: String,
    /// Function whose integration the route targets.
    pub function: Option<String>,
    /// Authorizer name when the route uses one (only `$connect` can).
    pub authorizer: Option<String>,
}

impl RouteSpec {
    async fn put(
        &self,
        cx: &Applying<'_>,
        existing: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        let integration = self
            .function
            .as_deref()
            .and_then(|f| cx.live.physical_id(Kind::Integration, f));
        let authorizer = self
            .authorizer
            .as_deref()
            .and_then(|a| cx.live.physical_id(Kind::Authorizer, a));
        let target = integration.map(|i| format!("integrations/{i}"));
        let auth_type = if authorizer.is_some() {
            AuthorizationType::Custom
        } else {
            AuthorizationType::None
        };
        if let Some(id) = existing {
            clients
                .apigw
                .update_route()
                .api_id(api_id)
                .route_id(id)
                .set_target(target)
                .authorization_type(auth_type)
                // UpdateRoute changes only what it is sent: `NONE` alone leaves the old
                // authorizer's id on the route, which then keeps the authorizer from being
                // deleted (409 "is referenced in route"; cloudformation-coverage-roadmap #2184).
                .authorizer_id(authorizer.unwrap_or_default())
                .send()
                .await
                .ctx("UpdateRoute", &self.route_key)?;
            return Ok(Some(id.to_string()));
        }
        let created = clients
            .apigw
            .create_route()
            .api_id(api_id)
            .route_key(&self.route_key)
            .set_target(target)
            .authorization_type(auth_type)
            .set_authorizer_id(authorizer.map(str::to_string))
            .send()
            .await
            .ctx("CreateRoute", &self.route_key)?;
        Ok(Some(created.route_id.unwrap_or_default()))
    }
}

impl Resource for RouteSpec {
    const LABEL: &'static str = "route";
    const WAVE: u8 = 5;

    fn name(&self) -> &str {
        &self.route_key
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
        let request = cx.clients.apigw.delete_route();
        found(request.api_id(cx.api_id()).route_id(id).send().await).ctx("DeleteRoute", id)?;
        Ok(())
    }

    fn goes_with(_name: &str, other: &ResourceId) -> bool {
        goes_with_the_api(other)
    }
}

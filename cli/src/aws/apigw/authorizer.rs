//! The `$connect` authorizer.

use super::*;

/// How long a route's released reference to an authorizer may take to be seen.
const REFERENCE_RELEASE: crate::aws::Pace = crate::aws::Pace {
    first: Duration::from_secs(1),
    max: Duration::from_secs(5),
    window: Duration::from_secs(60),
};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthorizerSpec {
    pub name: String,
    pub function: String,
    pub uri: String,
    pub identity_source: Vec<String>,
}

impl AuthorizerSpec {
    async fn put(
        &self,
        cx: &Applying<'_>,
        existing: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        if let Some(id) = existing {
            clients
                .apigw
                .update_authorizer()
                .api_id(api_id)
                .authorizer_id(id)
                .authorizer_uri(&self.uri)
                .set_identity_source(Some(self.identity_source.clone()))
                .send()
                .await
                .ctx("UpdateAuthorizer", &self.name)?;
            return Ok(Some(id.to_string()));
        }
        let created = clients
            .apigw
            .create_authorizer()
            .api_id(api_id)
            .name(&self.name)
            .authorizer_type(AuthorizerType::Request)
            .authorizer_uri(&self.uri)
            .set_identity_source(Some(self.identity_source.clone()))
            .send()
            .await
            .ctx("CreateAuthorizer", &self.name)?;
        Ok(Some(created.authorizer_id.unwrap_or_default()))
    }
}

impl Resource for AuthorizerSpec {
    const LABEL: &'static str = "authorizer";
    const WAVE: u8 = 3;

    fn name(&self) -> &str {
        &self.name
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
        // Routes let go of it in an earlier step; API Gateway may still see the reference for
        // a moment (409 "Cannot delete authorizer …, is referenced in route", sst #5586).
        let referenced: fn(&str, &str) -> bool =
            |code, message| code == "ConflictException" && message.contains("referenced");
        let deleted = crate::aws::while_refused(
            "DeleteAuthorizer",
            id,
            REFERENCE_RELEASE,
            referenced,
            || {
                cx.clients
                    .apigw
                    .delete_authorizer()
                    .api_id(cx.api_id())
                    .authorizer_id(id)
                    .send()
            },
        )
        .await;
        match deleted {
            Err(AwsError::Service { code, .. }) if code == "NotFoundException" => Ok(()),
            other => other.map(drop),
        }
    }

    fn goes_with(_name: &str, other: &ResourceId) -> bool {
        goes_with_the_api(other)
    }
}

//! `$connect` REQUEST authorizer: verifies `?token=`, allows `$connect` of this API only, and
//! hands the user and capabilities on as the connection's context.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde_json::json;

use crate::auth::Verifier;

/// `Err("Unauthorized")` makes API Gateway answer 401; a Deny policy makes it 403.
pub fn handle(verifier: &Verifier, event: &ApiGatewayCustomAuthorizerRequestTypeRequest) -> Result<ApiGatewayCustomAuthorizerResponse, String> {
    let arn = event.method_arn.clone().unwrap_or_default();
    let Some(token) = event.query_string_parameters.first("token").filter(|t| !t.is_empty()) else {
        tracing::info!("no token: 401");
        return Err("Unauthorized".into());
    };
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    match verifier.verify(token) {
        Ok(identity) => {
            response.principal_id = Some(identity.user.clone());
            response.policy_document = policy(IamPolicyEffect::Allow, &arn);
            response.context = json!({
                "user": identity.user,
                "cap": serde_json::to_string(&identity.capabilities).unwrap_or_default(),
            });
        }
        Err(e) => {
            tracing::info!(reason = %e, "token refused: 403");
            response.principal_id = Some("anonymous".into());
            response.policy_document = policy(IamPolicyEffect::Deny, &arn);
        }
    }
    Ok(response)
}

fn policy(effect: IamPolicyEffect, arn: &str) -> ApiGatewayCustomAuthorizerPolicy {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = effect;
    statement.resource = vec![arn.to_string()];
    let mut p = ApiGatewayCustomAuthorizerPolicy::default();
    p.version = Some("2012-10-17".into());
    p.statement = vec![statement];
    p
}

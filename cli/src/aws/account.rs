//! API Gateway's account settings in the stack's region: the CloudWatch Logs role through which
//! every REST and WebSocket API of the account there writes its logs. A stage with access logs
//! needs it ("Set up CloudWatch logging for REST APIs in API Gateway": the role is set once per
//! account and region, and a stage asking for logs without it is refused with "CloudWatch Logs
//! role ARN must be set in account settings to enable logging").
//!
//! wsctl sets it only when `access_logs.account_role` asks, may create its own role for it,
//! and never unsets or deletes either: other APIs of the account write through them. The
//! setting is read only for a stack with `access_logs`, so no other stack, and no `destroy`,
//! ever plans a change to it.

use aws_sdk_apigateway::types::{Op, PatchOperation};
use serde::Serialize;
use serde_json::json;
use wsctl_functions::partition::Partition;

use super::{AwsError, CallContext, Clients, found, is_code, while_role_propagates};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec};
use crate::names::{Names, Target};

/// The role wsctl creates when asked to (`account_role: create`) and the account has none. One
/// per account: IAM is global, and every region's setting may name it.
pub const LOGGING_ROLE: &str = "wsctl-apigateway-cloudwatch";
pub const LOGGING_ROLE_PATH: &str = "/wsctl/";
/// The AWS managed policy API Gateway's logging role needs ("Permissions for CloudWatch
/// logging": create log groups and streams, put events, describe them).
const PUSH_TO_CLOUDWATCH: &str = "policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs";

pub fn push_to_cloudwatch_arn(partition: Partition) -> String {
    partition.arn("iam", "", "aws", PUSH_TO_CLOUDWATCH)
}

/// The ARN of [`LOGGING_ROLE`] in the target's account.
pub fn logging_role_arn(target: &Target) -> String {
    target.role_arn(LOGGING_ROLE_PATH, LOGGING_ROLE)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountSpec {
    /// The region whose settings these are.
    pub name: String,
    /// Empty when the config takes the account's role and the account has none: `deploy`
    /// refuses such a stack before any change.
    pub cloudwatch_role_arn: String,
    /// The role is [`LOGGING_ROLE`]: it is created (if missing) before it is set.
    #[serde(skip)]
    pub create_role: bool,
}

impl Resource for AccountSpec {
    const LABEL: &'static str = "API Gateway logging role of";
    const WAVE: u8 = 1;

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(
        clients: &Clients,
        _names: &Names,
        expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let Some(region) = expected.first() else {
            return Ok(());
        };
        let account = clients
            .apigateway
            .get_account()
            .send()
            .await
            .ctx("GetAccount", region)?;
        if let Some(arn) = account.cloudwatch_role_arn.filter(|a| !a.is_empty()) {
            live.resources.insert(
                ResourceId {
                    kind: Kind::Account,
                    name: region.clone(),
                },
                Live {
                    spec: Spec::Account(AccountSpec {
                        name: region.clone(),
                        cloudwatch_role_arn: arn,
                        create_role: false,
                    }),
                    physical_id: None,
                },
            );
        }
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        if self.create_role {
            create_logging_role(clients, cx.target).await?;
            // API Gateway checks the role when it is set, and a role made seconds ago is not
            // yet one it can assume.
            while_role_propagates("UpdateAccount", &self.name, role_refused, || {
                set_role(clients, &self.cloudwatch_role_arn).send()
            })
            .await?;
            return Ok(None);
        }
        match set_role(clients, &self.cloudwatch_role_arn).send().await {
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    use aws_sdk_apigateway::error::ProvideErrorMetadata;
                    role_refused(
                        s.code().unwrap_or_default(),
                        s.message().unwrap_or_default(),
                    )
                }) =>
            {
                Err(AwsError::Other {
                    op: "UpdateAccount",
                    resource: self.name.clone(),
                    detail: format!(
                        "API Gateway cannot use {} as its CloudWatch Logs role: the role must trust apigateway.amazonaws.com and have the managed policy AmazonAPIGatewayPushToCloudWatchLogs (or its permissions); fix the role, or write `account_role: create` under `access_logs` to have wsctl make one",
                        self.cloudwatch_role_arn
                    ),
                })
            }
            other => other.ctx("UpdateAccount", &self.name).map(|_| None),
        }
    }

    async fn update(
        &self,
        _current: &Self,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        self.create(cx).await
    }

    /// Never deleted: see the module's documentation.
    async fn delete(
        _name: &str,
        _physical_id: Option<&str>,
        _cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        Ok(())
    }

    fn note(&self, _current: Option<&Self>) -> Option<String> {
        let region = &self.name;
        if self.cloudwatch_role_arn.is_empty() {
            return Some(format!(
                "API Gateway in {region} has no CloudWatch Logs role, which access logs need; `deploy` refuses until `access_logs.account_role` names one or says `create`"
            ));
        }
        let made = if self.create_role {
            " (created if missing, with the managed policy AmazonAPIGatewayPushToCloudWatchLogs)"
        } else {
            ""
        };
        Some(format!(
            "sets {}{made} as API Gateway's CloudWatch Logs role in {region}: every API of the account in {region} logs through it, and `wsctl destroy` leaves it set",
            self.cloudwatch_role_arn
        ))
    }
}

fn set_role(
    clients: &Clients,
    arn: &str,
) -> aws_sdk_apigateway::operation::update_account::builders::UpdateAccountFluentBuilder {
    clients.apigateway.update_account().patch_operations(
        PatchOperation::builder()
            .op(Op::Replace)
            .path("/cloudwatchRoleArn")
            .value(arn)
            .build(),
    )
}

/// UpdateAccount's answer for a role API Gateway cannot assume (yet): BadRequestException "The
/// role ARN does not have required permissions set to API Gateway".
fn role_refused(code: &str, message: &str) -> bool {
    code == "BadRequestException" && message.contains("does not have required permissions")
}

/// Creates [`LOGGING_ROLE`] unless it exists, and attaches its policy (which is idempotent, so
/// a run interrupted between the two is finished by the next).
async fn create_logging_role(clients: &Clients, target: &Target) -> Result<(), AwsError> {
    let existing = found(clients.iam.get_role().role_name(LOGGING_ROLE).send().await)
        .ctx("GetRole", LOGGING_ROLE)?;
    let wanted = logging_role_arn(target);
    match existing.and_then(|r| r.role) {
        Some(role) if role.arn != wanted => {
            return Err(AwsError::Other {
                op: "GetRole",
                resource: LOGGING_ROLE.into(),
                detail: format!(
                    "a role named {LOGGING_ROLE} exists as {}, not as {wanted}: name it in `access_logs.account_role` to use it, or rename it",
                    role.arn
                ),
            });
        }
        Some(_) => {}
        None => {
            let trust = json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": target.partition().service_principal("apigateway")},
                    "Action": "sts:AssumeRole"
                }]
            });
            let created = clients
                .iam
                .create_role()
                .role_name(LOGGING_ROLE)
                .path(LOGGING_ROLE_PATH)
                .assume_role_policy_document(trust.to_string())
                .description("API Gateway's CloudWatch Logs role (account settings), set by wsctl")
                .send()
                .await;
            match created {
                Err(e) if is_code(&e, &["EntityAlreadyExists"]) => {}
                other => {
                    other.ctx("CreateRole", LOGGING_ROLE)?;
                }
            }
        }
    }
    clients
        .iam
        .attach_role_policy()
        .role_name(LOGGING_ROLE)
        .policy_arn(push_to_cloudwatch_arn(target.partition()))
        .send()
        .await
        .ctx("AttachRolePolicy", LOGGING_ROLE)?;
    Ok(())
}

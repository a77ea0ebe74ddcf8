//! API Gateway's account settings and the access logs that need them, which moto does not
//! check: it takes any `cloudwatchRoleArn` at once, and creates or updates a stage with access
//! logs whether or not the account has a role.
//!
//! - A WebSocket stage writes access logs only through the CloudWatch Logs role of the
//!   account's API Gateway settings in the region ("Set up CloudWatch logging for REST APIs in
//!   API Gateway"): CreateStage or UpdateStage with an `accessLogSettings.destinationArn` while
//!   the account has none is refused with BadRequestException "CloudWatch Logs role ARN must be
//!   set in account settings to enable logging".
//! - UpdateAccount checks the role it is given: one API Gateway cannot assume yet (IAM changes
//!   take time to become visible, IAM User Guide, "Troubleshooting IAM") is refused with
//!   BadRequestException "The role ARN does not have required permissions set to API Gateway".
//!   As for Lambda, the first call naming a role CreateRole just made is refused, the next
//!   accepted ([`super::iam::NewRoles`]).

use std::sync::Mutex;

use super::iam::NewRoles;
use crate::proxy::{Behaviour, Call, Exchange, Reply};

pub struct AccountSettings {
    pub roles: NewRoles,
    /// The role the account's settings name, as seen passing through.
    role: Mutex<Option<String>>,
}

impl AccountSettings {
    pub fn new(roles: NewRoles) -> AccountSettings {
        AccountSettings {
            roles,
            role: Mutex::new(None),
        }
    }
}

/// The role a PATCH `/account` sets.
fn patched_role(req: &Exchange) -> Option<String> {
    req.json()["patchOperations"]
        .as_array()?
        .iter()
        .find(|op| op["path"] == "/cloudwatchRoleArn")
        .and_then(|op| op["value"].as_str())
        .map(str::to_string)
}

fn stage_call(req: &Exchange) -> bool {
    let path = req.path.split('?').next().unwrap_or_default();
    let Some(rest) = path.strip_prefix("/v2/apis/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    matches!(
        (req.method.as_str(), parts.as_slice()),
        ("POST", [_, "stages"]) | ("PATCH", [_, "stages", _])
    )
}

impl Behaviour for AccountSettings {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        if call.service != "apigateway" {
            return None;
        }
        if req.path == "/account" && req.method == "PATCH" {
            let role = patched_role(req)?;
            return self.roles.propagating(&role).then(|| {
                Reply::error(
                    400,
                    "BadRequestException",
                    "The role ARN does not have required permissions set to API Gateway",
                )
            });
        }
        let logs = req.json()["accessLogSettings"]["destinationArn"]
            .as_str()
            .is_some_and(|d| !d.is_empty());
        (stage_call(req) && logs && self.role.lock().unwrap().is_none()).then(|| {
            Reply::error(
                400,
                "BadRequestException",
                "CloudWatch Logs role ARN must be set in account settings to enable logging",
            )
        })
    }

    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        if call.service != "apigateway" || req.path != "/account" || reply.status != 200 {
            return;
        }
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        *self.role.lock().unwrap() = body["cloudwatchRoleArn"]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(str::to_string);
    }

    fn reset(&self) {
        *self.role.lock().unwrap() = None;
    }
}

//! Lambda functions and the permission that lets the stack's API invoke them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, LastUpdateStatus, Runtime, State};
use serde::Serialize;

use super::{
    AwsError, CallContext, Clients, Pace, ROLE_PROPAGATION, TagChange, found, tag_map,
    while_refused, while_role_propagates,
};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};
use crate::names::Names;

mod concurrency;
mod permission;
mod url;

use concurrency::set_concurrency;
pub use concurrency::{NoRoomToReserve, room_to_reserve};
pub use permission::PermissionSpec;
use permission::read_permissions;
pub use url::{FunctionUrlSpec, read_url};

const READY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionSpec {
    pub name: String,
    pub role: String,
    pub runtime: String,
    pub handler: String,
    pub architecture: String,
    pub memory: i32,
    pub timeout: i32,
    pub environment: BTreeMap<String, String>,
    /// Base64 SHA-256 of the deployment zip, as Lambda reports `CodeSha256`.
    pub code_sha256: String,
    /// Concurrent executions reserved for the function (`PutFunctionConcurrency`); none when unset.
    pub reserved_concurrency: Option<i32>,
    pub tags: Tags,
    /// Where the zip is on disk; not compared.
    #[serde(skip)]
    pub zip: Option<PathBuf>,
}

impl Resource for FunctionSpec {
    const LABEL: &'static str = "function";
    const WAVE: u8 = 2;

    fn name(&self) -> &str {
        &self.name
    }

    /// Reads each function's URL and permissions too: they are found through the function.
    async fn read(
        clients: &Clients,
        names: &Names,
        expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let prefix = names.prefix();
        let mut functions = Vec::new();
        let mut pages = clients.lambda.list_functions().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.ctx("ListFunctions", format!("{prefix}*"))?;
            functions.extend(
                page.functions
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|f| f.function_name)
                    .filter(|n| n.starts_with(&prefix)),
            );
        }
        for name in functions {
            let Some(got) = found(
                clients
                    .lambda
                    .get_function()
                    .function_name(&name)
                    .send()
                    .await,
            )
            .ctx("GetFunction", &name)?
            else {
                continue; // deleted since it was listed
            };
            let tags = tag_map(got.tags.unwrap_or_default());
            let reserved_concurrency = got
                .concurrency
                .and_then(|c| c.reserved_concurrent_executions);
            if !names.owns(&tags) {
                if expected.contains(&name) {
                    live.foreign.push(ResourceId {
                        kind: Kind::Function,
                        name,
                    });
                }
                continue;
            }
            let Some(config) = got.configuration else {
                continue;
            };
            let spec = FunctionSpec {
                name: name.clone(),
                role: config.role.unwrap_or_default(),
                runtime: config
                    .runtime
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_default(),
                handler: config.handler.unwrap_or_default(),
                architecture: config
                    .architectures
                    .and_then(|a| a.first().map(|a| a.as_str().to_string()))
                    .unwrap_or_else(|| "x86_64".into()),
                memory: config.memory_size.unwrap_or_default(),
                timeout: config.timeout.unwrap_or_default(),
                environment: config
                    .environment
                    .and_then(|e| e.variables)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                code_sha256: config.code_sha256.unwrap_or_default(),
                reserved_concurrency,
                tags,
                zip: None,
            };
            live.resources.insert(
                ResourceId {
                    kind: Kind::Function,
                    name: name.clone(),
                },
                Live {
                    spec: Spec::Function(spec),
                    physical_id: config.function_arn,
                },
            );
            if let Some((url, address)) = read_url(clients, &name).await? {
                live.resources.insert(
                    ResourceId {
                        kind: Kind::FunctionUrl,
                        name: name.clone(),
                    },
                    Live {
                        spec: Spec::FunctionUrl(url),
                        physical_id: Some(address),
                    },
                );
            }
            for permission in read_permissions(clients, &name).await? {
                live.resources.insert(
                    ResourceId {
                        kind: Kind::Permission,
                        name: permission.name.clone(),
                    },
                    Live {
                        physical_id: Some(permission.statement_id.clone()),
                        spec: Spec::Permission(permission),
                    },
                );
            }
        }
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let zip = zip_bytes(self)?;
        let created = while_role_propagates("CreateFunction", &self.name, role_not_ready, || {
            clients
                .lambda
                .create_function()
                .function_name(&self.name)
                .role(&self.role)
                .runtime(Runtime::from(self.runtime.as_str()))
                .handler(&self.handler)
                .architectures(Architecture::from(self.architecture.as_str()))
                .memory_size(self.memory)
                .timeout(self.timeout)
                .environment(environment(self))
                .set_tags(Some(self.tags.clone().into_iter().collect()))
                .code(
                    aws_sdk_lambda::types::FunctionCode::builder()
                        .zip_file(Blob::new(zip.clone()))
                        .build(),
                )
                .description("managed by wsctl")
                .send()
        })
        .await
        .map_err(|e| unsupported_architecture(e, &clients.region))?;
        wait_ready(clients, &self.name).await?;
        set_concurrency(clients, self, None).await?;
        Ok(Some(created.function_arn.unwrap_or_default()))
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        update(cx.clients, self, current).await?;
        Ok(physical_id.map(str::to_string))
    }

    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        found(
            cx.clients
                .lambda
                .delete_function()
                .function_name(name)
                .send()
                .await,
        )
        .ctx("DeleteFunction", name)?;
        Ok(())
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Code,
    Configuration,
}

/// What an update sends, in order.
fn update_steps(current: &FunctionSpec, spec: &FunctionSpec) -> Vec<Step> {
    let code = current.code_sha256 != spec.code_sha256 || current.architecture != spec.architecture;
    let configuration = (
        current.role.as_str(),
        current.runtime.as_str(),
        current.handler.as_str(),
        current.memory,
        current.timeout,
        &current.environment,
    ) != (
        spec.role.as_str(),
        spec.runtime.as_str(),
        spec.handler.as_str(),
        spec.memory,
        spec.timeout,
        &spec.environment,
    );
    let mut steps = Vec::new();
    if configuration && current.handler != spec.handler {
        steps.push(Step::Configuration);
    }
    if code {
        steps.push(Step::Code);
    }
    if configuration && current.handler == spec.handler {
        steps.push(Step::Configuration);
    }
    steps
}

/// A new role (or one just re-created) is refused here exactly as by CreateFunction.
async fn update_configuration(clients: &Clients, spec: &FunctionSpec) -> Result<(), AwsError> {
    while_refused(
        "UpdateFunctionConfiguration",
        &spec.name,
        ROLE_PROPAGATION,
        role_not_ready_or_busy,
        || {
            clients
                .lambda
                .update_function_configuration()
                .function_name(&spec.name)
                .role(&spec.role)
                .runtime(Runtime::from(spec.runtime.as_str()))
                .handler(&spec.handler)
                .memory_size(spec.memory)
                .timeout(spec.timeout)
                .environment(environment(spec))
                .send()
        },
    )
    .await?;
    wait_ready(clients, &spec.name).await
}

/// Lambda runs arm64 "in most AWS Regions" (Lambda developer guide, "Selecting and
/// configuring an instruction set architecture"), without a list but the pricing page; a
/// region without it refuses CreateFunction with `Architecture "arm64" is not supported in
/// REGION`. That refusal gets the fix, and what the run made stays for the re-run to reuse.
fn unsupported_architecture(e: AwsError, region: &str) -> AwsError {
    match e {
        AwsError::Service {
            op,
            resource,
            code,
            message,
            ..
        } if code == "InvalidParameterValueException"
            && message.contains("Architecture")
            && message.contains("is not supported in") =>
        {
            AwsError::Other {
                op,
                resource,
                detail: format!(
                    "{message}\nhint: Lambda does not run arm64 functions in {region}: set `architecture: x86_64` in wsctl.yaml and re-run `wsctl deploy`; the tables and roles this run made are reused"
                ),
            }
        }
        e => e,
    }
}

fn environment(spec: &FunctionSpec) -> Environment {
    Environment::builder()
        .set_variables(Some(spec.environment.clone().into_iter().collect()))
        .build()
}

fn zip_bytes(spec: &FunctionSpec) -> Result<Vec<u8>, AwsError> {
    let path = spec.zip.as_ref().ok_or_else(|| AwsError::Other {
        op: "CreateFunction",
        resource: spec.name.clone(),
        detail: "no built zip for this function; run `wsctl build`".into(),
    })?;
    std::fs::read(path).map_err(|e| AwsError::Other {
        op: "CreateFunction",
        resource: spec.name.clone(),
        detail: format!("cannot read {}: {e}; run `wsctl build`", path.display()),
    })
}

/// A role created (or re-created) seconds ago may not be visible to Lambda yet: CreateFunction
/// and UpdateFunctionConfiguration then fail with InvalidParameterValueException "The role
/// defined for the function cannot be assumed by Lambda." (Lambda API reference, errors of both
/// actions).
fn role_not_ready(code: &str, message: &str) -> bool {
    code == "InvalidParameterValueException" && message.contains("cannot be assumed")
}

/// Lambda serialises the mutating control-plane calls of one function: one that arrives while
/// another is in progress gets ResourceConflictException (409) "The operation cannot be
/// performed at this time. An update is in progress for resource: …" (Lambda API reference,
/// Errors of AddPermission, RemovePermission, UpdateFunctionCode, UpdateFunctionConfiguration,
/// PutFunctionConcurrency, DeleteFunctionConcurrency, TagResource, UntagResource: "the resource
/// already exists, or another operation is in progress"). A statement id that already exists
/// is the same code and is no passing state.
fn function_busy(code: &str, message: &str) -> bool {
    code == "ResourceConflictException" && !message.contains("already exists")
}

fn role_not_ready_or_busy(code: &str, message: &str) -> bool {
    role_not_ready(code, message) || function_busy(code, message)
}

/// A function's updates follow one another within seconds; a window of a minute outlasts
/// the slowest (a code update's `InProgress`).
const BUSY: Pace = Pace {
    first: Duration::from_millis(250),
    max: Duration::from_secs(4),
    window: Duration::from_secs(60),
};

/// Applies only what differs: code (and architecture, which travels with it) and
/// configuration, then tags. Configuration goes first when the handler changes: new code that
/// picks its role from the handler must never start under the old one (a binary that serves
/// several functions refuses to start without its role), while old code ignores the handler.
async fn update(
    clients: &Clients,
    spec: &FunctionSpec,
    current: &FunctionSpec,
) -> Result<(), AwsError> {
    let steps = update_steps(current, spec);
    if !steps.is_empty() {
        // Lambda refuses changes to a Pending function, or while an update is in progress
        // (a run interrupted right after creating or updating it leaves it so).
        wait_ready(clients, &spec.name).await?;
    }
    for step in steps {
        match step {
            Step::Configuration => update_configuration(clients, spec).await?,
            Step::Code => {
                let zip = Blob::new(zip_bytes(spec)?);
                while_refused(
                    "UpdateFunctionCode",
                    &spec.name,
                    BUSY,
                    function_busy,
                    || {
                        clients
                            .lambda
                            .update_function_code()
                            .function_name(&spec.name)
                            .zip_file(zip.clone())
                            .architectures(Architecture::from(spec.architecture.as_str()))
                            .send()
                    },
                )
                .await?;
                wait_ready(clients, &spec.name).await?;
            }
        }
    }
    set_concurrency(clients, spec, current.reserved_concurrency).await?;
    let Some(change) = TagChange::between(Some(&current.tags), &spec.tags) else {
        return Ok(());
    };
    let arn = function_arn(clients, &spec.name).await?;
    change
        .apply(
            async |keys| {
                clients
                    .lambda
                    .untag_resource()
                    .resource(&arn)
                    .set_tag_keys(Some(keys))
                    .send()
                    .await
                    .ctx("UntagResource", &spec.name)
                    .map(drop)
            },
            async |tags| {
                clients
                    .lambda
                    .tag_resource()
                    .resource(&arn)
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .ctx("TagResource", &spec.name)
                    .map(drop)
            },
        )
        .await
}

async fn function_arn(clients: &Clients, name: &str) -> Result<String, AwsError> {
    let got = clients
        .lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .ctx("GetFunctionConfiguration", name)?;
    Ok(got.function_arn.unwrap_or_default())
}

/// Waits until Lambda has finished what the last call started, as "Lambda function states"
/// (Lambda developer guide) describes: a function is `Pending` after creation (or while Lambda
/// re-creates its resources), when every call acting on it fails, until `Active`; an update runs
/// with `LastUpdateStatus: InProgress` until `Successful`. An `Inactive` function (idle long
/// enough for Lambda to reclaim its resources, StateReasonCode `Idle`) takes updates as an
/// active one does and is woken by its next invocation, so once its update is done there is
/// nothing to wait for. `Failed` ends the wait with Lambda's reason code; so does `Inactive`
/// after `Pending`, which is Lambda failing to re-create the resources.
async fn wait_ready(clients: &Clients, name: &str) -> Result<(), AwsError> {
    let started = Instant::now();
    let mut was_pending = false;
    loop {
        let c = clients
            .lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .ctx("GetFunctionConfiguration", name)?;
        let state = c.state.clone().unwrap_or(State::Active);
        let update = c
            .last_update_status
            .clone()
            .unwrap_or(LastUpdateStatus::Successful);
        let failed = |what: &str, code: Option<&str>, reason: Option<&str>| AwsError::Other {
            op: "GetFunctionConfiguration",
            resource: name.to_string(),
            detail: format!(
                "{what} ({}: {})\nhint: fix the cause Lambda names, then deploy again; a function whose creation failed must be deleted (`wsctl destroy` or the console) first",
                code.unwrap_or("no reason code"),
                reason.unwrap_or("no reason given")
            ),
        };
        match (&state, &update) {
            (State::Failed, _) => {
                return Err(failed(
                    "the function is in state Failed",
                    c.state_reason_code.as_ref().map(|r| r.as_str()),
                    c.state_reason.as_deref(),
                ));
            }
            (_, LastUpdateStatus::Failed) => {
                return Err(failed(
                    "the function's last update failed",
                    c.last_update_status_reason_code
                        .as_ref()
                        .map(|r| r.as_str()),
                    c.last_update_status_reason.as_deref(),
                ));
            }
            (State::Inactive, LastUpdateStatus::Successful)
                if was_pending
                    && c.state_reason_code.as_ref().map(|r| r.as_str()) != Some("Idle") =>
            {
                return Err(failed(
                    "Lambda could not re-create the function's resources; it is Inactive",
                    c.state_reason_code.as_ref().map(|r| r.as_str()),
                    c.state_reason.as_deref(),
                ));
            }
            (State::Active | State::Inactive, LastUpdateStatus::Successful) => return Ok(()),
            _ => was_pending |= state == State::Pending,
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(AwsError::Other {
                op: "GetFunctionConfiguration",
                resource: name.to_string(),
                detail: format!(
                    "still {}/{} after {} s\nhint: re-run to continue",
                    state.as_str(),
                    update.as_str(),
                    READY_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal of a region without arm64 names the setting that fixes it; other
    /// refusals pass unchanged.
    #[test]
    fn a_region_without_arm64_is_answered_with_the_architecture_setting() {
        let refusal = |message: &str| AwsError::Service {
            op: "CreateFunction",
            resource: "chat-dev-message".into(),
            code: "InvalidParameterValueException".into(),
            message: message.into(),
            request_id: None,
        };
        let said = unsupported_architecture(
            refusal("Architecture \"arm64\" is not supported in eu-west-3. Please select \"x86_64\" or remove the Architectures value from your request and try again"),
            "eu-west-3",
        )
        .to_string();
        assert!(
            said.contains("`architecture: x86_64`") && said.contains("eu-west-3"),
            "{said}"
        );
        let other = unsupported_architecture(
            refusal("The role defined for the function cannot be assumed by Lambda."),
            "eu-west-3",
        );
        assert!(matches!(other, AwsError::Service { .. }));
    }

    fn spec(handler: &str, code: &str, memory: i32) -> FunctionSpec {
        FunctionSpec {
            name: "chat-dev-connect".into(),
            role: "arn:aws:iam::123456789012:role/r".into(),
            runtime: "provided.al2023".into(),
            handler: handler.into(),
            architecture: "arm64".into(),
            memory,
            timeout: 10,
            environment: BTreeMap::new(),
            code_sha256: code.into(),
            reserved_concurrency: None,
            tags: Tags::new(),
            zip: None,
        }
    }

    #[test]
    fn a_new_handler_is_set_before_the_code_that_reads_it() {
        // Old one-function binaries ignore the handler; the shared binary refuses to start
        // without its role. Code first would leave every function failing in between.
        let old = spec("bootstrap", "old", 128);
        assert_eq!(
            update_steps(&old, &spec("connect", "new", 128)),
            vec![Step::Configuration, Step::Code]
        );
        // Otherwise code first, as before: new settings may be meant for the new code.
        assert_eq!(
            update_steps(&old, &spec("bootstrap", "new", 256)),
            vec![Step::Code, Step::Configuration]
        );
        assert_eq!(
            update_steps(&old, &spec("bootstrap", "new", 128)),
            vec![Step::Code]
        );
        assert_eq!(update_steps(&old, &old), vec![]);
    }
}

//! Lambda functions and the permission that lets the stack's API invoke them.

use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, LastUpdateStatus, Runtime, State};
use serde_json::Value;

use super::{AwsError, Clients, Ctx, found, is_code, tag_map};
use crate::engine::desired::{Names, PERMISSION_SID};
use crate::engine::model::{FunctionSpec, Kind, Live, LiveState, PermissionSpec, ResourceId, Spec};

/// How long a new role may take to become assumable by Lambda (IAM is eventually consistent).
const ROLE_PROPAGATION: Duration = Duration::from_secs(90);
const READY_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn read(
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
        if let Some(permission) = read_permission(clients, &name).await? {
            live.resources.insert(
                ResourceId {
                    kind: Kind::Permission,
                    name: name.clone(),
                },
                Live {
                    spec: Spec::Permission(permission),
                    physical_id: None,
                },
            );
        }
    }
    Ok(())
}

async fn read_permission(
    clients: &Clients,
    function: &str,
) -> Result<Option<PermissionSpec>, AwsError> {
    let Some(policy) = found(
        clients
            .lambda
            .get_policy()
            .function_name(function)
            .send()
            .await,
    )
    .ctx("GetPolicy", function)?
    else {
        return Ok(None);
    };
    let doc: Value =
        serde_json::from_str(policy.policy.as_deref().unwrap_or("{}")).unwrap_or(Value::Null);
    let statements = match &doc["Statement"] {
        Value::Array(list) => list.clone(),
        single @ Value::Object(_) => vec![single.clone()],
        _ => vec![],
    };
    Ok(statements
        .iter()
        .find(|s| s["Sid"] == PERMISSION_SID)
        .map(|s| PermissionSpec {
            function: function.to_string(),
            statement_id: PERMISSION_SID.into(),
            source_arn: s["Condition"]["ArnLike"]["AWS:SourceArn"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }))
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

pub async fn create(clients: &Clients, spec: &FunctionSpec) -> Result<String, AwsError> {
    let zip = zip_bytes(spec)?;
    let started = Instant::now();
    let created = loop {
        let req = clients
            .lambda
            .create_function()
            .function_name(&spec.name)
            .role(&spec.role)
            .runtime(Runtime::from(spec.runtime.as_str()))
            .handler(&spec.handler)
            .architectures(Architecture::from(spec.architecture.as_str()))
            .memory_size(spec.memory)
            .timeout(spec.timeout)
            .environment(environment(spec))
            .set_tags(Some(spec.tags.clone().into_iter().collect()))
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(Blob::new(zip.clone()))
                    .build(),
            )
            .description("managed by wsctl")
            .send()
            .await;
        match req {
            Err(e) if role_not_ready(&e) && started.elapsed() < ROLE_PROPAGATION => {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            other => break other.ctx("CreateFunction", &spec.name)?,
        }
    };
    wait_ready(clients, &spec.name).await?;
    set_concurrency(clients, spec, None).await?;
    Ok(created.function_arn.unwrap_or_default())
}

/// Reserved concurrency caps how many copies run at once (a fan-out storm cannot take the
/// account's whole pool) and guarantees them; removing it returns to the shared pool.
async fn set_concurrency(
    clients: &Clients,
    spec: &FunctionSpec,
    current: Option<i32>,
) -> Result<(), AwsError> {
    match (spec.reserved_concurrency, current) {
        (want, have) if want == have => {}
        (None, None) => {}
        (Some(n), _) => {
            clients
                .lambda
                .put_function_concurrency()
                .function_name(&spec.name)
                .reserved_concurrent_executions(n)
                .send()
                .await
                .ctx("PutFunctionConcurrency", &spec.name)?;
        }
        (None, Some(_)) => {
            clients
                .lambda
                .delete_function_concurrency()
                .function_name(&spec.name)
                .send()
                .await
                .ctx("DeleteFunctionConcurrency", &spec.name)?;
        }
    }
    Ok(())
}

fn role_not_ready<R>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        aws_sdk_lambda::operation::create_function::CreateFunctionError,
        R,
    >,
) -> bool {
    use aws_sdk_lambda::error::ProvideErrorMetadata;
    is_code(e, &["InvalidParameterValueException"])
        && e.as_service_error()
            .and_then(|s| s.message())
            .is_some_and(|m| m.contains("role") || m.contains("assume"))
}

/// Applies only what differs: code (and architecture, which travels with it), then configuration, then tags.
pub async fn update(
    clients: &Clients,
    spec: &FunctionSpec,
    current: Option<&FunctionSpec>,
) -> Result<(), AwsError> {
    let code_changed = current
        .is_none_or(|c| c.code_sha256 != spec.code_sha256 || c.architecture != spec.architecture);
    if code_changed {
        clients
            .lambda
            .update_function_code()
            .function_name(&spec.name)
            .zip_file(Blob::new(zip_bytes(spec)?))
            .architectures(Architecture::from(spec.architecture.as_str()))
            .send()
            .await
            .ctx("UpdateFunctionCode", &spec.name)?;
        wait_ready(clients, &spec.name).await?;
    }
    let config_changed = current.is_none_or(|c| {
        (
            c.role.as_str(),
            c.runtime.as_str(),
            c.handler.as_str(),
            c.memory,
            c.timeout,
            &c.environment,
        ) != (
            spec.role.as_str(),
            spec.runtime.as_str(),
            spec.handler.as_str(),
            spec.memory,
            spec.timeout,
            &spec.environment,
        )
    });
    if config_changed {
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
            .await
            .ctx("UpdateFunctionConfiguration", &spec.name)?;
        wait_ready(clients, &spec.name).await?;
    }
    set_concurrency(clients, spec, current.and_then(|c| c.reserved_concurrency)).await?;
    let current_tags = current.map(|c| c.tags.clone()).unwrap_or_default();
    if current_tags != spec.tags {
        let arn = function_arn(clients, &spec.name).await?;
        let stale = super::removed_keys(&current_tags, &spec.tags);
        if !stale.is_empty() {
            clients
                .lambda
                .untag_resource()
                .resource(&arn)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .ctx("UntagResource", &spec.name)?;
        }
        clients
            .lambda
            .tag_resource()
            .resource(&arn)
            .set_tags(Some(spec.tags.clone().into_iter().collect()))
            .send()
            .await
            .ctx("TagResource", &spec.name)?;
    }
    Ok(())
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

/// Lambda rejects changes while a previous one is in progress; wait until it settles.
async fn wait_ready(clients: &Clients, name: &str) -> Result<(), AwsError> {
    let started = Instant::now();
    loop {
        let c = clients
            .lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .ctx("GetFunctionConfiguration", name)?;
        let state = c.state.unwrap_or(State::Active);
        let update = c.last_update_status.unwrap_or(LastUpdateStatus::Successful);
        if state == State::Failed || update == LastUpdateStatus::Failed {
            return Err(AwsError::Other {
                op: "GetFunctionConfiguration",
                resource: name.to_string(),
                detail: format!(
                    "the function failed to become ready: {}",
                    c.state_reason
                        .or(c.last_update_status_reason)
                        .unwrap_or_else(|| "no reason given".into())
                ),
            });
        }
        if state == State::Active && update != LastUpdateStatus::InProgress {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(AwsError::Other {
                op: "GetFunctionConfiguration",
                resource: name.to_string(),
                detail: format!(
                    "still {state:?}/{update:?} after {} s; re-run to continue",
                    READY_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn delete(clients: &Clients, name: &str) -> Result<(), AwsError> {
    found(
        clients
            .lambda
            .delete_function()
            .function_name(name)
            .send()
            .await,
    )
    .ctx("DeleteFunction", name)?;
    Ok(())
}

pub async fn add_permission(clients: &Clients, spec: &PermissionSpec) -> Result<(), AwsError> {
    clients
        .lambda
        .add_permission()
        .function_name(&spec.function)
        .statement_id(&spec.statement_id)
        .action("lambda:InvokeFunction")
        .principal("apigateway.amazonaws.com")
        .source_arn(&spec.source_arn)
        .send()
        .await
        .ctx("AddPermission", &spec.function)?;
    Ok(())
}

pub async fn remove_permission(clients: &Clients, function: &str) -> Result<(), AwsError> {
    found(
        clients
            .lambda
            .remove_permission()
            .function_name(function)
            .statement_id(PERMISSION_SID)
            .send()
            .await,
    )
    .ctx("RemovePermission", function)?;
    Ok(())
}

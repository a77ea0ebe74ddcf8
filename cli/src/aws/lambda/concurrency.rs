//! Reserved concurrency: set per function, and checked against the account's unreserved pool
//! before any change.

use crate::aws::{AwsError, Clients, while_refused};
use crate::engine::model::{Kind, LiveState, ResourceId, Spec};

use super::*;

/// Reserved concurrency caps how many copies run at once (a fan-out storm cannot take the
/// account's whole pool) and guarantees them; removing it returns to the shared pool.
pub(super) async fn set_concurrency(
    clients: &Clients,
    spec: &FunctionSpec,
    current: Option<i32>,
) -> Result<(), AwsError> {
    match (spec.reserved_concurrency, current) {
        (want, have) if want == have => {}
        (None, None) => {}
        (Some(n), _) => {
            while_refused(
                "PutFunctionConcurrency",
                &spec.name,
                BUSY,
                function_busy,
                || {
                    clients
                        .lambda
                        .put_function_concurrency()
                        .function_name(&spec.name)
                        .reserved_concurrent_executions(n)
                        .send()
                },
            )
            .await?;
        }
        (None, Some(_)) => {
            while_refused(
                "DeleteFunctionConcurrency",
                &spec.name,
                BUSY,
                function_busy,
                || {
                    clients
                        .lambda
                        .delete_function_concurrency()
                        .function_name(&spec.name)
                        .send()
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// A reservation the account cannot hold: Lambda refuses a `PutFunctionConcurrency` that
/// leaves fewer unreserved executions than its minimum ("as long as you leave at least 100
/// simultaneous executions unreserved for functions that aren't configured with a
/// per-function limit", API reference, PutFunctionConcurrency; accounts whose whole limit is
/// below 100 keep all of it unreserved).
#[derive(Debug, thiserror::Error)]
#[error(
    "reserved_concurrency: the stack's functions would reserve {more} more concurrent executions ({functions}), but the account in {region} has {unreserved} unreserved of its limit of {limit}, and Lambda keeps at least {minimum} unreserved; nothing was changed\nhint: lower or remove `reserved_concurrency` (at most {room} more fit), or ask AWS for a higher \"Concurrent executions\" quota for Lambda in the Service Quotas console"
)]
pub struct NoRoomToReserve {
    pub region: String,
    pub functions: String,
    pub more: i64,
    pub limit: i64,
    pub unreserved: i64,
    pub minimum: i64,
    pub room: i64,
}

/// Checks, before any change, that the reservations `wanted` adds to those `live` has fit the
/// account (GetAccountSettings). Nothing is read when no reservation grows.
pub async fn room_to_reserve(
    clients: &Clients,
    wanted: &[Spec],
    live: &LiveState,
) -> Result<Result<(), NoRoomToReserve>, AwsError> {
    let mut growing = Vec::new();
    for spec in wanted {
        let Spec::Function(f) = spec else { continue };
        let Some(want) = f.reserved_concurrency else {
            continue;
        };
        let id = ResourceId {
            kind: Kind::Function,
            name: f.name.clone(),
        };
        let have = match live.resources.get(&id).map(|l| &l.spec) {
            Some(Spec::Function(l)) => l.reserved_concurrency.unwrap_or(0),
            _ => 0,
        };
        if want > have {
            growing.push((f.name.clone(), i64::from(want - have)));
        }
    }
    if growing.is_empty() {
        return Ok(Ok(()));
    }
    let settings = clients.lambda.get_account_settings().send().await;
    let settings = match settings {
        Ok(s) => s,
        // An emulator without the call has no account to fill.
        Err(e) if crate::aws::apigw::emulated(clients) && crate::aws::unimplemented(&e) => {
            return Ok(Ok(()));
        }
        Err(e) => {
            return Err(crate::aws::classify(
                e,
                "GetAccountSettings",
                "(the account)",
            ));
        }
    };
    let limits = settings
        .account_limit
        .unwrap_or_else(|| aws_sdk_lambda::types::AccountLimit::builder().build());
    let limit = i64::from(limits.concurrent_executions);
    let unreserved = i64::from(
        limits
            .unreserved_concurrent_executions
            .unwrap_or(limits.concurrent_executions),
    );
    let minimum = limit.min(100);
    let more: i64 = growing.iter().map(|(_, n)| n).sum();
    if unreserved - more >= minimum {
        return Ok(Ok(()));
    }
    Ok(Err(NoRoomToReserve {
        region: clients.region.clone(),
        functions: growing
            .iter()
            .map(|(name, n)| format!("{name} +{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        more,
        limit,
        unreserved,
        minimum,
        room: (unreserved - minimum).max(0),
    }))
}

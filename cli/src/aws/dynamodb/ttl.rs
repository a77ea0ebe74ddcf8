//! TTL: one change per table an hour, recorded in a tag, a switch of attribute in two steps.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::{Tag, TimeToLiveSpecification};

use super::*;
use crate::aws::{AwsError, CallContext, Clients, is_code};

pub(super) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `HH:MM` of the first whole minute at or after `secs`, so that "after HH:MM UTC" holds.
pub(super) fn clock(secs: i64) -> String {
    let minute = (secs + 59).div_euclid(60) * 60;
    let day = minute.rem_euclid(86_400);
    format!("{:02}:{:02}", day / 3600, day % 3600 / 60)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TtlStep<'a> {
    Off(&'a str),
    On(&'a str),
}

/// What a deploy does about a table's TTL now, and what it must leave for later.
#[derive(Debug, PartialEq)]
pub(super) struct TtlPlan<'a> {
    pub(super) now: Option<TtlStep<'a>>,
    /// Said by the plan and the deploy when a step has to wait for DynamoDB's hour.
    pub(super) note: Option<String>,
}

pub(super) const ONE_AN_HOUR: &str = "(DynamoDB allows one TTL change per table per hour)";

/// DynamoDB holds TTL on one attribute and takes one change an hour: a switch of attribute is
/// turning the old one off, then, an hour later, the new one on. A step runs when the last
/// recorded change is an hour old (or none is recorded).
pub(super) fn ttl_plan<'a>(want: &'a TableSpec, have: &'a TableSpec, now: i64) -> TtlPlan<'a> {
    let (want_on, have_on) = (want.ttl_attribute.as_deref(), have.ttl_attribute.as_deref());
    if want_on == have_on {
        return TtlPlan {
            now: None,
            note: None,
        };
    }
    let mut steps = Vec::new();
    if let Some(old) = have_on {
        steps.push(TtlStep::Off(old));
    }
    if let Some(new) = want_on {
        steps.push(TtlStep::On(new));
    }
    let allowed = have.ttl_changed.map_or(now, |t| t + TTL_INTERVAL);
    if allowed <= now {
        let note = match (steps[0], steps.get(1)) {
            (TtlStep::Off(old), Some(TtlStep::On(new))) => Some(format!(
                "TTL on `{old}` is turned off now; TTL on `{new}` can be enabled after {} UTC {ONE_AN_HOUR}; items do not expire until then; re-run deploy then",
                clock(now + TTL_INTERVAL)
            )),
            _ => None,
        };
        return TtlPlan {
            now: Some(steps[0]),
            note,
        };
    }
    let at = clock(allowed);
    let note = match (steps[0], steps.get(1)) {
        (TtlStep::On(new), _) => format!(
            "TTL on `{new}` can be enabled after {at} UTC {ONE_AN_HOUR}; items do not expire until then; re-run deploy then"
        ),
        (TtlStep::Off(old), Some(TtlStep::On(new))) => format!(
            "TTL on `{old}` can be turned off after {at} UTC {ONE_AN_HOUR}, and TTL on `{new}` enabled an hour after that; items expire by `{old}` until then; re-run deploy then"
        ),
        (TtlStep::Off(old), _) => format!(
            "TTL on `{old}` can be turned off after {at} UTC {ONE_AN_HOUR}; re-run deploy then"
        ),
    };
    TtlPlan {
        now: None,
        note: Some(note),
    }
}

/// Turns TTL on or off and records when on the table. A refusal for a change within the hour
/// (one wsctl has no record of) becomes the same advice the plan gives.
pub(super) async fn set_ttl(
    clients: &Clients,
    table: &str,
    arn: &str,
    attribute: &str,
    enabled: bool,
    next: Option<&str>,
) -> Result<(), AwsError> {
    let sent = clients
        .dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(enabled)
                .build()
                .expect("set"),
        )
        .send()
        .await;
    match sent {
        Err(e)
            if is_code(&e, &["ValidationException"])
                && e.as_service_error()
                    .and_then(|e| aws_sdk_dynamodb::error::ProvideErrorMetadata::message(e))
                    .is_some_and(|m| m.contains("multiple times")) =>
        {
            let change = if enabled {
                format!("TTL on `{attribute}` can be enabled")
            } else {
                format!("TTL on `{attribute}` can be turned off")
            };
            let then = next
                .map(|n| format!(", and TTL on `{n}` enabled an hour after that"))
                .unwrap_or_default();
            return Err(AwsError::Other {
                op: "UpdateTimeToLive",
                resource: table.into(),
                detail: format!(
                    "its TTL was changed less than an hour ago (not by this wsctl, which keeps no record of it) {ONE_AN_HOUR}. {change} within the hour{then}; re-run deploy then"
                ),
            });
        }
        other => {
            other.ctx("UpdateTimeToLive", table)?;
        }
    }
    let at = DateTime::from_secs(now())
        .fmt(DateTimeFormat::DateTime)
        .expect("a time after 1970");
    clients
        .dynamodb
        .tag_resource()
        .resource_arn(arn)
        .tags(
            Tag::builder()
                .key(TTL_CHANGED_TAG)
                .value(at)
                .build()
                .expect("set"),
        )
        .send()
        .await
        .ctx("TagResource", table)?;
    Ok(())
}

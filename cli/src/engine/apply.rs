//! Carrying a plan out: creates and updates wave by wave, then deletes in reverse dependency
//! order, each batch in parallel. Each change goes to its kind's [`Resource`] impl, which owns
//! the waits (a table or function becoming ready) and retries (a new role propagating).
//!
//! [`Resource`]: super::kinds::Resource

use std::collections::BTreeMap;
use std::time::Instant;

use futures::stream::{self, StreamExt};

use super::desired;
use super::kinds::Applying;
use super::model::{Kind, Live, LiveState, ResourceId};
use super::plan::{self, Action, Change};
use crate::aws::{AwsError, Clients};
use crate::build::Artifact;
use crate::config::Config;
use crate::names::Target;
use crate::output::Reporter;

/// How many changes of one wave run at once: enough to overlap latency, few enough not to
/// trip control-plane throttling.
const PARALLEL: usize = 6;

/// The outcome of an apply: what was done, and what failed.
#[derive(Debug, Default)]
pub struct Applied {
    pub done: Vec<Change>,
    pub failed: Vec<(ResourceId, AwsError)>,
}

/// Makes the account match the config. Creates and updates go wave by wave (each wave planned
/// with the ids the previous one produced); deletes follow, in reverse dependency order.
/// A failure stops before the next wave: what depends on the failed step is not attempted.
pub async fn apply(
    clients: &Clients,
    config: &Config,
    mut target: Target,
    artifacts: &BTreeMap<String, Artifact>,
    mut live: LiveState,
    reporter: &Reporter,
) -> (Applied, LiveState, Target) {
    let mut applied = Applied::default();
    target.locate(&live);
    let last_wave = Kind::ALL.iter().map(|k| k.wave()).max().unwrap_or_default();
    for wave in 0..=last_wave {
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.wave() == wave).collect();
        let wanted = desired::desired(config, &target, artifacts);
        let changes: Vec<Change> = plan::diff(&wanted, &live, &kinds)
            .changes
            .into_iter()
            .filter(|c| c.action != Action::Delete)
            .collect();
        run(clients, &target, &mut live, changes, reporter, &mut applied).await;
        if !applied.failed.is_empty() {
            return (applied, live, target);
        }
        // Later waves' specs hold the API's id (in ARNs and URLs) and the authorizer's (in its
        // function's permission): new ones have theirs now.
        target.locate(&live);
    }
    let wanted = desired::desired(config, &target, artifacts);
    let deletes = plan::diff(&wanted, &live, &Kind::ALL)
        .changes
        .into_iter()
        .filter(|c| c.action == Action::Delete)
        .collect();
    delete(clients, &target, &mut live, deletes, reporter, &mut applied).await;
    (applied, live, target)
}

/// Deletes `changes` kind by kind, newest dependencies first. What another of these deletions
/// takes along (an API's children, a deleted function's permission) is skipped.
pub async fn delete(
    clients: &Clients,
    target: &Target,
    live: &mut LiveState,
    changes: Vec<Change>,
    reporter: &Reporter,
    applied: &mut Applied,
) {
    let changes: Vec<Change> = changes
        .iter()
        .filter(|c| {
            !changes
                .iter()
                .any(|other| c.id.kind.goes_with(&c.id.name, &other.id))
        })
        .cloned()
        .collect();
    let mut kinds: Vec<Kind> = changes.iter().map(|c| c.id.kind).collect();
    kinds.dedup();
    for kind in kinds {
        let batch = changes
            .iter()
            .filter(|c| c.id.kind == kind)
            .cloned()
            .collect();
        run(clients, target, live, batch, reporter, applied).await;
        if !applied.failed.is_empty() {
            return;
        }
    }
}

async fn run(
    clients: &Clients,
    target: &Target,
    live: &mut LiveState,
    changes: Vec<Change>,
    reporter: &Reporter,
    applied: &mut Applied,
) {
    let cx = &Applying {
        clients,
        target,
        live,
        reporter,
    };
    let results: Vec<(Change, Result<Option<Live>, AwsError>)> = stream::iter(changes)
        .map(|change| async move {
            let started = Instant::now();
            reporter.begin(&change);
            let result = apply_change(cx, &change).await;
            reporter.end(&change, result.is_ok(), started.elapsed());
            (change, result)
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    for (change, result) in results {
        match result {
            Ok(Some(now)) => {
                live.resources.insert(change.id.clone(), now);
                applied.done.push(change);
            }
            Ok(None) => {
                live.resources.remove(&change.id);
                applied.done.push(change);
            }
            Err(e) => applied.failed.push((change.id, e)),
        }
    }
}

/// Carries out one change; returns the resource as it now is (`None` once deleted).
async fn apply_change(cx: &Applying<'_>, change: &Change) -> Result<Option<Live>, AwsError> {
    let current = cx.live.resources.get(&change.id);
    if matches!(change.action, Action::Delete | Action::Replace(_)) {
        let physical_id = current.and_then(|c| c.physical_id.as_deref());
        change
            .id
            .kind
            .delete(&change.id.name, physical_id, cx)
            .await?;
        if change.action == Action::Delete {
            return Ok(None);
        }
    }
    let after = change
        .after
        .as_ref()
        .expect("creates and updates carry the desired spec");
    // A replacement's old resource is gone by now: it is created afresh.
    let existing = current.filter(|_| matches!(change.action, Action::Update(_)));
    let physical_id = after.put(existing, cx).await?;
    Ok(Some(Live {
        spec: after.clone(),
        physical_id,
    }))
}

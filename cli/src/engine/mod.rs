//! Plan and apply.
//!
//! `read` finds the stack's resources by their deterministic names and tags; `desired::desired`
//! says what the config wants; `plan::diff` compares the two without I/O; `apply` carries a
//! plan out wave by wave. Apply re-plans each wave against fresh ids, so a run that was killed
//! half-way is finished by the next run: every step is "make it so", never "do this once".

mod converge;
pub mod desired;
pub mod model;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::stream::{self, StreamExt};

use crate::aws::{self, AwsError, Clients};
use crate::build::Artifact;
use crate::config::Config;
use crate::output::Reporter;
use desired::{Names, Target};
use model::{Kind, Live, LiveState, ResourceId, Spec};
use plan::{Action, Change, Plan};

pub use converge::converge;

/// How many changes of one wave run at once: enough to overlap latency, few enough not to
/// trip control-plane throttling.
const PARALLEL: usize = 6;

/// Reads everything of the stack that exists, every service at once.
pub async fn read(
    clients: &Clients,
    config: &Config,
    desired: &[Spec],
) -> Result<LiveState, AwsError> {
    let names = Names::new(config);
    let expected = |kind: Kind| -> Vec<String> {
        desired
            .iter()
            .filter(|s| s.kind() == kind)
            .map(|s| s.id().name)
            .collect()
    };
    let (roles, functions, tables, groups) = (
        expected(Kind::Role),
        expected(Kind::Function),
        expected(Kind::Table),
        expected(Kind::LogGroup),
    );
    let mut parts: [LiveState; 6] = Default::default();
    let [a, b, c, d, e, f] = &mut parts;
    tokio::try_join!(
        aws::ssm::read(clients, &names, a),
        aws::dynamodb::read(clients, &names, &tables, b),
        aws::logs::read(clients, &names, &groups, c),
        aws::apigw::read(clients, &names, d),
        aws::iam::read(clients, &names, &roles, e),
        aws::lambda::read(clients, &names, &functions, f),
    )?;
    let mut live = LiveState::default();
    for part in parts {
        live.resources.extend(part.resources);
        live.foreign.extend(part.foreign);
    }
    Ok(live)
}

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
    target.api_id = live.api_id().map(str::to_string);
    for wave in 0..=5u8 {
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
        if wave == 0 {
            target.api_id = live.api_id().map(str::to_string);
        }
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

/// Deletes `changes` kind by kind, newest dependencies first. Children of an API that is
/// itself going are skipped (DeleteApi takes them along), as are permissions of deleted functions.
pub async fn delete(
    clients: &Clients,
    target: &Target,
    live: &mut LiveState,
    changes: Vec<Change>,
    reporter: &Reporter,
    applied: &mut Applied,
) {
    let main_api_goes = changes
        .iter()
        .any(|c| c.id.kind == Kind::Api && !c.id.name.contains('#'));
    let functions_go: BTreeSet<String> = changes
        .iter()
        .filter(|c| c.id.kind == Kind::Function)
        .map(|c| c.id.name.clone())
        .collect();
    let changes: Vec<Change> = changes
        .into_iter()
        .filter(|c| {
            !(main_api_goes
                && matches!(
                    c.id.kind,
                    Kind::Route | Kind::Integration | Kind::Authorizer | Kind::Stage
                ))
        })
        .filter(|c| !(c.id.kind == Kind::Permission && functions_go.contains(&c.id.name)))
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
    let snapshot: &LiveState = live;
    let results: Vec<(Change, Result<Option<Live>, AwsError>)> = stream::iter(changes)
        .map(|change| async move {
            let started = Instant::now();
            reporter.begin(&change);
            let result = apply_change(clients, target, snapshot, &change).await;
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
async fn apply_change(
    clients: &Clients,
    target: &Target,
    live: &LiveState,
    change: &Change,
) -> Result<Option<Live>, AwsError> {
    let current = live.resources.get(&change.id);
    let physical = current.and_then(|c| c.physical_id.clone());
    if matches!(change.action, Action::Delete | Action::Replace(_)) {
        delete_one(clients, target, &change.id, physical.as_deref()).await?;
        if change.action == Action::Delete {
            return Ok(None);
        }
    }
    let after = change
        .after
        .as_ref()
        .expect("creates and updates carry the desired spec");
    let existing = if matches!(change.action, Action::Update(_)) {
        current
    } else {
        None
    };
    let existing_id = existing.and_then(|c| c.physical_id.as_deref());
    let api_id = || target.api_id.clone().unwrap_or_default();
    let physical_id = match after {
        Spec::Secret(s) => {
            match existing {
                Some(Live {
                    spec: Spec::Secret(c),
                    ..
                }) => aws::ssm::update_tags(clients, s, &c.tags).await?,
                _ => aws::ssm::create(clients, s).await?,
            }
            None
        }
        Spec::Table(s) => match existing {
            Some(Live {
                spec: Spec::Table(c),
                physical_id,
            }) => {
                aws::dynamodb::update(clients, s, c, physical_id.as_deref().unwrap_or_default())
                    .await?;
                physical_id.clone()
            }
            _ => Some(aws::dynamodb::create(clients, s).await?),
        },
        Spec::LogGroup(s) => {
            match existing {
                Some(Live {
                    spec: Spec::LogGroup(c),
                    ..
                }) => aws::logs::update(clients, s, Some(c)).await?,
                _ => aws::logs::create(clients, s).await?,
            }
            None
        }
        Spec::Api(s) => match existing {
            Some(Live {
                spec: Spec::Api(c),
                physical_id: Some(id),
            }) => {
                aws::apigw::update_api(clients, id, s, c).await?;
                Some(id.clone())
            }
            _ => Some(aws::apigw::create_api(clients, s).await?),
        },
        Spec::Role(s) => match existing {
            Some(Live {
                spec: Spec::Role(c),
                physical_id,
            }) => {
                aws::iam::update(clients, s, Some(c)).await?;
                physical_id.clone()
            }
            _ => Some(aws::iam::create(clients, s).await?),
        },
        Spec::Function(s) => match existing {
            Some(Live {
                spec: Spec::Function(c),
                physical_id,
            }) => {
                aws::lambda::update(clients, s, Some(c)).await?;
                physical_id.clone()
            }
            _ => Some(aws::lambda::create(clients, s).await?),
        },
        Spec::Permission(s) => {
            aws::lambda::add_permission(clients, s).await?;
            None
        }
        Spec::Integration(s) => {
            Some(aws::apigw::put_integration(clients, &api_id(), s, existing_id).await?)
        }
        Spec::Authorizer(s) => {
            Some(aws::apigw::put_authorizer(clients, &api_id(), s, existing_id).await?)
        }
        Spec::Route(s) => {
            let integration = s
                .function
                .as_deref()
                .and_then(|f| live.physical_id(Kind::Integration, f));
            let authorizer = s
                .authorizer
                .as_deref()
                .and_then(|a| live.physical_id(Kind::Authorizer, a));
            Some(
                aws::apigw::put_route(clients, &api_id(), s, integration, authorizer, existing_id)
                    .await?,
            )
        }
        Spec::Stage(s) => {
            aws::apigw::create_stage(clients, &api_id(), s).await?;
            Some(s.name.clone())
        }
    };
    Ok(Some(Live {
        spec: after.clone(),
        physical_id,
    }))
}

async fn delete_one(
    clients: &Clients,
    target: &Target,
    id: &ResourceId,
    physical: Option<&str>,
) -> Result<(), AwsError> {
    let api_id = target.api_id.as_deref().unwrap_or_default();
    match id.kind {
        Kind::Secret => aws::ssm::delete(clients, &id.name).await,
        Kind::Table => aws::dynamodb::delete(clients, &id.name).await,
        Kind::LogGroup => aws::logs::delete(clients, &id.name).await,
        Kind::Api => aws::apigw::delete_api(clients, physical.unwrap_or(api_id)).await,
        Kind::Role => aws::iam::delete(clients, &id.name).await,
        Kind::Function => aws::lambda::delete(clients, &id.name).await,
        Kind::Permission => aws::lambda::remove_permission(clients, &id.name).await,
        Kind::Integration | Kind::Authorizer | Kind::Route | Kind::Stage => match physical {
            Some(child) => aws::apigw::delete_child(clients, api_id, id.kind, child).await,
            None => Ok(()),
        },
    }
}

/// Plan for the whole stack (all kinds at once), as `plan` and `status` show it.
pub fn full_plan(
    config: &Config,
    target: &Target,
    artifacts: &BTreeMap<String, Artifact>,
    live: &LiveState,
) -> Plan {
    let wanted = desired::desired(config, target, artifacts);
    plan::diff(&wanted, live, &Kind::ALL)
}

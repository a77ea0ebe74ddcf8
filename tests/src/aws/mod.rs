//! AWS behaviours moto lacks, played by the test proxy ([`crate::proxy`]). Each module follows
//! one service's API reference and cites it; [`behaviours`] is the set every proxy plays unless
//! a test asks for moto as it is.

pub mod account;
pub mod apigw;
pub mod cloudwatch;
mod domain;
pub mod dynamodb;
pub mod iam;
pub mod lambda;
pub mod pages;
pub mod partition;
pub mod ssm;

use std::sync::Arc;

use crate::proxy::Behaviour;

/// Every behaviour, with waits short enough for tests (AWS's own are minutes; the code under
/// test must not depend on their length, only on their existence). A test that marks functions
/// idle adds its own [`lambda::Idle`] to these.
pub fn behaviours() -> Vec<Box<dyn Behaviour>> {
    with_tables(Arc::new(dynamodb::Tables::default()))
}

/// Every behaviour, DynamoDB's being `tables`, which the caller keeps to move its clock.
pub fn with_tables(tables: Arc<dynamodb::Tables>) -> Vec<Box<dyn Behaviour>> {
    playing(tables, lambda::BusyFunctions::default())
}

/// Every behaviour, with `tables` and `busy` kept by the caller.
pub fn playing(
    tables: Arc<dynamodb::Tables>,
    busy: lambda::BusyFunctions,
) -> Vec<Box<dyn Behaviour>> {
    let roles = iam::NewRoles::default();
    vec![
        Box::new(tables),
        Box::new(iam::RoleCreation {
            roles: roles.clone(),
        }),
        Box::new(lambda::RoleNotYetAssumable {
            roles: roles.clone(),
        }),
        Box::new(busy),
        Box::new(lambda::AccountConcurrency::default()),
        Box::new(lambda::PolicyLimit::default()),
        // Before the stages: it refuses some of the stage calls those would answer.
        Box::new(account::AccountSettings::new(roles)),
        Box::new(apigw::Stages::default()),
        Box::new(apigw::AuthorizerReferences::default()),
        Box::new(domain::DomainTargets),
        Box::new(cloudwatch::Checks),
        Box::new(partition::ChinaEndpoints),
        // Last: it pages what the others have laid over moto's lists.
        Box::new(pages::OneItemPages),
    ]
}

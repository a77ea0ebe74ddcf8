//! AWS behaviours moto lacks, played by the test proxy ([`crate::proxy`]). Each module follows
//! one service's API reference and cites it; [`behaviours`] is the set every proxy plays unless
//! a test asks for moto as it is.

pub mod apigw;
mod domain;
pub mod partition;

use crate::proxy::Behaviour;

/// Every behaviour, with waits short enough for tests (AWS's own are minutes; the code under
/// test must not depend on their length, only on their existence).
pub fn behaviours() -> Vec<Box<dyn Behaviour>> {
    vec![
        Box::new(apigw::Stages::default()),
        Box::new(domain::DomainTargets),
        Box::new(partition::ChinaEndpoints),
    ]
}

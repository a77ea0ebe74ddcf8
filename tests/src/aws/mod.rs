//! AWS behaviours moto lacks, played by the test proxy ([`crate::proxy`]). Each module follows
//! one service's API reference and cites it; [`behaviours`] is the set every proxy plays unless
//! a test asks for moto as it is.

pub mod iam;
pub mod lambda;

use crate::proxy::Behaviour;

/// Every behaviour, with waits short enough for tests (AWS's own are minutes; the code under
/// test must not depend on their length, only on their existence). A test that marks functions
/// idle adds its own [`lambda::Idle`] to these.
pub fn behaviours() -> Vec<Box<dyn Behaviour>> {
    let roles = iam::NewRoles::default();
    vec![
        Box::new(iam::RoleCreation {
            roles: roles.clone(),
        }),
        Box::new(lambda::RoleNotYetAssumable { roles }),
    ]
}

//! IAM behaviours moto lacks.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::proxy::{Behaviour, Call, Exchange, Reply};

/// Roles CreateRole made that Lambda has not seen yet: shared with the Lambda behaviour that
/// refuses them ([`super::lambda::RoleNotYetAssumable`]).
///
/// On AWS a new role stays invisible to Lambda for some seconds, unbounded in principle:
/// "changes that you make in IAM take time to become visible" (IAM User Guide, "Troubleshooting
/// IAM"). Here the first call naming a new role is refused and the next one accepted, whatever
/// the time between them: the code under test must retry either way, and a deploy then makes
/// the same number of calls on every run, which the kill-at-every-call sweep relies on.
#[derive(Clone, Default)]
pub struct NewRoles(Arc<Mutex<HashSet<String>>>);

impl NewRoles {
    /// True for the first call naming the role an ARN names (`arn:aws:iam::ACCOUNT:role/PATH/
    /// NAME`) since CreateRole made it.
    pub fn propagating(&self, role_arn: &str) -> bool {
        let name = role_arn.rsplit('/').next().unwrap_or(role_arn);
        self.0.lock().unwrap().remove(name)
    }
}

/// Notes each role CreateRole made, for [`NewRoles`].
pub struct RoleCreation {
    pub roles: NewRoles,
}

impl Behaviour for RoleCreation {
    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        if call.service == "iam"
            && call.operation == "CreateRole"
            && reply.status == 200
            && let Some(name) = req.form("RoleName")
        {
            self.roles.0.lock().unwrap().insert(name);
        }
    }

    fn reset(&self) {
        self.roles.0.lock().unwrap().clear();
    }
}

//! IAM behaviours moto lacks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proxy::{Behaviour, Call, Exchange, Reply};

/// How long a new role stays invisible to Lambda here. On AWS it is seconds, unbounded in
/// principle: "changes that you make in IAM take time to become visible" (IAM User Guide,
/// "Troubleshooting IAM": changes I make are not always immediately visible).
pub const PROPAGATION: Duration = Duration::from_secs(2);

/// Roles by name, with when CreateRole made each: shared with the Lambda behaviour that refuses
/// them until they have propagated ([`super::lambda::RoleNotYetAssumable`]).
#[derive(Clone, Default)]
pub struct NewRoles(Arc<Mutex<HashMap<String, Instant>>>);

impl NewRoles {
    /// True while the role an ARN names (`arn:aws:iam::ACCOUNT:role/PATH/NAME`) was created
    /// less than [`PROPAGATION`] ago.
    pub fn propagating(&self, role_arn: &str) -> bool {
        let name = role_arn.rsplit('/').next().unwrap_or(role_arn);
        self.0
            .lock()
            .unwrap()
            .get(name)
            .is_some_and(|created| created.elapsed() < PROPAGATION)
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
            self.roles.0.lock().unwrap().insert(name, Instant::now());
        }
    }

    fn reset(&self) {
        self.roles.0.lock().unwrap().clear();
    }
}

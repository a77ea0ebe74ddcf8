//! Resource kinds. A kind is its spec type implementing [`Resource`], written next to the SDK
//! calls of its service in `aws/`, and one row of the list at the end of this file. Reading,
//! planning and applying go through that list, so none of them has per-kind code to extend.

use serde::Serialize;

use super::model::{Live, LiveState, ResourceId};
use super::plan::Action;
use crate::aws::{AwsError, Clients};
use crate::names::{Names, Target};
use crate::output::Reporter;

/// What a change can see while it is applied.
pub struct Applying<'a> {
    pub clients: &'a Clients,
    pub target: &'a Target,
    /// The stack before the current batch of changes: earlier waves' ids are in it.
    pub live: &'a LiveState,
    /// Where a change says something a user should know (a fallback it took).
    pub reporter: &'a Reporter,
}

impl Applying<'_> {
    /// The API's id, empty while it does not exist yet (only wave 0 runs then).
    pub fn api_id(&self) -> &str {
        self.target.api_id.as_deref().unwrap_or_default()
    }
}

/// One kind of resource: its metadata for the plan and how to read, create, update and delete it.
pub trait Resource {
    /// How plans and progress lines name the kind.
    const LABEL: &'static str;
    /// Kinds of one wave are applied in parallel, after every earlier wave: a kind's wave is
    /// above the waves of the kinds whose names or ids its spec needs.
    const WAVE: u8;
    /// Fields that cannot change in place: a change to one replaces the resource.
    const IMMUTABLE_FIELDS: &'static [&'static str] = &[];

    /// Its stable name within the stack (unique per kind).
    fn name(&self) -> &str;

    /// Puts the stack's live resources of this kind into `live`, and into `live.foreign` those
    /// named in `expected` that exist without the stack's tags. A kind found only through
    /// another resource (an API's children, a function's permission) is read by that kind's
    /// `read`, because listing it needs what the other read has just fetched.
    async fn read(
        _clients: &Clients,
        _names: &Names,
        _expected: &[String],
        _live: &mut LiveState,
    ) -> Result<(), AwsError> {
        Ok(())
    }

    /// Creates it; returns the id AWS gave it, if the engine needs one later.
    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError>;

    /// Changes `current` (AWS's id `physical_id`) into `self` in place; returns the id as
    /// `create` does. A kind whose changeable fields are all immutable is never planned as an
    /// update and keeps the default, which creates.
    async fn update(
        &self,
        _current: &Self,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        self.create(cx).await
    }

    /// A sentence for the plan and the deploy about creating `self` or changing `current` into
    /// it: what the change reaches beyond the stack, or, when it cannot happen in one go (a
    /// service limit spaces the steps out in time), what happens now, what later, and when.
    fn note(&self, _current: Option<&Self>) -> Option<String> {
        None
    }

    /// Deletes it; one that is already gone is no error.
    async fn delete(
        name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError>;

    /// True when deleting `other` deletes this one too: it is then not deleted on its own,
    /// which would fail or race.
    fn goes_with(_name: &str, _other: &ResourceId) -> bool {
        false
    }

    /// What `action` on the resource named `name` loses that no re-run brings back (connected
    /// clients, the URL, stored items), for the plan's `(!)`: `deploy` asks before making it.
    fn drops(_name: &str, _action: &Action) -> Option<&'static str> {
        None
    }

    /// Whether the stage serves `action` only once it is deployed ("Deploy WebSocket APIs in
    /// API Gateway": every change under the API but the stage's own settings).
    fn needs_deployment(_action: &Action) -> bool {
        false
    }
}

/// Declares [`Kind`] and [`Spec`] from the list and routes each per-kind question to the
/// kind's [`Resource`] impl.
macro_rules! kinds {
    ($($kind:ident => $service:ident :: $spec:ident,)+) => {
        pub use crate::aws::{$($service::$spec),+};

        /// Resource kinds, in creation order. Deletion runs in the reverse order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind {
            $($kind),+
        }

        /// One resource as the config wants it or as AWS has it.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Spec {
            $($kind($spec)),+
        }

        impl Kind {
            pub const ALL: [Kind; [$(Kind::$kind),+].len()] = [$(Kind::$kind),+];

            pub fn label(self) -> &'static str {
                match self {
                    $(Kind::$kind => <$spec as Resource>::LABEL),+
                }
            }

            pub fn wave(self) -> u8 {
                match self {
                    $(Kind::$kind => <$spec as Resource>::WAVE),+
                }
            }

            pub fn immutable_fields(self) -> &'static [&'static str] {
                match self {
                    $(Kind::$kind => <$spec as Resource>::IMMUTABLE_FIELDS),+
                }
            }

            pub async fn read(
                self,
                clients: &Clients,
                names: &Names,
                expected: &[String],
                live: &mut LiveState,
            ) -> Result<(), AwsError> {
                match self {
                    $(Kind::$kind => <$spec as Resource>::read(clients, names, expected, live).await),+
                }
            }

            pub async fn delete(
                self,
                name: &str,
                physical_id: Option<&str>,
                cx: &Applying<'_>,
            ) -> Result<(), AwsError> {
                match self {
                    $(Kind::$kind => <$spec as Resource>::delete(name, physical_id, cx).await),+
                }
            }

            pub fn goes_with(self, name: &str, other: &ResourceId) -> bool {
                match self {
                    $(Kind::$kind => <$spec as Resource>::goes_with(name, other)),+
                }
            }

            pub fn drops(self, name: &str, action: &Action) -> Option<&'static str> {
                match self {
                    $(Kind::$kind => <$spec as Resource>::drops(name, action)),+
                }
            }

            pub fn needs_deployment(self, action: &Action) -> bool {
                match self {
                    $(Kind::$kind => <$spec as Resource>::needs_deployment(action)),+
                }
            }
        }

        impl Spec {
            pub fn kind(&self) -> Kind {
                match self {
                    $(Spec::$kind(_) => Kind::$kind),+
                }
            }

            pub fn name(&self) -> &str {
                match self {
                    $(Spec::$kind(s) => s.name()),+
                }
            }

            /// The kind's [`Resource::note`] on creating this, or changing `current` into it.
            pub fn note(&self, current: Option<&Spec>) -> Option<String> {
                match (self, current) {
                    $((Spec::$kind(s), Some(Spec::$kind(c))) => s.note(Some(c)),)+
                    $((Spec::$kind(s), None) => s.note(None),)+
                    _ => None,
                }
            }

            /// Updates `existing` (what is live under the same id) in place, or creates.
            /// Returns the id AWS gave the resource.
            pub async fn put(
                &self,
                existing: Option<&Live>,
                cx: &Applying<'_>,
            ) -> Result<Option<String>, AwsError> {
                let physical_id = existing.and_then(|l| l.physical_id.as_deref());
                match (self, existing.map(|l| &l.spec)) {
                    $((Spec::$kind(s), Some(Spec::$kind(c))) => s.update(c, physical_id, cx).await,)+
                    $((Spec::$kind(s), _) => s.create(cx).await,)+
                }
            }
        }
    };
}

// Creation order: a kind comes after every kind it needs, and its wave is not lower. Roles need
// the API's id (their policy names its stage) and their boundary; functions need roles, and a
// function's URL its function; everything API Gateway
// holds needs the functions; the permission of the authorizer's function names the
// authorizer's id; routes need the integrations and the authorizer, and come after the
// permissions so that no route is live before API Gateway may invoke its function; a custom
// domain's API mapping needs the stage; a stage that writes access logs needs the account's
// logging role; alarms name the API's id and the topic, the dashboard the alarms.
kinds! {
    Secret => ssm::SecretSpec,
    Topic => sns::TopicSpec,
    EventBus => events::EventBusSpec,
    Table => dynamodb::TableSpec,
    LogGroup => logs::LogGroupSpec,
    Api => apigw::ApiSpec,
    Boundary => iam::BoundarySpec,
    Role => iam::RoleSpec,
    Account => account::AccountSpec,
    Function => lambda::FunctionSpec,
    FunctionUrl => lambda::FunctionUrlSpec,
    Integration => apigw::IntegrationSpec,
    Authorizer => apigw::AuthorizerSpec,
    Permission => lambda::PermissionSpec,
    Route => apigw::RouteSpec,
    Stage => apigw::StageSpec,
    Domain => domain::DomainSpec,
    ApiMapping => domain::ApiMappingSpec,
    Alarm => cloudwatch::AlarmSpec,
    Dashboard => cloudwatch::DashboardSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans are sorted by kind and applied by wave; the two orders must agree.
    #[test]
    fn waves_follow_the_creation_order() {
        let waves: Vec<u8> = Kind::ALL.iter().map(|k| k.wave()).collect();
        assert!(waves.is_sorted(), "{waves:?}");
    }

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<&str> = Kind::ALL.iter().map(|k| k.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Kind::ALL.len());
    }
}

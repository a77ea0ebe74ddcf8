//! The stack's EventBridge bus (`events:` without a `bus:` of its own), tagged with the stack.

use aws_sdk_eventbridge::types::Tag;
use serde::Serialize;

use super::{AwsError, CallContext, Clients, TagChange, found, tag_map};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};
use crate::names::Names;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventBusSpec {
    pub name: String,
    pub tags: Tags,
}

impl Resource for EventBusSpec {
    const LABEL: &'static str = "event bus";
    const WAVE: u8 = 0;

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(
        clients: &Clients,
        names: &Names,
        expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let name = names.event_bus();
        let Some(bus) = found(clients.events.describe_event_bus().name(&name).send().await)
            .ctx("DescribeEventBus", &name)?
        else {
            return Ok(());
        };
        let Some(arn) = bus.arn else {
            return Ok(());
        };
        let tags = tag_map(
            clients
                .events
                .list_tags_for_resource()
                .resource_arn(&arn)
                .send()
                .await
                .ctx("ListTagsForResource", &name)?
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value)),
        );
        let id = ResourceId {
            kind: Kind::EventBus,
            name: name.clone(),
        };
        if !names.owns(&tags) {
            if expected.contains(&name) {
                live.foreign.push(id);
            }
            return Ok(());
        }
        live.resources.insert(
            id,
            Live {
                spec: Spec::EventBus(EventBusSpec { name, tags }),
                physical_id: Some(arn),
            },
        );
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let created = cx
            .clients
            .events
            .create_event_bus()
            .name(&self.name)
            .set_tags(Some(bus_tags(&self.tags)))
            .send()
            .await
            .ctx("CreateEventBus", &self.name)?;
        Ok(created.event_bus_arn)
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        let arn = physical_id
            .map(str::to_string)
            .unwrap_or_else(|| cx.target.arn("events", &format!("event-bus/{}", self.name)));
        let events = &cx.clients.events;
        if let Some(change) = TagChange::between(Some(&current.tags), &self.tags) {
            change
                .apply(
                    async |keys| {
                        events
                            .untag_resource()
                            .resource_arn(&arn)
                            .set_tag_keys(Some(keys))
                            .send()
                            .await
                            .ctx("UntagResource", &self.name)?;
                        Ok(())
                    },
                    async |tags| {
                        events
                            .tag_resource()
                            .resource_arn(&arn)
                            .set_tags(Some(bus_tags(tags)))
                            .send()
                            .await
                            .ctx("TagResource", &self.name)?;
                        Ok(())
                    },
                )
                .await?;
        }
        Ok(Some(arn))
    }

    /// EventBridge deletes a bus only once its rules are gone ("DeleteEventBus", EventBridge
    /// API Reference: "All rules associated with this event bus need to be deleted"), and a
    /// rule only once its targets are ("DeleteRule"). The rules are the applications', on the
    /// stack's bus: the plan marks the bus's deletion `(!)` for them, and they go with it.
    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let events = &cx.clients.events;
        let mut token = None;
        loop {
            let Some(page) = found(
                events
                    .list_rules()
                    .event_bus_name(name)
                    .set_next_token(token.take())
                    .send()
                    .await,
            )
            .ctx("ListRules", name)?
            else {
                return Ok(()); // the bus is gone already
            };
            for rule in page.rules.unwrap_or_default() {
                let Some(rule) = rule.name else { continue };
                let targets: Vec<String> = events
                    .list_targets_by_rule()
                    .rule(&rule)
                    .event_bus_name(name)
                    .send()
                    .await
                    .ctx("ListTargetsByRule", &rule)?
                    .targets
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| t.id)
                    .collect();
                if !targets.is_empty() {
                    events
                        .remove_targets()
                        .rule(&rule)
                        .event_bus_name(name)
                        .set_ids(Some(targets))
                        .send()
                        .await
                        .ctx("RemoveTargets", &rule)?;
                }
                found(
                    events
                        .delete_rule()
                        .name(&rule)
                        .event_bus_name(name)
                        .send()
                        .await,
                )
                .ctx("DeleteRule", &rule)?;
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        found(events.delete_event_bus().name(name).send().await).ctx("DeleteEventBus", name)?;
        Ok(())
    }

    /// The applications' rules on the bus route its events: a new bus has none of them.
    fn drops(_name: &str, action: &crate::engine::plan::Action) -> Option<&'static str> {
        matches!(
            action,
            crate::engine::plan::Action::Delete | crate::engine::plan::Action::Replace(_)
        )
        .then_some("the event bus, and with it every rule on it that applications added")
    }
}

fn bus_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

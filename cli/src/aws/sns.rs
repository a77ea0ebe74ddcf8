//! The topic alarms tell when `alarms.emails` lists addresses, and its email subscriptions.

use aws_sdk_sns::types::Tag;
use serde::Serialize;

use super::{AwsError, CallContext, Clients, TagChange, all_pages, found, tag_map};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};
use crate::names::Names;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicSpec {
    pub name: String,
    /// Subscribed addresses, sorted; each confirms from the mail SNS sends it.
    pub emails: Vec<String>,
    pub tags: Tags,
}

/// What ListSubscriptionsByTopic shows for a subscription not yet confirmed: it has no ARN
/// there, so wsctl cannot remove it; SNS deletes subscriptions that are never confirmed
/// ("Subscribe", Amazon SNS API Reference).
const PENDING: &str = "PendingConfirmation";

impl Resource for TopicSpec {
    const LABEL: &'static str = "topic";
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
        let name = names.alarm_topic();
        let suffix = format!(":{name}");
        let topics = all_pages(async |token| {
            let page = clients
                .sns
                .list_topics()
                .set_next_token(token)
                .send()
                .await
                .ctx("ListTopics", &name)?;
            Ok((page.topics.unwrap_or_default(), page.next_token))
        })
        .await?;
        let Some(arn) = topics
            .into_iter()
            .filter_map(|t| t.topic_arn)
            .find(|arn| arn.ends_with(&suffix))
        else {
            return Ok(());
        };
        let tags = tag_map(
            clients
                .sns
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
            kind: Kind::Topic,
            name: name.clone(),
        };
        if !names.owns(&tags) {
            if expected.contains(&name) {
                live.foreign.push(id);
            }
            return Ok(());
        }
        let mut emails: Vec<String> = subscriptions(clients, &arn)
            .await?
            .into_iter()
            .map(|(email, _)| email)
            .collect();
        emails.sort();
        emails.dedup();
        live.resources.insert(
            id,
            Live {
                spec: Spec::Topic(TopicSpec { name, emails, tags }),
                physical_id: Some(arn),
            },
        );
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        // CreateTopic of a name that exists answers its ARN: a re-run adopts its own topic.
        let arn = clients
            .sns
            .create_topic()
            .name(&self.name)
            .set_tags(Some(sns_tags(&self.tags)))
            .send()
            .await
            .ctx("CreateTopic", &self.name)?
            .topic_arn
            .unwrap_or_else(|| cx.target.arn("sns", &self.name));
        let existing: Vec<String> = subscriptions(clients, &arn)
            .await?
            .into_iter()
            .map(|(email, _)| email)
            .collect();
        for email in self.emails.iter().filter(|e| !existing.contains(e)) {
            subscribe(clients, &arn, email).await?;
        }
        Ok(Some(arn))
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let arn = physical_id
            .map(str::to_string)
            .unwrap_or_else(|| cx.target.arn("sns", &self.name));
        if self.emails != current.emails {
            for (email, subscription) in subscriptions(clients, &arn).await? {
                if self.emails.contains(&email) {
                    continue;
                }
                if subscription == PENDING {
                    cx.reporter.note(&format!(
                        "topic {}: {email} never confirmed its subscription, so it cannot be removed; SNS deletes it unconfirmed after a few days",
                        self.name
                    ));
                    continue;
                }
                found(
                    clients
                        .sns
                        .unsubscribe()
                        .subscription_arn(&subscription)
                        .send()
                        .await,
                )
                .ctx("Unsubscribe", &email)?;
            }
            for email in self.emails.iter().filter(|e| !current.emails.contains(e)) {
                subscribe(clients, &arn, email).await?;
            }
        }
        if let Some(change) = TagChange::between(Some(&current.tags), &self.tags) {
            change
                .apply(
                    async |keys| {
                        clients
                            .sns
                            .untag_resource()
                            .resource_arn(&arn)
                            .set_tag_keys(Some(keys))
                            .send()
                            .await
                            .ctx("UntagResource", &self.name)?;
                        Ok(())
                    },
                    async |tags| {
                        clients
                            .sns
                            .tag_resource()
                            .resource_arn(&arn)
                            .set_tags(Some(sns_tags(tags)))
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

    async fn delete(
        name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let arn = physical_id
            .map(str::to_string)
            .unwrap_or_else(|| cx.target.arn("sns", name));
        // DeleteTopic removes its subscriptions, and of a topic that is gone is no error.
        found(cx.clients.sns.delete_topic().topic_arn(&arn).send().await)
            .ctx("DeleteTopic", name)?;
        Ok(())
    }
}

fn sns_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

/// The topic's email subscriptions: (address, subscription ARN or [`PENDING`]).
async fn subscriptions(clients: &Clients, arn: &str) -> Result<Vec<(String, String)>, AwsError> {
    let all = all_pages(async |token| {
        let page = clients
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(arn)
            .set_next_token(token)
            .send()
            .await
            .ctx("ListSubscriptionsByTopic", arn)?;
        Ok((page.subscriptions.unwrap_or_default(), page.next_token))
    })
    .await?;
    Ok(all
        .into_iter()
        .filter(|s| s.protocol() == Some("email"))
        .filter_map(|s| Some((s.endpoint?, s.subscription_arn?)))
        .collect())
}

async fn subscribe(clients: &Clients, arn: &str, email: &str) -> Result<(), AwsError> {
    clients
        .sns
        .subscribe()
        .topic_arn(arn)
        .protocol("email")
        .endpoint(email)
        .send()
        .await
        .ctx("Subscribe", email)?;
    Ok(())
}

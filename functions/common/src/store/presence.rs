//! Presence: a channel's members, kept in the channel's `#presence` partition.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde_json::Value;

use crate::auth::now;
use crate::protocol::Member;

use super::*;

impl Store {
    /// Enters a channel's presence set with `member` data. The member's item lives in the
    /// channel's presence partition ([`presence_partition`]), apart from its subscribers: a
    /// fan-out reads none of it, and presence alone never receives the channel's messages.
    /// False when the connection was present with the same data already: nothing to announce.
    pub async fn enter_presence(
        &self,
        channel: &str,
        connection: &str,
        user: &str,
        member: &Value,
    ) -> Result<bool, StoreError> {
        let t = &self.tables.subscriptions;
        let member_json = member.to_string();
        let out = self
            .db
            .update_item()
            .table_name(t)
            .key(SUB_CHANNEL, s(presence_partition(channel)))
            .key(SUB_CONNECTION, s(connection))
            .update_expression("SET #u = :u, #t = :t, present = :p, #l = :f, #m = :m")
            .expression_attribute_names("#u", "user")
            .expression_attribute_names("#t", &self.tables.ttl.subscriptions)
            .expression_attribute_names("#l", "listening")
            .expression_attribute_names("#m", "member")
            .expression_attribute_values(":u", s(user))
            .expression_attribute_values(":t", n(now() + CONNECTION_TTL_SECS))
            .expression_attribute_values(":p", AttributeValue::Bool(true))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":m", s(&member_json))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err("UpdateItem", t))?;
        let old = out.attributes.unwrap_or_default();
        Ok(get_s(&old, "member").as_deref() != Some(member_json.as_str()))
    }

    /// Leaves the presence set; true when the connection was present.
    pub async fn leave_presence(
        &self,
        channel: &str,
        connection: &str,
    ) -> Result<bool, StoreError> {
        if self.delete_member(channel, connection).await?.is_some() {
            return Ok(true);
        }
        self.leave_legacy_presence(channel, connection).await
    }

    /// Deletes the connection's member item of `channel`; returns it as it was.
    pub(super) async fn delete_member(
        &self,
        channel: &str,
        connection: &str,
    ) -> Result<Option<Subscriber>, StoreError> {
        let t = &self.tables.subscriptions;
        let old = self
            .db
            .delete_item()
            .table_name(t)
            .key(SUB_CHANNEL, s(presence_partition(channel)))
            .key(SUB_CONNECTION, s(connection))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err("DeleteItem", t))?;
        Ok(old.attributes.map(|item| subscriber(&item)))
    }

    /// Presence entered before member data had items of its own was a flag on the
    /// subscription item (a connection lives two hours at most, so such items are gone two
    /// hours after an upgrade). The item of a connection that was present without being
    /// subscribed goes entirely.
    pub(super) async fn leave_legacy_presence(
        &self,
        channel: &str,
        connection: &str,
    ) -> Result<bool, StoreError> {
        let t = &self.tables.subscriptions;
        let result = self
            .db
            .update_item()
            .table_name(t)
            .key(SUB_CHANNEL, s(channel))
            .key(SUB_CONNECTION, s(connection))
            .update_expression("REMOVE present, #m")
            .condition_expression("attribute_exists(present)")
            .expression_attribute_names("#m", "member")
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                if out
                    .attributes
                    .as_ref()
                    .is_some_and(|item| !subscriber(item).listening)
                {
                    let deleted = self
                        .db
                        .delete_item()
                        .table_name(t)
                        .key(SUB_CHANNEL, s(channel))
                        .key(SUB_CONNECTION, s(connection))
                        // A subscribe that slipped in between keeps its item.
                        .condition_expression("listening = :f AND attribute_not_exists(present)")
                        .expression_attribute_values(":f", AttributeValue::Bool(false))
                        .send()
                        .await;
                    match deleted {
                        Err(e)
                            if !e
                                .as_service_error()
                                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                        {
                            return Err(err("DeleteItem", t)(e));
                        }
                        _ => {}
                    }
                }
                Ok(true)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(err("UpdateItem", t)(e)),
        }
    }

    /// Present members of a channel, in connection-id order after `after`: at most `max`, in
    /// at most two pages read, and no more than fit one frame. The second value is where the
    /// next call continues.
    pub async fn members(
        &self,
        channel: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Member>, Option<String>), StoreError> {
        // Bounded work per call whatever the channel's size: a query reads at most two pages
        // of subscribers and says where to go on.
        const PAGES: usize = 2;
        let budget = crate::protocol::MAX_FRAME_BYTES - 4096;
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut start = after.map(|a| {
            Key::from([
                (SUB_CHANNEL.to_string(), s(channel)),
                (SUB_CONNECTION.to_string(), s(a)),
            ])
        });
        let partition = presence_partition(channel);
        if let Some(k) = start.as_mut() {
            k.insert(SUB_CHANNEL.to_string(), s(&partition));
        }
        for _ in 0..PAGES {
            let (page, next) = self.subscribers(&partition, start.take(), 1000).await?;
            for sub in page {
                if !sub.present {
                    continue;
                }
                let member = Member {
                    user: sub.user,
                    connection: sub.connection,
                    data: sub.member,
                };
                bytes += serde_json::to_string(&member)
                    .map(|m| m.len() + 1)
                    .unwrap_or_default();
                if out.len() == max || bytes > budget {
                    let last = out.last().map(|m: &Member| m.connection.clone());
                    return Ok((out, last));
                }
                out.push(member);
            }
            match next {
                Some(k) => start = Some(k),
                None => return Ok((out, None)),
            }
        }
        Ok((out, start.and_then(|k| get_s(&k, SUB_CONNECTION))))
    }

    /// The second half: deletes the connection's member items of `channels`, and then, if
    /// `last`, the connection's item. Until that item is gone, `wsctl gc` finds the connection
    /// and finishes what a `$disconnect` left.
    pub async fn remove_presence(
        &self,
        connection: &str,
        channels: impl IntoIterator<Item = &str>,
        last: bool,
    ) -> Result<(), StoreError> {
        let keys = channels
            .into_iter()
            .map(|c| subscription_key(&presence_partition(c), connection))
            .collect();
        self.delete_keys(&self.tables.subscriptions, keys).await?;
        if last {
            self.delete_connection_item(connection).await?;
        }
        Ok(())
    }
}

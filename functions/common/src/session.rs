//! A connection's token after the handshake, and revocations.
//!
//! API Gateway gives every event of a connection the context its authorizer returned at the
//! handshake, for the connection's whole life (up to 2 hours): the user, the capabilities, the
//! token's expiry and issue time. A renewal (an `auth` frame) cannot change that context, so
//! the renewed token's expiry and capabilities are kept in the connection's limit item, which
//! every frame reads anyway ([`Store::take_reading`]): a renewal costs one write, and no frame
//! pays a read for it.
//!
//! `wsctl revoke --user U` writes one item, `#revoked:U`, holding the time before which U's
//! tokens were issued: the authorizer reads it (strongly consistent) on every handshake that
//! passes, the message function on every `auth` frame, and through [`RevocationCache`] (at
//! most [`REVOCATION_CACHE`] old) on every other frame.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::auth::{Capabilities, Identity};
use crate::limits::{KEEP, connection_key};
use crate::store::{Key, Store, StoreError, err, get_n};

/// The token a connection acts under.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// `exp` of the token, epoch seconds; `None` for a connection without an authorizer.
    pub expires: Option<u64>,
    /// `iat` of the token; `None` when it carried none.
    pub issued: Option<u64>,
    pub caps: Capabilities,
}

const EXPIRES: &str = "exp";
const ISSUED: &str = "iat";
const CAPS: &str = "cap";

impl Session {
    /// The renewal kept in a connection's limit item, if there is one.
    pub fn from_item(item: &Key) -> Option<Session> {
        let expires = get_n(item, EXPIRES)?;
        let caps = item
            .get(CAPS)
            .and_then(|v| v.as_s().ok())
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        Some(Session {
            expires: Some(expires),
            issued: get_n(item, ISSUED),
            caps,
        })
    }

    pub fn of(identity: &Identity) -> Session {
        Session {
            expires: Some(identity.expires),
            issued: identity.issued,
            caps: identity.capabilities.clone(),
        }
    }

    pub fn expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }

    /// Issued before `before` (a token without `iat` may be from any time, so it is).
    pub fn revoked_by(&self, before: Option<u64>) -> bool {
        before.is_some_and(|b| self.issued.is_none_or(|i| i < b))
    }
}

/// The item holding a user's revocation.
pub fn revocation_key(user: &str) -> String {
    format!("#revoked:{user}")
}

const BEFORE: &str = "before";

/// How long a frame may act on a revocation lookup: a connection opened as `wsctl revoke` ran
/// sends frames for at most this long (the revocation closes every connection it finds).
pub const REVOCATION_CACHE: Duration = Duration::from_secs(10);
/// Users whose lookups one instance keeps.
const CACHED_USERS: usize = 10_000;

impl Store {
    /// Keeps `session` as `connection`'s token: in its limit item, until the token expires.
    /// The item's version moves on, so a frame that read the old token and is now writing its
    /// budget reads again.
    pub async fn renew(&self, connection: &str, session: &Session) -> Result<(), StoreError> {
        let t = &self.tables.counters;
        let expires = session.expires.unwrap_or_default();
        let keep = expires + 60;
        // Every name through a placeholder: DynamoDB reserves hundreds of words.
        let mut update =
            "SET #e = :e, #c = :c, #k = :k, #t = :k, #v = if_not_exists(#v, :zero) + :one"
                .to_string();
        let names = HashMap::from([
            ("#e".to_string(), EXPIRES.to_string()),
            ("#c".to_string(), CAPS.to_string()),
            ("#k".to_string(), KEEP.to_string()),
            ("#t".to_string(), self.tables.ttl.counters.clone()),
            ("#v".to_string(), "v".to_string()),
            ("#i".to_string(), ISSUED.to_string()),
        ]);
        let mut values = HashMap::from([
            (":e".to_string(), AttributeValue::N(expires.to_string())),
            (
                ":c".to_string(),
                AttributeValue::S(serde_json::to_string(&session.caps).unwrap_or_default()),
            ),
            (":k".to_string(), AttributeValue::N(keep.to_string())),
            (":zero".to_string(), AttributeValue::N("0".into())),
            (":one".to_string(), AttributeValue::N("1".into())),
        ]);
        match session.issued {
            Some(iat) => {
                update.push_str(", #i = :i");
                values.insert(":i".into(), AttributeValue::N(iat.to_string()));
            }
            None => update.push_str(" REMOVE #i"),
        }
        self.db
            .update_item()
            .table_name(t)
            .key(
                crate::layout::COUNTERS.partition_key.name,
                AttributeValue::S(connection_key(connection)),
            )
            .update_expression(update)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(err("UpdateItem", t))?;
        Ok(())
    }

    /// Refuses every token of `user` issued before `before` (epoch seconds). A later
    /// revocation replaces an earlier one; an earlier one never replaces a later one.
    pub async fn revoke(&self, user: &str, before: u64) -> Result<(), StoreError> {
        let t = &self.tables.counters;
        let written = self
            .db
            .update_item()
            .table_name(t)
            .key(
                crate::layout::COUNTERS.partition_key.name,
                AttributeValue::S(revocation_key(user)),
            )
            .update_expression("SET #b = :b")
            .condition_expression("attribute_not_exists(#b) OR #b < :b")
            .expression_attribute_names("#b", BEFORE)
            .expression_attribute_values(":b", AttributeValue::N(before.to_string()))
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(err("UpdateItem", t)(e)),
        }
    }

    /// The time before which `user`'s tokens are revoked, if they ever were.
    pub async fn revoked_before(&self, user: &str) -> Result<Option<u64>, StoreError> {
        let t = &self.tables.counters;
        let got = self
            .db
            .get_item()
            .table_name(t)
            .key(
                crate::layout::COUNTERS.partition_key.name,
                AttributeValue::S(revocation_key(user)),
            )
            .consistent_read(true)
            .projection_expression("#b")
            .expression_attribute_names("#b", BEFORE)
            .send()
            .await
            .map_err(err("GetItem", t))?;
        Ok(got.item.as_ref().and_then(|i| get_n(i, BEFORE)))
    }
}

/// Revocation lookups of one instance, each used for [`REVOCATION_CACHE`].
#[derive(Default)]
pub struct RevocationCache {
    entries: Mutex<HashMap<String, (Option<u64>, Instant)>>,
}

impl RevocationCache {
    pub async fn before(&self, store: &Store, user: &str) -> Result<Option<u64>, StoreError> {
        if let Some((before, at)) = self.entries.lock().unwrap().get(user)
            && at.elapsed() < REVOCATION_CACHE
        {
            return Ok(*before);
        }
        let before = store.revoked_before(user).await?;
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= CACHED_USERS {
            entries.retain(|_, (_, at)| at.elapsed() < REVOCATION_CACHE);
            if entries.len() >= CACHED_USERS {
                entries.clear();
            }
        }
        entries.insert(user.to_string(), (before, Instant::now()));
        Ok(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_revoked_when_issued_before_the_revocation_or_at_no_known_time() {
        let s = |issued| Session {
            expires: Some(2_000),
            issued,
            caps: Capabilities::default(),
        };
        assert!(!s(Some(100)).revoked_by(None));
        assert!(s(Some(100)).revoked_by(Some(101)));
        assert!(!s(Some(101)).revoked_by(Some(101)));
        assert!(s(None).revoked_by(Some(1)));
        assert!(!s(None).expired(1_999));
        assert!(s(None).expired(2_000));
    }
}

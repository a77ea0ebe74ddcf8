//! The connections table: one item per open connection, and their removal with everything
//! they hold.

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::auth::now;

use super::*;

impl Store {
    pub async fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let t = &self.tables.connections;
        self.db
            .put_item()
            .table_name(t)
            .item(CONNECTION_ID, s(&c.id))
            .item("user", s(&c.user))
            .item(
                "cap",
                s(serde_json::to_string(&c.capabilities).unwrap_or_default()),
            )
            .item("connected_at", n(c.connected_at))
            .item(&self.tables.ttl.connections, n(now() + CONNECTION_TTL_SECS))
            .send()
            .await
            .map_err(err("PutItem", t))?;
        Ok(())
    }

    pub async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let t = &self.tables.connections;
        let got = self
            .db
            .get_item()
            .table_name(t)
            .key(CONNECTION_ID, s(id))
            .send()
            .await
            .map_err(err("GetItem", t))?;
        Ok(got.item.map(|item| Connection {
            id: id.to_string(),
            user: get_s(&item, "user").unwrap_or_default(),
            capabilities: get_s(&item, "cap")
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_default(),
            connected_at: get_n(&item, "connected_at").unwrap_or_default(),
        }))
    }

    /// Removes a connection and every subscription it holds (batched deletes). Returns the
    /// channels where it was present, so a `leave` can be announced there.
    pub async fn remove_connection(
        &self,
        connection: &str,
    ) -> Result<Vec<(String, Subscriber)>, StoreError> {
        let present = self.delete_holdings(connection, true).await?;
        self.delete_connection_item(connection).await?;
        Ok(present)
    }

    pub(super) async fn delete_connection_item(&self, connection: &str) -> Result<(), StoreError> {
        // The connection item goes last and on its own: until it is gone, a run cut short
        // half-way leaves the id findable by the next sweep instead of orphaning subscriptions.
        let c = &self.tables.connections;
        self.db
            .delete_item()
            .table_name(c)
            .key(CONNECTION_ID, s(connection))
            .send()
            .await
            .map_err(err("DeleteItem", c))?;
        Ok(())
    }

    /// Removes many connections at once, as [`Store::remove_connection`] does one: their
    /// subscriptions are found by one Scan of the subscriptions table, in `segments` parallel
    /// segments, instead of one index Query per connection, and deleted in batches as the scan
    /// goes; the connection items follow, also in batches, once every subscription is gone.
    /// Reading a table once is cheaper than querying the index for each of many connections
    /// (a Query costs at least 0.5 read unit, a Scan 0.5 per 4 KB read), and it is a handful of
    /// calls instead of one per connection.
    ///
    /// Returns, per connection, the channels where it was present, found so far even when the
    /// removal then failed: those members are gone either way, and their `leave` is due. After
    /// a failure the connection items are all still there (and some subscriptions may be), so
    /// [`Store::remove_connection`] can finish each one.
    pub async fn remove_connections(
        &self,
        connections: &HashSet<String>,
        segments: u32,
    ) -> (
        HashMap<String, Vec<(String, Subscriber)>>,
        Result<(), StoreError>,
    ) {
        let segments = segments.clamp(1, 64) as i32;
        let scans = futures::future::join_all(
            (0..segments).map(|segment| self.remove_subscriptions(connections, segment, segments)),
        )
        .await;
        let mut present: HashMap<String, Vec<(String, Subscriber)>> = HashMap::new();
        let mut failed = None;
        for (found, outcome) in scans {
            for (channel, subscriber) in found {
                present
                    .entry(subscriber.connection.clone())
                    .or_default()
                    .push((channel, subscriber));
            }
            if let Err(e) = outcome {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            return (present, Err(e));
        }
        let keys: Vec<_> = connections
            .iter()
            .map(|id| HashMap::from([(CONNECTION_ID.to_string(), s(id))]))
            .collect();
        let c = &self.tables.connections;
        let deleted = stream::iter(
            keys.chunks(BATCH)
                .map(|chunk| self.delete_keys(c, chunk.to_vec())),
        )
        .buffer_unordered(segments as usize)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ());
        (present, deleted)
    }
}

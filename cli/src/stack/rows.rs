//! The connections table read as rows: what `gc`, `connections` and `tail` list and sweep.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use wsctl_functions::layout::CONNECTIONS;
use wsctl_functions::store::Store;

use crate::aws::CallContext;
use crate::error::Error;

/// Scan segments read at once.
const SEGMENTS: i32 = 4;
/// Items per Scan page. DynamoDB's own limit (1 MB, ~15,000 rows here) would make each
/// segment's page, parsed, weigh tens of MB; a thousand keeps a sweep's memory small and flat
/// for the price of a few more Scan calls, nothing next to one GetConnection per row.
const PAGE: i32 = 1000;

/// One row of the connections table.
pub struct Row {
    pub id: String,
    pub user: String,
    pub connected_at: u64,
    pub expires: Option<u64>,
}

/// Every row of the connections table, read by `SEGMENTS` parallel scans.
pub async fn scan(store: &Store) -> Result<Vec<Row>, Error> {
    rows(store).try_collect().await
}

/// The connections table as a stream of rows: `SEGMENTS` scans, one page at a time each.
pub fn rows(store: &Store) -> impl Stream<Item = Result<Row, Error>> + '_ {
    stream::select_all((0..SEGMENTS).map(|segment| segment_pages(store, segment).boxed()))
        .map_ok(|rows| stream::iter(rows.into_iter().map(Ok)))
        .try_flatten()
}

/// One scan segment, page by page; ends after its last page or its first error.
fn segment_pages(
    store: &Store,
    segment: i32,
) -> impl Stream<Item = Result<Vec<Row>, Error>> + Send + '_ {
    let table = &store.tables.connections;
    // State: the next page's start key; `None` once the last page is read.
    stream::try_unfold(Some(None), move |start| async move {
        let Some(start) = start else { return Ok(None) };
        let page = store
            .db
            .scan()
            .table_name(table)
            .segment(segment)
            .total_segments(SEGMENTS)
            .limit(PAGE)
            .projection_expression("#k, #u, connected_at, #t")
            .expression_attribute_names("#k", CONNECTIONS.partition_key.name)
            .expression_attribute_names("#t", &store.tables.ttl.connections)
            .expression_attribute_names("#u", "user")
            .set_exclusive_start_key(start)
            .send()
            .await
            .ctx("Scan", table)?;
        let rows = page
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| row(item, &store.tables.ttl.connections))
            .collect();
        Ok::<_, Error>(Some((rows, page.last_evaluated_key.map(Some))))
    })
}

/// A connections item as a row; `None` for an item without a connection id.
fn row(item: &HashMap<String, AttributeValue>, ttl: &str) -> Option<Row> {
    let n = |k: &str| match item.get(k) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    };
    let Some(AttributeValue::S(id)) = item.get(CONNECTIONS.partition_key.name) else {
        return None;
    };
    let user = match item.get("user") {
        Some(AttributeValue::S(u)) => u.clone(),
        _ => String::new(),
    };
    Some(Row {
        id: id.clone(),
        user,
        connected_at: n("connected_at").unwrap_or(0),
        expires: n(ttl),
    })
}

/// The connection ids subscribed to `channel`, every page of them.
pub async fn subscriber_ids(store: &Store, channel: &str) -> Result<BTreeSet<String>, Error> {
    use futures::StreamExt;
    let (tx, found) = futures::channel::mpsc::unbounded();
    wsctl_functions::fanout::read(store, channel, None, usize::MAX, tx)
        .await
        .map_err(|e| Error::Io(e.to_string()))?;
    Ok(found.collect().await)
}

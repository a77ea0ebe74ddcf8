//! Virtual subscribers (`/_wsctl/virtual`): connections without a socket, so a channel of
//! 100,000 subscribers fits on one machine. Each has its connection and subscription items
//! written by the functions' own store code, so a fan-out reads and treats them as it does real
//! ones; the gateway takes posts to them as it does for real ones and records when each frame
//! arrived instead of writing it to a socket. GET and DELETE on `@connections` and the drop
//! switch work on them too; some can be created gone (items without a connection, as a client
//! whose `$disconnect` never ran), which a fan-out's 410 must clean up.
//!
//! - `POST /_wsctl/virtual?channel=C&count=N[&gone=G][&user=U]` adds N subscribers to C, G of
//!   them gone;
//! - `GET /_wsctl/virtual?channel=C` reports, for each message serial, how many subscribers got
//!   it, how many twice, and when it arrived; and how many of the gone still have items;
//! - `DELETE /_wsctl/virtual?channel=C` forgets them and removes their items (in the
//!   background).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wsctl_functions::auth::Capabilities;
use wsctl_functions::store::{Connection, Store};

use super::connections::{Conn, Entry, Out, Registry};
use super::events::{self, Origin};
use super::http::{Body, json_response, message, query_param};

/// The most subscribers one call adds.
const MAX_COUNT: usize = 200_000;
/// Item writes in flight while adding.
const WRITES: usize = 64;

/// What reached one virtual subscriber: each frame's serial (`None` for frames without one)
/// and when it arrived, in microseconds since the epoch.
#[derive(Default)]
pub struct Arrivals(Mutex<Vec<(Option<u64>, u64)>>);

impl Arrivals {
    pub fn record(&self, frame: &[u8]) {
        let serial = serde_json::from_slice::<Value>(frame)
            .ok()
            .and_then(|v| v.get("serial").and_then(Value::as_u64));
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default();
        self.0.lock().unwrap().push((serial, at));
    }
}

/// One channel's virtual subscribers.
struct Group {
    /// The live ones, listed in the gateway's registry while their entries live.
    members: Vec<Entry>,
    /// Ids created gone: items only.
    gone: Vec<String>,
}

/// Every channel's virtual subscribers.
pub struct Crowd {
    groups: Mutex<HashMap<String, Group>>,
    /// The items' store, as the functions see it; `None` when the stack's tables are unknown.
    store: Option<Store>,
    /// The one sender every virtual connection holds: its receiver is gone, so what is sent
    /// to a virtual connection (a close, the drop switch) goes nowhere.
    nowhere: mpsc::Sender<Out>,
}

impl Crowd {
    pub fn new(store: Option<Store>) -> Crowd {
        let (nowhere, _) = mpsc::channel(1);
        Crowd {
            groups: Default::default(),
            store,
            nowhere,
        }
    }
}

/// `/_wsctl/virtual`.
pub async fn serve(
    crowd: &Crowd,
    conns: &Registry,
    origin: &Origin,
    method: &Method,
    query: Option<&str>,
) -> Response<Body> {
    let Some(channel) = query_param(query, "channel") else {
        return message(
            StatusCode::BAD_REQUEST,
            "channel: the channel the virtual subscribers are in, e.g. ?channel=room-1",
        );
    };
    if let Err((_, why)) = wsctl_functions::protocol::check_channel(&channel) {
        return message(StatusCode::BAD_REQUEST, &format!("channel: {why}"));
    }
    let Some(store) = &crowd.store else {
        return message(
            StatusCode::NOT_FOUND,
            "this stack has no subscriptions table to add subscribers to",
        );
    };
    match *method {
        Method::POST => add(crowd, store, conns, origin, &channel, query).await,
        Method::GET => report(crowd, store, &channel).await,
        Method::DELETE => forget(crowd, store, &channel).await,
        _ => message(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST to add, GET to report, DELETE to remove",
        ),
    }
}

async fn add(
    crowd: &Crowd,
    store: &Store,
    conns: &Registry,
    origin: &Origin,
    channel: &str,
    query: Option<&str>,
) -> Response<Body> {
    let number = |name: &str| query_param(query, name).map(|v| v.parse::<usize>());
    let count = match number("count") {
        Some(Ok(n @ 1..=MAX_COUNT)) => n,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                &format!("count: the number of subscribers to add, from 1 to {MAX_COUNT}"),
            );
        }
    };
    let gone = match number("gone") {
        None => 0,
        Some(Ok(g)) if g <= count => g,
        Some(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "gone: how many of them are gone, from 0 to count",
            );
        }
    };
    let user = query_param(query, "user").unwrap_or_else(|| "virtual".into());
    if let Err(why) = wsctl_functions::auth::check_user(&user) {
        return message(StatusCode::BAD_REQUEST, &format!("user: {why}"));
    }
    let started = Instant::now();
    let ids: Vec<String> = (0..count).map(|_| events::connection_id()).collect();
    let written: Vec<Result<(), String>> = stream::iter(ids.clone())
        .map(|id: String| {
            let user = user.clone();
            async move {
                let connection = Connection {
                    id: id.clone(),
                    user: user.clone(),
                    capabilities: Capabilities::everything(),
                    connected_at: events::epoch_ms(),
                };
                store
                    .put_connection(&connection)
                    .await
                    .map_err(|e| e.to_string())?;
                store
                    .subscribe(channel, &id, &user)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .buffered(WRITES)
        .collect()
        .await;
    if let Some(Err(e)) = written.iter().find(|r| r.is_err()) {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("writing the subscribers' items: {e}"),
        );
    }
    let (gone_ids, live_ids) = ids.split_at(gone);
    let members: Vec<Entry> = live_ids
        .iter()
        .map(|id| {
            let origin = Origin {
                connection_id: id.clone(),
                connected_at: events::epoch_ms(),
                user_agent: Some("wsctl-virtual".into()),
                ..origin.clone()
            };
            let authorizer = json!({ "principalId": user });
            let conn = Conn::new(origin, Some(authorizer), crowd.nowhere.clone())
                .with_arrivals(Arrivals::default());
            let conn = Arc::new(conn);
            conn.open();
            conns.enter(conn)
        })
        .collect();
    let mut groups = crowd.groups.lock().unwrap();
    let group = groups.entry(channel.to_string()).or_insert(Group {
        members: Vec::new(),
        gone: Vec::new(),
    });
    group.members.extend(members);
    group.gone.extend(gone_ids.iter().cloned());
    json_response(
        StatusCode::OK,
        &json!({
            "channel": channel,
            "added": count,
            "gone": gone,
            "members": group.members.len(),
            "seconds": started.elapsed().as_secs_f64(),
        }),
    )
}

/// Per serial: who got it, how often, when.
#[derive(Default)]
struct Tally {
    received: u64,
    duplicates: u64,
    at: Vec<u64>,
}

async fn report(crowd: &Crowd, store: &Store, channel: &str) -> Response<Body> {
    let (tallies, members, gone) = {
        let groups = crowd.groups.lock().unwrap();
        let Some(group) = groups.get(channel) else {
            return message(
                StatusCode::NOT_FOUND,
                "no virtual subscribers in this channel",
            );
        };
        let mut tallies: BTreeMap<Option<u64>, Tally> = BTreeMap::new();
        for entry in &group.members {
            let Some(arrivals) = entry.conn().arrivals() else {
                continue;
            };
            let mut seen: HashMap<Option<u64>, u64> = HashMap::new();
            for (serial, at) in arrivals.0.lock().unwrap().iter() {
                let t = tallies.entry(*serial).or_default();
                let n = seen.entry(*serial).or_default();
                *n += 1;
                if *n == 1 {
                    t.received += 1;
                    t.at.push(*at);
                } else {
                    t.duplicates += 1;
                }
            }
        }
        (tallies, group.members.len(), group.gone.clone())
    };
    let gone_count = gone.len();
    // The gone whose items a fan-out has not removed yet.
    let left = stream::iter(gone)
        .map(|id: String| async move { store.get_connection(&id).await })
        .buffer_unordered(WRITES)
        .filter(|r| std::future::ready(matches!(r, Ok(Some(_)) | Err(_))))
        .count()
        .await;
    let messages: Vec<Value> = tallies
        .into_iter()
        .map(|(serial, mut t)| {
            t.at.sort_unstable();
            let q = |p: f64| {
                let i = ((t.at.len() as f64 * p).ceil() as usize).clamp(1, t.at.len().max(1)) - 1;
                t.at.get(i).copied()
            };
            json!({
                "serial": serial,
                "received": t.received,
                "duplicates": t.duplicates,
                "first_us": t.at.first(),
                "p50_us": q(0.5),
                "p99_us": q(0.99),
                "last_us": t.at.last(),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "channel": channel,
            "members": members,
            "gone": gone_count,
            "gone_with_items": left,
            "messages": messages,
        }),
    )
}

/// Unlists them at once; their items go in the background (100,000 take minutes on DynamoDB
/// Local), so the answer says how many are being removed.
async fn forget(crowd: &Crowd, store: &Store, channel: &str) -> Response<Body> {
    let Some(group) = crowd.groups.lock().unwrap().remove(channel) else {
        return message(
            StatusCode::NOT_FOUND,
            "no virtual subscribers in this channel",
        );
    };
    let ids: Vec<String> = group
        .members
        .iter()
        .map(|e| e.conn().origin.connection_id.clone())
        .chain(group.gone.iter().cloned())
        .collect();
    // Unlisted first, so nothing posts to them while their items go.
    drop(group);
    let removing = ids.len();
    let store = store.clone();
    tokio::spawn(async move {
        stream::iter(ids)
            .map(|id: String| {
                let store = store.clone();
                async move { store.remove_connection(&id).await }
            })
            .buffer_unordered(WRITES)
            .for_each(|_| async {})
            .await;
    });
    json_response(
        StatusCode::OK,
        &json!({ "channel": channel, "removing": removing }),
    )
}

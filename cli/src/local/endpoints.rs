//! What `wsctl dev` serves beside the API, for the developer: the demo page at `/`, and under
//! `/_wsctl/` a token the stack's authorizer accepts, the open connections, and the fault
//! switch that drops one.

use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::connections::{Out, Registry};
use super::http::{Body, json_response, message, percent_decode, query_param, respond};

/// Signs dev tokens with the stack's own secret, for the audience its authorizer requires.
pub struct Minter {
    pub secret: Vec<u8>,
    pub audience: Option<String>,
}

impl Minter {
    pub fn token(&self, user: &str, ttl: Duration) -> String {
        self.token_until(user, ttl).0
    }

    /// A token and its `exp`.
    pub fn token_until(&self, user: &str, ttl: Duration) -> (String, u64) {
        use wsctl_functions::auth::{Capabilities, Claims, mint};
        let claims = Claims::issue(user, Capabilities::everything(), ttl)
            .with_audience(self.audience.as_deref());
        (mint(&self.secret, &claims), claims.exp)
    }
}

pub fn page(html: &str) -> Response<Body> {
    typed(html, "text/html; charset=utf-8")
}

/// A 200 with `body` of `content_type`.
fn typed(body: &str, content_type: &'static str) -> Response<Body> {
    let mut r = respond(StatusCode::OK, body.to_string());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    r
}

/// The `@wsctl/client` package's built module (`clients/js`), which the demo page imports.
const CLIENT_JS: &str = include_str!("../../../clients/js/dist/index.js");

/// `/_wsctl/{path...}`.
pub fn dev(
    method: &Method,
    path: &[&str],
    query: Option<&str>,
    minter: Option<&Minter>,
    conns: &Registry,
) -> Response<Body> {
    match path {
        ["token"] => token(minter, query),
        ["client.js"] => typed(CLIENT_JS, "text/javascript; charset=utf-8"),
        ["connections"] if method == Method::GET => {
            // `?user=U` lists one user's connections: a test cuts one client's socket.
            let user = query_param(query, "user");
            json_response(
                StatusCode::OK,
                &json!({ "connections": conns.ids(user.as_deref()) }),
            )
        }
        ["connections", id, "drop"] if method == Method::POST => {
            // The fault switch: the socket goes, `$disconnect` never runs (a zombie id).
            match conns.get(&percent_decode(id)).filter(|c| c.close()) {
                Some(conn) => {
                    let _ = conn.tx.try_send(Out::Drop);
                    json_response(
                        StatusCode::OK,
                        &json!({ "dropped": conn.origin.connection_id }),
                    )
                }
                None => message(StatusCode::GONE, "no such connection"),
            }
        }
        ["connections", id, "lose"] if method == Method::POST => {
            // A delivery lost on the way: API Gateway took the post, the client never got it.
            let frames = query_param(query, "frames").map(|v| v.parse::<u32>());
            match (frames, conns.get(&percent_decode(id))) {
                (Some(Ok(n @ 1..=1000)), Some(conn)) => {
                    conn.lose(n);
                    json_response(StatusCode::OK, &json!({ "losing": n }))
                }
                (Some(Ok(1..=1000)), None) => message(StatusCode::GONE, "no such connection"),
                _ => message(
                    StatusCode::BAD_REQUEST,
                    "frames: the number of posts to lose, from 1 to 1000",
                ),
            }
        }
        _ => message(StatusCode::NOT_FOUND, "no such dev endpoint"),
    }
}

/// The shortest token the dev endpoint mints.
const MIN_TTL: u64 = 5;

fn token(minter: Option<&Minter>, query: Option<&str>) -> Response<Body> {
    let Some(minter) = minter else {
        return message(StatusCode::NOT_FOUND, "this stack has no token secret");
    };
    let param = |name: &str| query_param(query, name);
    let user = param("user").unwrap_or_else(|| "dev".into());
    if let Err(why) = wsctl_functions::auth::check_user(&user) {
        return message(StatusCode::BAD_REQUEST, &format!("user: {why}"));
    }
    // `ttl` (seconds) makes short tokens, to try renewals and expiry.
    let ttl = match param("ttl").map(|t| t.parse::<u64>()) {
        None => 24 * 3600,
        Some(Ok(t)) if (MIN_TTL..=24 * 3600).contains(&t) => t,
        Some(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                &format!("ttl: a number of seconds from {MIN_TTL} to 86400"),
            );
        }
    };
    let (token, expires_at) = minter.token_until(&user, Duration::from_secs(ttl));
    json_response(
        StatusCode::OK,
        &json!({ "user": user, "token": token, "expires_at": expires_at }),
    )
}

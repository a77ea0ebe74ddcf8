//! What `wsctl dev` serves beside the API, for the developer: the demo page at `/`, and under
//! `/_wsctl/` a token the stack's authorizer accepts, the open connections, and the fault
//! switch that drops one.

use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::connections::{Out, Registry};
use super::http::{Body, json_response, message, percent_decode, query_pairs, respond};

/// Signs dev tokens with the stack's own secret, for the audience its authorizer requires.
pub struct Minter {
    pub secret: Vec<u8>,
    pub audience: Option<String>,
}

impl Minter {
    pub fn token(&self, user: &str, ttl: Duration) -> String {
        use wsctl_functions::auth::{Capabilities, Claims, mint};
        let claims = Claims::issue(user, Capabilities::everything(), ttl)
            .with_audience(self.audience.as_deref());
        mint(&self.secret, &claims)
    }
}

pub fn page(html: &str) -> Response<Body> {
    let mut r = respond(StatusCode::OK, html.to_string());
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

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
        ["connections"] if method == Method::GET => {
            json_response(StatusCode::OK, &json!({ "connections": conns.ids() }))
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
        _ => message(StatusCode::NOT_FOUND, "no such dev endpoint"),
    }
}

fn token(minter: Option<&Minter>, query: Option<&str>) -> Response<Body> {
    let Some(minter) = minter else {
        return message(StatusCode::NOT_FOUND, "this stack has no token secret");
    };
    let user = query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v)
        .filter(|u| !u.is_empty());
    let user = user.unwrap_or_else(|| "dev".into());
    if let Err(why) = wsctl_functions::auth::check_user(&user) {
        return message(StatusCode::BAD_REQUEST, &format!("user: {why}"));
    }
    json_response(
        StatusCode::OK,
        &json!({ "user": user, "token": minter.token(&user, Duration::from_secs(24 * 3600)) }),
    )
}

//! Client tokens: JWTs carrying a user id, an expiry and capabilities (channel glob →
//! operations). HS256 tokens are signed with the stack's secret (what `wsctl token` mints);
//! when an OIDC issuer is configured, its RS256/ES256 tokens are accepted too, checked against
//! its JWKS with issuer and audience, and given capabilities from a claim or a default set.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::{Deserialize, Serialize};

mod keys;
mod verify;

pub use keys::{SecretKeys, key_id};
pub use verify::{OidcPolicy, Verifier, default_user_prefix};

/// What a capability allows on the channels its glob matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Subscribe,
    Publish,
    Presence,
    History,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Subscribe, Op::Publish, Op::Presence, Op::History];

    pub fn name(self) -> &'static str {
        match self {
            Op::Subscribe => "subscribe",
            Op::Publish => "publish",
            Op::Presence => "presence",
            Op::History => "history",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "subscribe" => Op::Subscribe,
            "publish" => Op::Publish,
            "presence" => Op::Presence,
            "history" => Op::History,
            _ => return None,
        })
    }
}

/// Channel glob (`*` matches any run of characters) → allowed operations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capabilities(pub BTreeMap<String, Vec<Op>>);

impl Capabilities {
    pub fn allows(&self, channel: &str, op: Op) -> bool {
        self.0
            .iter()
            .any(|(glob, ops)| ops.contains(&op) && glob_match(glob, channel))
    }

    /// Every operation on every channel.
    pub fn everything() -> Capabilities {
        Capabilities(BTreeMap::from([("*".to_string(), Op::ALL.to_vec())]))
    }

    /// `room-*:subscribe,publish` → one capability; for `wsctl token --allow`.
    pub fn parse_rule(rule: &str) -> Result<(String, Vec<Op>), String> {
        let (glob, ops) = rule
            .rsplit_once(':')
            .ok_or_else(|| format!("`{rule}` is not GLOB:OPS, e.g. `room-*:subscribe,publish`"))?;
        if glob.is_empty() {
            return Err(format!("`{rule}`: the channel glob is empty"));
        }
        let ops = ops
            .split(',')
            .map(|o| {
                Op::parse(o.trim()).ok_or_else(|| {
                    format!("unknown operation `{o}`: use subscribe, publish, presence or history")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((glob.to_string(), ops))
    }
}

/// `*` matches any sequence (including empty); everything else literally.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if gi < g.len() && g[gi] != '*' && g[gi] == t[ti] {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some(gi);
            mark = ti;
            gi += 1;
        } else if let Some(s) = star {
            gi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

/// `aud` as identity providers send it: one audience or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub cap: Capabilities,
}

impl Claims {
    /// Claims for `sub` with `cap`, issued now and valid for `ttl`.
    pub fn issue(sub: &str, cap: Capabilities, ttl: std::time::Duration) -> Claims {
        let issued = now();
        Claims {
            sub: sub.to_string(),
            exp: issued + ttl.as_secs(),
            nbf: None,
            iat: Some(issued),
            iss: None,
            aud: None,
            cap,
        }
    }

    /// The same claims for `audience`, when the stack requires one.
    pub fn with_audience(mut self, audience: Option<&str>) -> Claims {
        self.aud = audience.map(|a| Audience::One(a.to_string()));
        self
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user: String,
    pub capabilities: Capabilities,
    /// The token's `exp` (seconds since the epoch): a connection it opened ends there.
    pub expires: u64,
    /// The token's `iat`, which a revocation compares with; `None` when it carries none.
    pub issued: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(String),
    /// The header names a key this verifier does not hold (yet): the caller may refresh its
    /// keys once and try again.
    #[error("unknown key id `{0}`")]
    UnknownKey(String),
    #[error("token rejected: {0}")]
    Invalid(String),
    /// The keys (or the revocations) could not be read: nothing is known against the token,
    /// and the client should try again rather than fetch another.
    #[error("keys unavailable: {0}")]
    Unavailable(String),
}

/// HS256 keys must be at least this long (RFC 7518 §3.2: a key of the hash's size or larger).
pub const MIN_SECRET_BYTES: usize = 32;
/// A user id (`sub`) travels in every message its connection publishes.
pub const MAX_USER_CHARS: usize = 128;

/// A user id: 1-128 printable characters, and never the name server-side publishes use.
pub fn check_user(user: &str) -> Result<(), String> {
    crate::protocol::check_identifier("`sub`", user, MAX_USER_CHARS, "")?;
    if crate::protocol::is_server_lookalike(user) {
        return Err(format!(
            "`sub` `{user}` is reserved for server-side publishes"
        ));
    }
    Ok(())
}

/// Capabilities from an identity provider's claim.
pub fn capabilities_from_claim(value: &serde_json::Value) -> Result<Capabilities, String> {
    use serde_json::Value;
    match value {
        Value::Object(_) => serde_json::from_value(value.clone())
            .map_err(|e| format!("bad capabilities claim: {e}")),
        Value::String(s) if s.trim_start().starts_with('{') => {
            serde_json::from_str(s).map_err(|e| format!("bad capabilities claim: {e}"))
        }
        Value::String(s) => capabilities_from_claim(&Value::Array(
            s.split_whitespace()
                .map(|r| Value::String(r.into()))
                .collect(),
        )),
        Value::Array(rules) => {
            let mut caps = Capabilities::default();
            for rule in rules {
                let (glob, ops) = Capabilities::parse_rule(
                    rule.as_str()
                        .ok_or("bad capabilities claim: a rule is not a string")?,
                )?;
                caps.0.entry(glob).or_default().extend(ops);
            }
            Ok(caps)
        }
        _ => Err("bad capabilities claim: expected an object or a list of `glob:ops` rules".into()),
    }
}

/// Signs an HS256 token with the stack's secret, naming the key in the header.
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key_id(secret));
    encode(&header, claims, &EncodingKey::from_secret(secret)).expect("HS256 signing cannot fail")
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn caps() -> Capabilities {
        Capabilities(BTreeMap::from([
            ("room-*".to_string(), vec![Op::Subscribe, Op::Publish]),
            ("lobby".to_string(), vec![Op::Presence]),
        ]))
    }

    fn claims(exp_in: i64) -> Claims {
        Claims {
            sub: "ana".into(),
            exp: (now() as i64 + exp_in) as u64,
            nbf: None,
            iat: Some(now()),
            iss: None,
            aud: None,
            cap: caps(),
        }
    }

    fn hs(audience: Option<&str>) -> Verifier {
        Verifier::new(
            SecretKeys::new(SECRET).unwrap(),
            audience.map(str::to_string),
            None,
        )
    }

    /// A token signed by `key` with no `kid`, as other JWT libraries mint them.
    fn unnamed(key: &[u8], claims: &Claims) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_match("room-*", "room-1"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXXbYc"));
        assert!(!glob_match("room-*", "lobby"));
        assert!(!glob_match("lobby", "lobby2"));
        assert!(caps().allows("room-9", Op::Publish));
        assert!(!caps().allows("room-9", Op::Presence));
        assert_eq!(
            Capabilities::parse_rule("room-*:subscribe,publish")
                .unwrap()
                .1,
            vec![Op::Subscribe, Op::Publish]
        );
        assert!(Capabilities::parse_rule("room-*:dance").is_err());
        assert!(Capabilities::parse_rule(":publish").is_err());
    }

    #[test]
    fn hs256_tokens() {
        let v = hs(None);
        let minted = claims(600);
        let good = mint(SECRET, &minted);
        assert_eq!(
            v.verify(&good, None).unwrap(),
            Identity {
                user: "ana".into(),
                capabilities: caps(),
                expires: minted.exp,
                issued: minted.iat,
            }
        );
        assert_eq!(
            v.verify(&unnamed(SECRET, &claims(600)), None).unwrap().user,
            "ana",
            "a token without `kid`"
        );
        let other = b"another-secret-of-32-bytes-or-more";
        assert!(
            matches!(
                v.verify(&mint(other, &claims(600)), None),
                Err(TokenError::UnknownKey(_))
            ),
            "forged, named key"
        );
        assert!(
            matches!(
                v.verify(&unnamed(other, &claims(600)), None),
                Err(TokenError::Invalid(_))
            ),
            "forged"
        );
        assert!(
            matches!(
                v.verify(&mint(SECRET, &claims(-600)), None),
                Err(TokenError::Invalid(_))
            ),
            "expired"
        );
        let mut early = claims(600);
        early.nbf = Some(now() + 300);
        assert!(
            v.verify(&mint(SECRET, &early), None).is_err(),
            "not yet valid"
        );
        assert!(matches!(
            v.verify("abc.def", None),
            Err(TokenError::Malformed(_))
        ));
        assert_eq!(v.verify("", None), Err(TokenError::Missing));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(
            SecretKeys::new(b"secret".to_vec())
                .unwrap_err()
                .contains("at least 32")
        );
        assert!(SecretKeys::parse(&"x".repeat(31)).is_err());
        assert!(SecretKeys::parse(&"x".repeat(32)).is_ok());
        let rotated = SecretKeys::new(SECRET)
            .unwrap()
            .rotate("short", std::time::Duration::from_secs(60));
        assert!(rotated.is_err());
    }

    #[test]
    fn a_rotated_secret_keeps_the_previous_key_for_its_grace_period() {
        let old = SecretKeys::new(SECRET).unwrap();
        let new = "fedcba9876543210fedcba9876543210";
        let value = old
            .rotate(new, std::time::Duration::from_secs(3600))
            .unwrap();
        let keys = SecretKeys::parse(&value).unwrap();
        assert_eq!(keys.current, new.as_bytes());
        let v = Verifier::new(keys.clone(), None, None);
        for token in [
            mint(SECRET, &claims(600)),
            unnamed(SECRET, &claims(600)),
            mint(new.as_bytes(), &claims(600)),
        ] {
            assert_eq!(v.verify(&token, None).unwrap().user, "ana");
        }
        // After the grace period only the new key passes.
        let expired = SecretKeys {
            previous: keys.previous.map(|(k, _)| (k, now() - 1)),
            ..keys
        };
        let v = Verifier::new(expired, None, None);
        assert!(v.verify(&mint(SECRET, &claims(600)), None).is_err());
        assert!(v.verify(&unnamed(SECRET, &claims(600)), None).is_err());
        assert!(v.verify(&mint(new.as_bytes(), &claims(600)), None).is_ok());
        // No grace: the new key alone, stored bare.
        assert_eq!(
            SecretKeys::new(SECRET)
                .unwrap()
                .rotate(new, std::time::Duration::ZERO)
                .unwrap(),
            new
        );
    }

    #[test]
    fn user_ids_are_bounded_printable_and_never_server() {
        let v = hs(None);
        for (sub, ok) in [
            ("ana", true),
            ("server", false),
            ("", false),
            ("a\u{202E}b", false),
            ("a\u{200B}", false),
            ("tab\there", false),
            ("Ana Lima", true),
            ("José", true),
            // One identity, one spelling: the reserved name in any case or width, spaces
            // that hide, and a second spelling of the same letters are all refused.
            ("Server", false),
            ("SERVER", false),
            ("\u{FF53}\u{FF45}\u{FF52}\u{FF56}\u{FF45}\u{FF52}", false),
            ("\u{017F}erver", false),
            ("server ", false),
            (" ana", false),
            ("server\u{00A0}", false),
            ("ana\u{3000}lima", false),
            ("Jose\u{0301}", false),
            ("servers", true),
        ] {
            let mut c = claims(600);
            c.sub = sub.into();
            assert_eq!(v.verify(&mint(SECRET, &c), None).is_ok(), ok, "{sub:?}");
        }
        let mut long = claims(600);
        long.sub = "u".repeat(MAX_USER_CHARS + 1);
        assert!(v.verify(&mint(SECRET, &long), None).is_err());
        long.sub = "ü".repeat(MAX_USER_CHARS);
        assert!(
            v.verify(&mint(SECRET, &long), None).is_ok(),
            "counted in characters"
        );
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let body = serde_json::to_string(&claims(600)).unwrap();
        for alg in ["none", "None", "HS512"] {
            let token = format!(
                "{}.{}.",
                b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
                b64(&body)
            );
            assert!(hs(None).verify(&token, None).is_err(), "{alg} accepted");
        }
    }

    /// Test-only keys (generated for this suite) and their JWKS, as an identity provider publishes it.
    pub(crate) fn oidc_keys() -> (JwkSet, serde_json::Value) {
        let keys: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/oidc-test-keys.json")).unwrap();
        (serde_json::from_value(keys["jwks"].clone()).unwrap(), keys)
    }

    fn oidc(default: Capabilities, claim: Option<&str>) -> Verifier {
        let policy = OidcPolicy {
            issuer: "https://id.example.com/".into(),
            audience: "chat-app".into(),
            capabilities_claim: claim.map(str::to_string),
            default_capabilities: default,
            user_prefix: default_user_prefix("https://id.example.com/"),
        };
        Verifier::new(SecretKeys::new(SECRET).unwrap(), None, Some(policy))
    }

    fn signed(alg: Algorithm, kid: &str, pem: &str, claims: &serde_json::Value) -> String {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        encode(&header, claims, &key).unwrap()
    }

    fn provider_claims() -> serde_json::Value {
        serde_json::json!({"sub": "ana", "exp": now() + 600, "iss": "https://id.example.com/", "aud": "chat-app"})
    }

    #[test]
    fn oidc_rs256_and_es256_tokens_check_issuer_and_audience() {
        let (jwks, keys) = oidc_keys();
        let v = oidc(caps(), None);
        let c = provider_claims();
        for (alg, kid, pem) in [
            (Algorithm::RS256, "rsa-1", "rsa_private_pem"),
            (Algorithm::ES256, "ec-1", "ec_private_pem"),
        ] {
            let pem = keys[pem].as_str().unwrap();
            let id = v.verify(&signed(alg, kid, pem, &c), Some(&jwks)).unwrap();
            assert_eq!(
                (id.user.as_str(), &id.capabilities),
                ("id.example.com|ana", &caps()),
                "{alg:?}: the default capabilities, the user under its issuer's prefix"
            );
            let with = |k: &str, value: serde_json::Value| {
                let mut c = c.clone();
                c[k] = value;
                signed(alg, kid, pem, &c)
            };
            assert!(
                v.verify(&with("aud", "other-app".into()), Some(&jwks))
                    .is_err(),
                "{alg:?} wrong audience"
            );
            assert!(
                v.verify(
                    &with("iss", "https://evil.example.com/".into()),
                    Some(&jwks)
                )
                .is_err(),
                "{alg:?} wrong issuer"
            );
            assert!(
                v.verify(
                    &with("aud", serde_json::json!(["other", "chat-app"])),
                    Some(&jwks)
                )
                .is_ok(),
                "{alg:?} audience list"
            );
            assert!(
                v.verify(&with("aud", serde_json::json!(["other"])), Some(&jwks))
                    .is_err(),
                "{alg:?} audience list without ours"
            );
            for missing in ["aud", "iss"] {
                let mut c = c.clone();
                c.as_object_mut().unwrap().remove(missing);
                assert!(
                    v.verify(&signed(alg, kid, pem, &c), Some(&jwks)).is_err(),
                    "{alg:?} without `{missing}`"
                );
            }
            assert!(
                matches!(
                    v.verify(&signed(alg, "unknown", pem, &c), Some(&jwks)),
                    Err(TokenError::UnknownKey(_))
                ),
                "{alg:?} unknown kid"
            );
        }
        // A key of one kind presented under the other's id is refused.
        let ec_pem = keys["ec_private_pem"].as_str().unwrap();
        assert!(
            v.verify(&signed(Algorithm::ES256, "rsa-1", ec_pem, &c), Some(&jwks))
                .is_err()
        );
        // Without an issuer configured, asymmetric tokens are refused outright.
        assert!(matches!(
            hs(None).verify(&signed(Algorithm::ES256, "ec-1", ec_pem, &c), Some(&jwks)),
            Err(TokenError::Algorithm(_))
        ));
    }

    #[test]
    fn jwk_use_and_alg_are_checked() {
        let (jwks, keys) = oidc_keys();
        let pem = keys["rsa_private_pem"].as_str().unwrap();
        let token = signed(Algorithm::RS256, "rsa-1", pem, &provider_claims());
        let v = oidc(caps(), None);
        let mut set = serde_json::to_value(&jwks).unwrap();
        set["keys"][0]["use"] = "enc".into();
        assert!(
            v.verify(&token, Some(&serde_json::from_value(set).unwrap()))
                .is_err(),
            "an encryption key"
        );
        let mut set = serde_json::to_value(&jwks).unwrap();
        set["keys"][0]["alg"] = "PS256".into();
        assert!(
            v.verify(&token, Some(&serde_json::from_value(set).unwrap()))
                .is_err(),
            "a key for another algorithm"
        );
        let mut set = serde_json::to_value(&jwks).unwrap();
        set["keys"][0].as_object_mut().unwrap().remove("alg");
        set["keys"][0].as_object_mut().unwrap().remove("use");
        assert!(
            v.verify(&token, Some(&serde_json::from_value(set).unwrap()))
                .is_ok(),
            "`use` and `alg` are optional"
        );
    }

    #[test]
    fn provider_capabilities_come_from_a_claim_or_the_default() {
        let (jwks, keys) = oidc_keys();
        let pem = keys["rsa_private_pem"].as_str().unwrap();
        let v = oidc(
            Capabilities::default(),
            Some("https://chat.example.com/cap"),
        );
        let token = |cap: Option<serde_json::Value>| {
            let mut c = provider_claims();
            if let Some(cap) = cap {
                c["https://chat.example.com/cap"] = cap;
            }
            signed(Algorithm::RS256, "rsa-1", pem, &c)
        };
        let id = |cap| v.verify(&token(cap), Some(&jwks));
        assert_eq!(
            id(None).unwrap().capabilities,
            Capabilities::default(),
            "no claim: the (empty) default"
        );
        let want = Capabilities(BTreeMap::from([(
            "room-*".to_string(),
            vec![Op::Subscribe, Op::Publish],
        )]));
        assert_eq!(
            id(Some(
                serde_json::json!({"room-*": ["subscribe", "publish"]})
            ))
            .unwrap()
            .capabilities,
            want
        );
        assert_eq!(
            id(Some(serde_json::json!(
                r#"{"room-*":["subscribe","publish"]}"#
            )))
            .unwrap()
            .capabilities,
            want
        );
        assert_eq!(
            id(Some(serde_json::json!(["room-*:subscribe,publish"])))
                .unwrap()
                .capabilities,
            want
        );
        assert_eq!(
            id(Some(serde_json::json!("room-*:subscribe,publish")))
                .unwrap()
                .capabilities,
            want
        );
        assert!(
            id(Some(serde_json::json!(["room-*:dance"]))).is_err(),
            "an unknown operation refuses the token"
        );
        assert!(id(Some(serde_json::json!(7))).is_err());
    }

    #[test]
    fn audience_is_required_when_configured() {
        let v = hs(Some("chat"));
        let mut c = claims(600);
        assert!(
            v.verify(&mint(SECRET, &c), None).is_err(),
            "no `aud` at all"
        );
        c.aud = Some(Audience::One("other".into()));
        assert!(v.verify(&mint(SECRET, &c), None).is_err());
        c.aud = Some(Audience::One("chat".into()));
        assert!(v.verify(&mint(SECRET, &c), None).is_ok());
        c.aud = Some(Audience::Many(vec!["web".into(), "chat".into()]));
        assert!(
            v.verify(&mint(SECRET, &c), None).is_ok(),
            "an audience list that includes ours"
        );
    }
}

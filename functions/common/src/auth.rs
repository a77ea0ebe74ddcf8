//! Client tokens: JWTs carrying a user id, an expiry and capabilities (channel glob →
//! operations). HS256 tokens are signed with the stack's secret (what `wsctl token` mints);
//! when an OIDC issuer is configured, its RS256/ES256 tokens are accepted too, checked against
//! its JWKS with issuer and audience.

use std::collections::BTreeMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};

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
        self.0.iter().any(|(glob, ops)| ops.contains(&op) && glob_match(glob, channel))
    }

    /// Every operation on every channel.
    pub fn everything() -> Capabilities {
        Capabilities(BTreeMap::from([("*".to_string(), vec![Op::Subscribe, Op::Publish, Op::Presence, Op::History])]))
    }

    /// `room-*:subscribe,publish` → one capability; for `wsctl token --allow`.
    pub fn parse_rule(rule: &str) -> Result<(String, Vec<Op>), String> {
        let (glob, ops) = rule.rsplit_once(':').ok_or_else(|| format!("`{rule}` is not GLOB:OPS, e.g. `room-*:subscribe,publish`"))?;
        if glob.is_empty() {
            return Err(format!("`{rule}`: the channel glob is empty"));
        }
        let ops = ops
            .split(',')
            .map(|o| Op::parse(o.trim()).ok_or_else(|| format!("unknown operation `{o}`: use subscribe, publish, presence or history")))
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
    pub aud: Option<String>,
    #[serde(default)]
    pub cap: Capabilities,
}

impl Claims {
    /// Claims for `sub` with `cap`, issued now and valid for `ttl`.
    pub fn issue(sub: &str, cap: Capabilities, ttl: std::time::Duration) -> Claims {
        let issued = now();
        Claims { sub: sub.to_string(), exp: issued + ttl.as_secs(), nbf: None, iat: Some(issued), iss: None, aud: None, cap }
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user: String,
    pub capabilities: Capabilities,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("token rejected: {0}")]
    Invalid(String),
}

/// OIDC issuer whose asymmetric tokens are accepted besides the stack's own.
#[derive(Clone)]
pub struct Oidc {
    pub issuer: String,
    pub audience: String,
    pub keys: JwkSet,
}

/// Verifies tokens; built once per cold start.
#[derive(Clone)]
pub struct Verifier {
    secret: Vec<u8>,
    /// When set, HS256 tokens must carry this audience.
    audience: Option<String>,
    oidc: Option<Oidc>,
    /// Clock skew tolerated on exp/nbf, seconds.
    leeway: u64,
}

impl Verifier {
    pub fn new(secret: impl Into<Vec<u8>>, audience: Option<String>, oidc: Option<Oidc>) -> Verifier {
        Verifier { secret: secret.into(), audience, oidc, leeway: 30 }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        // Read the header ourselves first: `alg: none` (or any unknown alg) is refused before
        // any key is chosen.
        let header = decode_header(token).map_err(|e| {
            let text = e.to_string();
            if text.contains("unknown variant") { TokenError::Algorithm(text) } else { TokenError::Malformed(text) }
        })?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let mut v = Validation::new(Algorithm::HS256);
                self.common(&mut v);
                match &self.audience {
                    Some(aud) => v.set_audience(&[aud]),
                    None => v.validate_aud = false,
                }
                decode::<Claims>(token, &DecodingKey::from_secret(&self.secret), &v)
            }
            alg @ (Algorithm::RS256 | Algorithm::ES256) => {
                let oidc = self.oidc.as_ref().ok_or_else(|| TokenError::Algorithm(format!("{alg:?} (no OIDC issuer is configured)")))?;
                let kid = header.kid.ok_or_else(|| TokenError::Malformed("no `kid` in the header".into()))?;
                let jwk = oidc.keys.find(&kid).ok_or_else(|| TokenError::Invalid(format!("unknown key id `{kid}`")))?;
                let key = DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Invalid(e.to_string()))?;
                let mut v = Validation::new(alg);
                self.common(&mut v);
                v.set_issuer(&[&oidc.issuer]);
                v.set_audience(&[&oidc.audience]);
                decode::<Claims>(token, &key, &v)
            }
            other => return Err(TokenError::Algorithm(format!("{other:?}"))),
        }
        .map_err(|e| TokenError::Invalid(e.to_string()))?
        .claims;
        if claims.sub.is_empty() {
            return Err(TokenError::Invalid("empty `sub`".into()));
        }
        Ok(Identity { user: claims.sub, capabilities: claims.cap })
    }

    fn common(&self, v: &mut Validation) {
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
    }
}

/// Signs an HS256 token with the stack's secret.
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret)).expect("HS256 signing cannot fail")
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Capabilities {
        Capabilities(BTreeMap::from([("room-*".to_string(), vec![Op::Subscribe, Op::Publish]), ("lobby".to_string(), vec![Op::Presence])]))
    }

    fn claims(exp_in: i64) -> Claims {
        Claims { sub: "ana".into(), exp: (now() as i64 + exp_in) as u64, nbf: None, iat: Some(now()), iss: None, aud: None, cap: caps() }
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
        assert_eq!(Capabilities::parse_rule("room-*:subscribe,publish").unwrap().1, vec![Op::Subscribe, Op::Publish]);
        assert!(Capabilities::parse_rule("room-*:dance").is_err());
        assert!(Capabilities::parse_rule(":publish").is_err());
    }

    #[test]
    fn hs256_tokens() {
        let v = Verifier::new(b"secret".to_vec(), None, None);
        let good = mint(b"secret", &claims(600));
        assert_eq!(v.verify(&good).unwrap(), Identity { user: "ana".into(), capabilities: caps() });
        assert!(matches!(v.verify(&mint(b"other", &claims(600))), Err(TokenError::Invalid(_))), "forged");
        assert!(matches!(v.verify(&mint(b"secret", &claims(-600))), Err(TokenError::Invalid(_))), "expired");
        let mut early = claims(600);
        early.nbf = Some(now() + 300);
        assert!(v.verify(&mint(b"secret", &early)).is_err(), "not yet valid");
        assert!(matches!(v.verify("abc.def"), Err(TokenError::Malformed(_))));
        assert_eq!(v.verify(""), Err(TokenError::Missing));
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let body = serde_json::to_string(&claims(600)).unwrap();
        for alg in ["none", "None", "HS512"] {
            let token = format!("{}.{}.", b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)), b64(&body));
            let v = Verifier::new(b"secret".to_vec(), None, None);
            assert!(v.verify(&token).is_err(), "{alg} accepted");
        }
    }

    /// Test-only keys (generated for this suite) and their JWKS, as an identity provider publishes it.
    fn oidc() -> (Verifier, serde_json::Value) {
        let keys: serde_json::Value = serde_json::from_str(include_str!("../testdata/oidc-test-keys.json")).unwrap();
        let jwks: JwkSet = serde_json::from_value(keys["jwks"].clone()).unwrap();
        let oidc = Oidc { issuer: "https://id.example.com/".into(), audience: "chat-app".into(), keys: jwks };
        (Verifier::new(b"secret".to_vec(), None, Some(oidc)), keys)
    }

    fn signed(alg: Algorithm, kid: &str, pem: &str, claims: &Claims) -> String {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        encode(&header, claims, &key).unwrap()
    }

    #[test]
    fn oidc_rs256_and_es256_tokens_check_issuer_and_audience() {
        let (v, keys) = oidc();
        let mut c = claims(600);
        c.iss = Some("https://id.example.com/".into());
        c.aud = Some("chat-app".into());
        for (alg, kid, pem) in [(Algorithm::RS256, "rsa-1", "rsa_private_pem"), (Algorithm::ES256, "ec-1", "ec_private_pem")] {
            let pem = keys[pem].as_str().unwrap();
            assert_eq!(v.verify(&signed(alg, kid, pem, &c)).unwrap().user, "ana", "{alg:?}");
            let mut wrong_aud = c.clone();
            wrong_aud.aud = Some("other-app".into());
            assert!(v.verify(&signed(alg, kid, pem, &wrong_aud)).is_err(), "{alg:?} wrong audience");
            let mut wrong_iss = c.clone();
            wrong_iss.iss = Some("https://evil.example.com/".into());
            assert!(v.verify(&signed(alg, kid, pem, &wrong_iss)).is_err(), "{alg:?} wrong issuer");
            assert!(v.verify(&signed(alg, "unknown", pem, &c)).is_err(), "{alg:?} unknown kid");
        }
        // A key of one kind presented under the other's id is refused.
        let ec_pem = keys["ec_private_pem"].as_str().unwrap();
        assert!(v.verify(&signed(Algorithm::ES256, "rsa-1", ec_pem, &c)).is_err());
        // Without an issuer configured, asymmetric tokens are refused outright.
        let plain = Verifier::new(b"secret".to_vec(), None, None);
        assert!(matches!(plain.verify(&signed(Algorithm::ES256, "ec-1", ec_pem, &c)), Err(TokenError::Algorithm(_))));
    }

    #[test]
    fn audience_is_checked_when_configured() {
        let v = Verifier::new(b"secret".to_vec(), Some("chat".into()), None);
        let mut c = claims(600);
        c.aud = Some("other".into());
        assert!(v.verify(&mint(b"secret", &c)).is_err());
        c.aud = Some("chat".into());
        assert!(v.verify(&mint(b"secret", &c)).is_ok());
    }
}

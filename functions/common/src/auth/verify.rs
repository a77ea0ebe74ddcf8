//! Verifying a token: the stack's own HS256 keys, or an OIDC issuer's published keys with its
//! issuer and audience.

use super::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

/// How tokens of an OIDC identity provider are accepted: its issuer and audience (both
/// required in its tokens) and the capabilities its users get.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcPolicy {
    pub issuer: String,
    pub audience: String,
    /// A claim carrying capabilities (an object glob → operations, that object as a JSON
    /// string, or a list of `glob:op,op` rules); users without it get `default_capabilities`.
    pub capabilities_claim: Option<String>,
    pub default_capabilities: Capabilities,
    /// Put before the provider's `sub` with a `|`, so that its users never share an id with
    /// the stack's own (HS256) users, whose ids cannot contain `|`; empty: `sub` as it is.
    pub user_prefix: String,
}

/// The user prefix of an issuer's users when the config names none: its host and path,
/// `https://id.example.com/` → `id.example.com`.
pub fn default_user_prefix(issuer: &str) -> String {
    let rest = issuer.split_once("://").map_or(issuer, |(_, r)| r);
    rest.trim_end_matches('/').to_string()
}

/// Verifies tokens against keys it is given; the async key caching lives in
/// [`crate::handlers::authorizer`].
#[derive(Clone)]
pub struct Verifier {
    pub secrets: SecretKeys,
    /// When set, HS256 tokens must carry this audience.
    audience: Option<String>,
    oidc: Option<OidcPolicy>,
    /// Clock skew tolerated on exp/nbf, seconds.
    leeway: u64,
}

impl Verifier {
    pub fn new(
        secrets: SecretKeys,
        audience: Option<String>,
        oidc: Option<OidcPolicy>,
    ) -> Verifier {
        Verifier {
            secrets,
            audience,
            oidc,
            leeway: 30,
        }
    }

    pub fn oidc(&self) -> Option<&OidcPolicy> {
        self.oidc.as_ref()
    }

    /// `jwks` is the OIDC issuer's key set, when one is configured.
    pub fn verify(&self, token: &str, jwks: Option<&JwkSet>) -> Result<Identity, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        // Read the header ourselves first: `alg: none` (or any unknown alg) is refused before
        // any key is chosen.
        let header = decode_header(token).map_err(|e| {
            let text = e.to_string();
            if text.contains("unknown variant") {
                TokenError::Algorithm(text)
            } else {
                TokenError::Malformed(text)
            }
        })?;
        let identity = match header.alg {
            Algorithm::HS256 => {
                let mut v = self.validation(Algorithm::HS256);
                match &self.audience {
                    Some(aud) => {
                        v.set_audience(&[aud]);
                        v.required_spec_claims.insert("aud".into());
                    }
                    None => v.validate_aud = false,
                }
                let mut last = None;
                let mut claims = None;
                for key in self.secrets.candidates(header.kid.as_deref())? {
                    match decode::<Claims>(token, &DecodingKey::from_secret(key), &v) {
                        Ok(d) => {
                            claims = Some(d.claims);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let claims = claims.ok_or_else(|| {
                    TokenError::Invalid(last.map(|e| e.to_string()).unwrap_or_default())
                })?;
                if claims.sub.contains('|') {
                    return Err(TokenError::Invalid(
                        "`sub` contains `|`, which sets an identity provider's users apart from the stack's own".into(),
                    ));
                }
                Identity {
                    user: claims.sub,
                    capabilities: claims.cap,
                    expires: claims.exp,
                    issued: claims.iat,
                }
            }
            alg @ (Algorithm::RS256 | Algorithm::ES256) => {
                let oidc = self.oidc.as_ref().ok_or_else(|| {
                    TokenError::Algorithm(format!("{alg:?} (no OIDC issuer is configured)"))
                })?;
                let kid = header
                    .kid
                    .ok_or_else(|| TokenError::Malformed("no `kid` in the header".into()))?;
                let jwk = jwks
                    .and_then(|k| k.find(&kid))
                    .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
                check_jwk(jwk, alg)?;
                let key =
                    DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Invalid(e.to_string()))?;
                let mut v = self.validation(alg);
                v.set_issuer(&[&oidc.issuer]);
                v.set_audience(&[&oidc.audience]);
                v.required_spec_claims
                    .extend(["iss".to_string(), "aud".to_string()]);
                let claims = decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
                    .map_err(|e| TokenError::Invalid(e.to_string()))?
                    .claims;
                let sub = claims
                    .get("sub")
                    .and_then(|s| s.as_str())
                    .unwrap_or_default();
                let user = match oidc.user_prefix.as_str() {
                    "" => sub.to_string(),
                    prefix => format!("{prefix}|{sub}"),
                };
                let capabilities = match oidc
                    .capabilities_claim
                    .as_deref()
                    .and_then(|c| claims.get(c))
                {
                    Some(value) => capabilities_from_claim(value).map_err(TokenError::Invalid)?,
                    None => oidc.default_capabilities.clone(),
                };
                let time = |k: &str| claims.get(k).and_then(serde_json::Value::as_u64);
                Identity {
                    user,
                    capabilities,
                    // Required and validated above.
                    expires: time("exp").unwrap_or_default(),
                    issued: time("iat"),
                }
            }
            other => return Err(TokenError::Algorithm(format!("{other:?}"))),
        };
        check_user(&identity.user).map_err(TokenError::Invalid)?;
        Ok(identity)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        v
    }
}

/// A key from the issuer's set is used only for signatures and only with the algorithm it
/// is published for (RFC 7517 §4.2, §4.4): a key meant for encryption, or an RSA key offered
/// for an EC header, is refused.
fn check_jwk(jwk: &jsonwebtoken::jwk::Jwk, alg: Algorithm) -> Result<(), TokenError> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm, PublicKeyUse};
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err(TokenError::Invalid(
            "the key is not published for signatures (`use`)".into(),
        ));
    }
    let matches = matches!(
        (alg, &jwk.common.key_algorithm),
        (_, None)
            | (Algorithm::RS256, Some(KeyAlgorithm::RS256))
            | (Algorithm::ES256, Some(KeyAlgorithm::ES256))
    );
    let kind = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        _ => false,
    };
    if !matches || !kind {
        return Err(TokenError::Invalid(format!(
            "the key is not published for {alg:?} (`alg`, `kty`)"
        )));
    }
    Ok(())
}

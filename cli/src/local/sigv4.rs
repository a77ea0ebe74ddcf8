//! Checks a request's Signature Version 4 as AWS does, for what `wsctl dev` serves behind IAM
//! auth (a function URL with `AuthType` `AWS_IAM`). The steps are the IAM User Guide's
//! "Create a signed AWS API request": the canonical request (method, the path with each
//! segment URI-encoded again, the sorted query, the signed headers, the payload's SHA-256),
//! the string to sign, and the HMAC chain of the signing key. A request more than five minutes
//! from the clock is refused, as AWS refuses it.

use std::time::{Duration, SystemTime};

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use hyper::header::HeaderMap;
use sha2::{Digest, Sha256};

use super::http::percent_decode;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// "The signed request must reach AWS within five minutes of the time stamp in the request."
const SKEW: Duration = Duration::from_secs(5 * 60);

/// Why a request's signature was refused: the message AWS answers with.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// No `Authorization` header (or not SigV4's).
    Unsigned,
    /// An access key this endpoint does not know.
    UnknownKey(String),
    /// Signed for another region or service.
    WrongScope(String),
    /// Signed too long ago, or in the future.
    Expired,
    Mismatch,
    /// The header is SigV4's but cannot be read.
    Malformed(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unsigned => f.write_str("Forbidden"),
            Refused::UnknownKey(_) => {
                f.write_str("The security token included in the request is invalid.")
            }
            Refused::WrongScope(why) => write!(f, "Credential should be scoped to {why}"),
            Refused::Expired => f.write_str("Signature expired: the request's X-Amz-Date is more than 5 minutes from the endpoint's time"),
            Refused::Mismatch => f.write_str("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."),
            Refused::Malformed(what) => write!(f, "Authorization header requires {what}"),
        }
    }
}

/// What must match: the scope a request is signed for, and the secrets of the keys allowed.
pub struct Verifier<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub secret: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

impl Verifier<'_> {
    /// The access key that signed the request, if the signature holds.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<String, Refused> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.strip_prefix(ALGORITHM))
            .ok_or(Refused::Unsigned)?;
        let field = |name: &str| {
            auth.split(',')
                .map(str::trim)
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| Refused::Malformed(format!("the {name} parameter")))
        };
        let credential = field("Credential")?;
        let signed_headers = field("SignedHeaders")?;
        let signature = field("Signature")?;
        let [key, date, region, service, "aws4_request"] =
            credential.split('/').collect::<Vec<_>>()[..]
        else {
            return Err(Refused::Malformed(
                "Credential=KEY/DATE/REGION/SERVICE/aws4_request".into(),
            ));
        };
        if region != self.region || service != self.service {
            return Err(Refused::WrongScope(format!(
                "region '{}' and service '{}', not '{region}' and '{service}'",
                self.region, self.service
            )));
        }
        let secret = (self.secret)(key).ok_or_else(|| Refused::UnknownKey(key.to_string()))?;
        let amz_date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Refused::Malformed("an X-Amz-Date header".into()))?;
        let signed_at = parse_amz_date(amz_date)
            .ok_or_else(|| Refused::Malformed("X-Amz-Date as YYYYMMDD'T'HHMMSS'Z'".into()))?;
        let off = now
            .duration_since(signed_at)
            .unwrap_or_else(|e| e.duration());
        if off > SKEW {
            return Err(Refused::Expired);
        }
        if !amz_date.starts_with(date) {
            return Err(Refused::Malformed(
                "the credential's date to be X-Amz-Date's".into(),
            ));
        }
        let mut canonical_headers = String::new();
        for name in signed_headers.split(';') {
            let values: Vec<String> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        let payload = headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| hex(&Sha256::digest(body)));
        let canonical = [
            method,
            &canonical_path(path),
            &canonical_query(query),
            &canonical_headers,
            signed_headers,
            &payload,
        ]
        .join("\n");
        let to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let key_bytes = generate_signing_key(&secret, signed_at, region, service);
        if calculate_signature(key_bytes, to_sign.as_bytes()) != signature {
            return Err(Refused::Mismatch);
        }
        Ok(key.to_string())
    }
}

/// `20261207T181652Z` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    SystemTime::try_from(DateTime::from_str(&rfc3339, Format::DateTime).ok()?).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986's unreserved characters stay; every other byte is `%XX`.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The path as sent (already encoded once), each segment encoded again: every service but S3
/// signs it so.
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// Each name and value encoded, sorted by name, then value.
fn canonical_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (encode(&percent_decode(k)), encode(&percent_decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    /// A request as the AWS SDK signs it (the same crate the SDKs use), at `at`.
    fn signed(
        secret: &str,
        region: &str,
        uri: &str,
        body: &[u8],
        at: SystemTime,
    ) -> (String, String, Option<String>, HeaderMap) {
        let identity = Credentials::new("local", secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("lambda")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new(
            "POST",
            uri,
            [
                ("host", "127.0.0.1:8080"),
                ("content-type", "application/json"),
            ]
            .into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        for (name, value) in instructions.headers() {
            headers.insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let uri: hyper::Uri = uri.parse().unwrap();
        (
            "POST".into(),
            uri.path().to_string(),
            uri.query().map(str::to_string),
            headers,
        )
    }

    fn verifier<'a>(secret: &'a (dyn Fn(&str) -> Option<String> + Sync)) -> Verifier<'a> {
        Verifier {
            region: "us-east-1",
            service: "lambda",
            secret,
        }
    }

    #[test]
    fn a_request_the_sdk_signed_is_verified_and_any_change_is_refused() {
        let known = |key: &str| (key == "local").then(|| "local".to_string());
        let v = verifier(&known);
        let now = SystemTime::now();
        let body = br#"{"channel":"room-1","data":"hi"}"#;
        let uri = "http://127.0.0.1:8080/_lambda-url/chat-dev-publish/?b=2&a=x%20y";
        let (method, path, query, headers) = signed("local", "us-east-1", uri, body, now);
        assert_eq!(
            v.verify(&method, &path, query.as_deref(), &headers, body, now),
            Ok("local".into())
        );
        // Another body, path, query or method: the signature no longer holds.
        let other = br#"{"channel":"room-2","data":"hi"}"#;
        let q = query.as_deref();
        assert_eq!(
            v.verify(&method, &path, q, &headers, other, now),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            v.verify(&method, "/_lambda-url/x/", q, &headers, body, now),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            v.verify(&method, &path, Some("a=1"), &headers, body, now),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            v.verify("PUT", &path, q, &headers, body, now),
            Err(Refused::Mismatch)
        );
        // Six minutes later, or earlier: expired.
        let later = now + Duration::from_secs(360);
        assert_eq!(
            v.verify(&method, &path, q, &headers, body, later),
            Err(Refused::Expired)
        );
        // Signed with the wrong secret, for another region, or not signed at all.
        let (_, _, _, wrong) = signed("not-local", "us-east-1", uri, body, now);
        assert_eq!(
            v.verify(&method, &path, q, &wrong, body, now),
            Err(Refused::Mismatch)
        );
        let (_, _, _, elsewhere) = signed("local", "eu-west-1", uri, body, now);
        assert!(matches!(
            v.verify(&method, &path, q, &elsewhere, body, now),
            Err(Refused::WrongScope(_))
        ));
        assert_eq!(
            v.verify(&method, &path, q, &HeaderMap::new(), body, now),
            Err(Refused::Unsigned)
        );
        let nobody = |_: &str| None;
        assert_eq!(
            verifier(&nobody).verify(&method, &path, q, &headers, body, now),
            Err(Refused::UnknownKey("local".into()))
        );
    }

    #[test]
    fn amz_dates() {
        let t = parse_amz_date("20261207T181652Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_796_667_412);
        assert!(parse_amz_date("2026-12-07T18:16:52Z").is_none());
        assert!(parse_amz_date("").is_none());
    }
}

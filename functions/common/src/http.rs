//! HTTPS for the functions: the AWS SDK's client, trusting Amazon's roots only, and a small
//! GET for JSON documents (an identity provider's discovery document and key set), with a
//! timeout and a size cap. TLS is the same rustls stack the AWS SDK uses.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The roots AWS's service endpoints chain to: Amazon Root CA 1–4 and the Starfield Services
/// root that cross-signs them (Amazon Trust Services). Compiled in because the SDK's default,
/// the system store (~146 certificates from /etc/ssl/certs), is read and parsed at every cold
/// start, which was most of the functions' start-up time.
const AMAZON_ROOTS: &str = include_str!("amazon-roots.pem");

/// The SDK's HTTPS client. On AWS every call the functions make through the SDK goes to an
/// AWS endpoint, so [`AMAZON_ROOTS`] are enough; the system store is read as well where that
/// does not hold: an `AWS_ENDPOINT_URL*` over HTTPS to another host (an emulator with its own
/// certificate), or a partition other than `aws` (China's regions).
pub fn aws_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls_context(&[]))
        .build_https()
}

/// The same HTTPS stack as [`aws_client`], as a bare connector for requests the functions sign
/// themselves (see `connections`); `extra` is an endpoint beyond the `AWS_ENDPOINT_URL*` ones.
pub fn aws_connector(extra: &str) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpConnector};
    // The SDK's default for Lambda (behavior version 2023-11-09 and later).
    let settings = HttpConnectorSettings::builder()
        .connect_timeout(Duration::from_millis(3100))
        .build();
    SharedHttpConnector::new(
        aws_smithy_http_client::Connector::builder()
            .connector_settings(settings)
            .enable_tcp_nodelay(true)
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls_context(&[extra.to_string()]))
            .build(),
    )
}

fn tls_context(extra: &[String]) -> aws_smithy_http_client::tls::TlsContext {
    use aws_smithy_http_client::tls::{TlsContext, TrustStore};
    let endpoints: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_ENDPOINT_URL"))
        .map(|(_, v)| v)
        .chain(extra.iter().cloned())
        .collect();
    let region = std::env::var("AWS_REGION").unwrap_or_default();
    let trust = TrustStore::empty()
        .with_native_roots(needs_system_roots(&endpoints, &region))
        .with_pem_certificate(AMAZON_ROOTS.as_bytes());
    TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a trust store of valid certificates")
}

/// Whether the SDK may meet a certificate that is not Amazon's.
fn needs_system_roots(endpoints: &[String], region: &str) -> bool {
    let partition = crate::partition::Partition::of(region);
    let foreign = |url: &String| {
        url.parse::<hyper::Uri>().is_ok_and(|uri| {
            uri.scheme_str() == Some("https")
                && !partition.is_aws_host(uri.host().unwrap_or_default())
        })
    };
    !partition.uses_amazon_roots() || endpoints.iter().any(foreign)
}

/// Key sets are a few KB; anything near this is not one.
const MAX_BODY_BYTES: usize = 512 * 1024;
/// Per request; a cold authorizer may make two (discovery, then keys) within its timeout.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether keys may be fetched from `url`: HTTPS, or plain HTTP to this machine only (a
/// provider in a test). Anyone on the path of a plain-HTTP fetch could hand over their own
/// keys and sign any token.
pub fn is_trusted_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return false;
    };
    let loopback = matches!(
        uri.host(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    // `user@host` forms have no place in a key URL.
    let plain_authority = uri.authority().is_some_and(|a| !a.as_str().contains('@'));
    plain_authority
        && (uri.scheme_str() == Some("https") || (uri.scheme_str() == Some("http") && loopback))
}

pub async fn get_json(url: &str) -> Result<Value, String> {
    if !is_trusted_url(url) {
        return Err(format!(
            "{url} is not an https:// URL; keys are fetched over HTTPS only"
        ));
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let fetch = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON ({e})"))
    };
    tokio::time::timeout(TIMEOUT, fetch)
        .await
        .map_err(|_| format!("GET {url}: no answer within {} s", TIMEOUT.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::{is_trusted_url, needs_system_roots};

    #[test]
    fn amazon_roots_serve_aws_and_the_system_store_the_rest() {
        let none: &[String] = &[];
        assert!(!needs_system_roots(none, "eu-west-1"));
        // Plain HTTP (wsctl dev, moto) and AWS's own hosts need no other root.
        let local = ["http://127.0.0.1:4566".to_string()];
        assert!(!needs_system_roots(&local, "us-east-1"));
        let fips = ["https://dynamodb-fips.us-east-1.amazonaws.com".to_string()];
        assert!(!needs_system_roots(&fips, "us-east-1"));
        let emulator = ["https://localhost.localstack.cloud:4566".to_string()];
        assert!(needs_system_roots(&emulator, "us-east-1"));
        assert!(needs_system_roots(none, "cn-north-1"));
    }

    #[test]
    fn keys_come_over_https_or_from_this_machine() {
        for url in [
            "https://id.example.com/keys",
            "http://127.0.0.1:8080/keys",
            "http://localhost/keys",
            "http://[::1]:9/k",
        ] {
            assert!(is_trusted_url(url), "{url}");
        }
        for url in [
            "http://id.example.com/keys",
            "http://localhost.evil.com/keys",
            "http://localhost@evil.com/keys",
            "https://a@id.example.com/",
            "ftp://id",
            "keys",
        ] {
            assert!(!is_trusted_url(url), "{url}");
        }
    }
}

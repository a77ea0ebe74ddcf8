//! The stack's HS256 keys: the current one and, after a rotation, the previous one until its
//! grace period ends.

use super::*;
use serde::{Deserialize, Serialize};

/// The stack's HS256 keys: the current one, and after a rotation the previous one until its
/// grace period ends. Stored in SSM as the bare key, or as JSON once rotated.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretKeys {
    pub current: Vec<u8>,
    pub previous: Option<(Vec<u8>, u64)>,
}

#[derive(Serialize, Deserialize)]
struct RotatedSecret {
    current: String,
    previous: String,
    /// Epoch seconds after which tokens signed with `previous` are refused.
    previous_until: u64,
}

impl SecretKeys {
    pub fn new(current: impl Into<Vec<u8>>) -> Result<SecretKeys, String> {
        let current = current.into();
        check_secret(&current)?;
        Ok(SecretKeys {
            current,
            previous: None,
        })
    }

    /// The parameter's value as `wsctl deploy` and `wsctl secret rotate` write it.
    pub fn parse(value: &str) -> Result<SecretKeys, String> {
        if value.trim_start().starts_with('{') {
            let r: RotatedSecret = serde_json::from_str(value)
                .map_err(|e| format!("the token secret is not valid JSON ({e})"))?;
            check_secret(r.current.as_bytes())?;
            return Ok(SecretKeys {
                current: r.current.into_bytes(),
                previous: Some((r.previous.into_bytes(), r.previous_until)),
            });
        }
        SecretKeys::new(value.as_bytes())
    }

    /// The value to store: `new` becomes current, the current key stays valid for `grace`.
    pub fn rotate(&self, new: &str, grace: std::time::Duration) -> Result<String, String> {
        check_secret(new.as_bytes())?;
        let current = String::from_utf8(self.current.clone())
            .map_err(|_| "the current secret is not text".to_string())?;
        if grace.is_zero() {
            return Ok(new.to_string());
        }
        Ok(serde_json::to_string(&RotatedSecret {
            current: new.into(),
            previous: current,
            previous_until: now() + grace.as_secs(),
        })
        .expect("serializes"))
    }

    /// The keys a token may be signed with now; with a `kid`, only the key it names.
    pub(super) fn candidates(&self, kid: Option<&str>) -> Result<Vec<&[u8]>, TokenError> {
        let mut keys = vec![self.current.as_slice()];
        if let Some((previous, until)) = &self.previous
            && now() <= *until
        {
            keys.push(previous);
        }
        match kid {
            None => Ok(keys),
            Some(kid) => keys
                .into_iter()
                .find(|k| key_id(k) == kid)
                .map(|k| vec![k])
                .ok_or_else(|| TokenError::UnknownKey(kid.into())),
        }
    }
}

fn check_secret(key: &[u8]) -> Result<(), String> {
    if key.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the token secret is {} bytes; HS256 needs at least {MIN_SECRET_BYTES} (run `wsctl secret rotate` to replace it)",
            key.len()
        ));
    }
    Ok(())
}

/// A key's public name in token headers: a fingerprint that says nothing of the key.
pub fn key_id(key: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key);
    format!(
        "hs-{}",
        digest[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

//! Join tokens. A join token is a bearer secret with an expiry, as kubeadm's
//! bootstrap tokens: the cell keeps only the BLAKE3 hash of the secret, and the
//! token also pins the fingerprint of the cell CA so that the joining node can
//! check it is talking to the right cell before it sends the secret.
//!
//! Text form: `wosjoin1.<ca-fingerprint-hex>.<id>.<secret>`.

use serde::{Deserialize, Serialize};

const PREFIX: &str = "wosjoin1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "malformed join token: expected wosjoin1.<fingerprint>.<id>.<secret> (create one with `wos token create`)"
    )]
    Malformed,
}

/// A join token as the joining node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_fingerprint: String,
    pub id: String,
    pub secret: String,
}

/// What the cell stores of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub secret_hash: [u8; 32],
    /// Unix seconds after which the token is refused.
    pub expires: u64,
    pub created_by: String,
}

impl JoinToken {
    /// A fresh random token for the cell whose CA has `ca_fingerprint`.
    pub fn generate(ca_fingerprint: &str) -> JoinToken {
        JoinToken {
            ca_fingerprint: ca_fingerprint.to_string(),
            id: hex::encode(rand::random::<[u8; 4]>()),
            secret: hex::encode(rand::random::<[u8; 16]>()),
        }
    }

    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let hexish = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        match parts.as_slice() {
            [PREFIX, fp, id, secret] if hexish(fp) && hexish(id) && hexish(secret) => {
                Ok(JoinToken {
                    ca_fingerprint: fp.to_string(),
                    id: id.to_string(),
                    secret: secret.to_string(),
                })
            }
            _ => Err(TokenError::Malformed),
        }
    }

    pub fn record(&self, expires: u64, created_by: &str) -> TokenRecord {
        TokenRecord {
            id: self.id.clone(),
            secret_hash: hash_secret(&self.secret),
            expires,
            created_by: created_by.to_string(),
        }
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            self.ca_fingerprint, self.id, self.secret
        )
    }
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

impl TokenRecord {
    /// Why `secret` does not admit a node at time `now`, or `None` if it does.
    pub fn refuse(&self, secret: &str, now: u64) -> Option<&'static str> {
        // blake3::Hash compares in constant time.
        if blake3::Hash::from(self.secret_hash) != blake3::hash(secret.as_bytes()) {
            Some("join token is not valid for this cell (wrong secret)")
        } else if now >= self.expires {
            Some("join token has expired: create a new one with `wos token create`")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_check() {
        let t = JoinToken::generate("abc123");
        let parsed = JoinToken::parse(&t.to_string()).unwrap();
        assert_eq!(parsed, t);
        let rec = t.record(100, "admin");
        assert_eq!(rec.refuse(&t.secret, 99), None);
        assert!(rec.refuse(&t.secret, 100).unwrap().contains("expired"));
        assert!(rec.refuse("00", 1).unwrap().contains("wrong secret"));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "wosjoin1",
            "wosjoin1.zz.11.22",
            "x.aa.bb.cc",
            "wosjoin1.aa.bb",
        ] {
            assert_eq!(JoinToken::parse(bad), Err(TokenError::Malformed), "{bad}");
        }
    }
}

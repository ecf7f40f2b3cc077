//! The Rust client of the `/v1/` API.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::identity::Identity;
use crate::types::*;

/// The client config file that `wos up` writes, so that the CLI finds the
/// cell and its credentials without flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// API URL of a node, e.g. `https://127.0.0.1:7700`.
    pub cell: Option<String>,
    /// Path of the identity file.
    pub identity: Option<PathBuf>,
}

/// How a request failed, in the terms a script cares about (see the exit
/// codes in README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400/404/409/413/422: the request itself was wrong.
    BadRequest,
    NotFound,
    Conflict,
    /// 401/403.
    Denied,
    /// 503 or no answer: the cell (or its leader) cannot be reached now.
    Unavailable,
    Other,
}

/// A failed API call, with the server's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub message: String,
}

impl ApiFailure {
    fn transport(url: &str, e: reqwest::Error) -> ApiFailure {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "failed"
        };
        ApiFailure {
            kind: ErrorKind::Unavailable,
            status: None,
            message: format!(
                "request to {url} {what}: {e} (is the node running? check --cell / WOS_CELL)"
            ),
        }
    }
}

/// A client bound to one node of one cell.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// A capability token presented with every request.
    bearer: Option<String>,
}

impl Client {
    /// A client for the node at `base` (`https://host:port`), authenticating
    /// with `identity`.
    pub fn new(base: &str, identity: &Identity, timeout: Duration) -> Result<Client, ApiFailure> {
        let http = wos_net::cell_client(&identity.tls(), timeout).map_err(|e| ApiFailure {
            kind: ErrorKind::Other,
            status: None,
            message: format!("cannot use identity of {}: {e}", identity.principal),
        })?;
        Ok(Client {
            http,
            base: normalize_base(base),
            bearer: None,
        })
    }

    /// Presents `token` (a capability) with every request.
    pub fn with_bearer(mut self, token: Option<String>) -> Client {
        self.bearer = token.map(|t| t.trim().to_string());
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ApiFailure> {
        let req = match &self.bearer {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| ApiFailure::transport(&self.base, e))?;
        decode(resp).await
    }

    /// A request to `path` with this client's credentials, for callers that
    /// stream (the job endpoints) and so handle the response themselves.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.bearer {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Turns a failed (non-2xx) response into an [`ApiFailure`].
    pub async fn failure(resp: reqwest::Response) -> ApiFailure {
        match decode::<serde_json::Value>(resp).await {
            Err(f) => f,
            Ok(_) => ApiFailure {
                kind: ErrorKind::Other,
                status: None,
                message: "unexpected answer".into(),
            },
        }
    }

    /// A transport failure as an [`ApiFailure`].
    pub fn transport_failure(&self, e: reqwest::Error) -> ApiFailure {
        ApiFailure::transport(&self.base, e)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiFailure> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiFailure> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    pub async fn status(&self) -> Result<Status, ApiFailure> {
        self.get("/v1/status").await
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ApiFailure> {
        self.get("/v1/nodes").await
    }

    pub async fn kv_put(
        &self,
        key: &str,
        value: &str,
        if_revision: Option<u64>,
    ) -> Result<KvEntry, ApiFailure> {
        let body = KvPut {
            value: value.to_string(),
            if_revision,
        };
        self.put(&format!("/v1/kv/{key}"), &body).await
    }

    pub async fn kv_get(&self, key: &str) -> Result<KvEntry, ApiFailure> {
        self.get(&format!("/v1/kv/{key}")).await
    }
}

fn normalize_base(base: &str) -> String {
    let b = base.trim_end_matches('/');
    if b.starts_with("https://") {
        b.to_string()
    } else {
        format!("https://{b}")
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ApiFailure> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| ApiFailure {
        kind: ErrorKind::Unavailable,
        status: Some(status.as_u16()),
        message: format!("reading the response failed: {e}"),
    })?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| ApiFailure {
            kind: ErrorKind::Other,
            status: Some(status.as_u16()),
            message: format!("unexpected response body: {e}"),
        });
    }
    let message = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
    let kind = match status.as_u16() {
        401 | 403 => ErrorKind::Denied,
        404 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        400..=499 => ErrorKind::BadRequest,
        502..=504 => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    };
    Err(ApiFailure {
        kind,
        status: Some(status.as_u16()),
        message,
    })
}

//! HTTPS clients: the mutual-TLS client of nodes and users, and the two
//! clients a joining node uses before it has a certificate.

use std::sync::Arc;
use std::time::Duration;

use crate::tls::{
    AcceptAnyServer, CellServerVerifier, TlsError, TlsIdentity, provider, roots_from_pem,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .http2_keep_alive_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
}

/// The client of a principal that holds a certificate of the cell: speaks
/// HTTP/2 only, trusts only the cell's nodes.
pub fn cell_client(id: &TlsIdentity, timeout: Duration) -> Result<reqwest::Client, ClientError> {
    Ok(builder(timeout)
        .use_preconfigured_tls(id.client_config()?)
        .http2_prior_knowledge()
        .build()?)
}

/// A client without a certificate that trusts only the cell CA in
/// `ca_cert_pem`: a joining node sends its join request with it.
pub fn pinned_anonymous_client(
    ca_cert_pem: &str,
    timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)?
        .dangerous()
        .with_custom_certificate_verifier(CellServerVerifier::new(roots_from_pem(ca_cert_pem)?)?)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(builder(timeout)
        .use_preconfigured_tls(cfg)
        .http2_prior_knowledge()
        .build()?)
}

/// A client that trusts any server. It is only for downloading the CA
/// certificate, which the caller must then check against a pinned fingerprint.
pub fn bootstrap_client(timeout: Duration) -> Result<reqwest::Client, ClientError> {
    let p = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(p)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(builder(timeout)
        .use_preconfigured_tls(cfg)
        .http2_prior_knowledge()
        .build()?)
}

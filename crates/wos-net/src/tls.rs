//! The cell CA and the certificates it issues.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519, SanType, SubjectPublicKeyInfo,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

/// Every node certificate carries this DNS name, and clients verify servers
/// against it rather than against the address they dialled: nodes move, listen
/// on wildcard addresses and sit behind NAT, but the proof that matters is
/// "this is a node certificate of my cell", which only the cell CA can issue.
pub const NODE_SERVER_NAME: &str = "node.wos.internal";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid PEM ({what}): {cause}")]
    Pem { what: &'static str, cause: String },
    #[error("invalid name {0:?}: names are 1-63 characters of a-z, 0-9, '-', '_' and '.'")]
    BadName(String),
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// What kind of principal a certificate was issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    Node,
    User,
}

impl PeerKind {
    fn as_str(self) -> &'static str {
        match self {
            PeerKind::Node => "node",
            PeerKind::User => "user",
        }
    }
}

/// Who the peer of a connection proved to be with its client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerId {
    /// No client certificate (only joining and fetching the CA are allowed).
    Anonymous,
    /// A certificate issued by this cell's CA for `kind`/`name`.
    Principal { kind: PeerKind, name: String },
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerId::Anonymous => write!(f, "anonymous"),
            PeerId::Principal { kind, name } => write!(f, "{}:{name}", kind.as_str()),
        }
    }
}

/// Checks a node, user or cell name: short, lowercase, safe in URLs and paths.
pub fn check_name(name: &str) -> Result<(), TlsError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
        && !name.starts_with('.')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(TlsError::BadName(name.to_string()))
    }
}

/// A fresh Ed25519 key pair: (private key as PKCS#8 PEM, public key as SPKI PEM).
pub fn generate_keypair() -> Result<(String, String), TlsError> {
    let kp = KeyPair::generate_for(&PKCS_ED25519)?;
    Ok((private_key_pem(&kp), kp.public_key_pem()))
}

/// DER prefixes of an Ed25519 private key in PKCS#8: v2 (ring's output, with
/// the public key appended) and v1 (RFC 8410, the seed only).
const ED25519_PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The raw 32-byte Ed25519 public key inside an SPKI PEM.
pub fn ed25519_public_key(spki_pem: &str) -> Result<[u8; 32], TlsError> {
    let bad = |cause: &str| TlsError::Pem {
        what: "public key",
        cause: cause.into(),
    };
    let der = pem::parse(spki_pem).map_err(|e| bad(&e.to_string()))?;
    let bytes = der.contents();
    // SEQ { SEQ { OID 1.3.101.112 }, BIT STRING { 0x00, key } }: 12 bytes, then the key.
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    if bytes.len() != 44 || bytes[..12] != PREFIX {
        return Err(bad("not an Ed25519 public key"));
    }
    Ok(bytes[12..].try_into().expect("32 bytes"))
}

/// The 32-byte Ed25519 seed inside a PKCS#8 private key PEM (v1 or v2).
pub fn ed25519_seed(pkcs8_pem: &str) -> Result<[u8; 32], TlsError> {
    let bad = |cause: &str| TlsError::Pem {
        what: "private key",
        cause: cause.into(),
    };
    let der = pem::parse(pkcs8_pem).map_err(|e| bad(&e.to_string()))?;
    let bytes = der.contents();
    let v1 = bytes.len() == 48 && bytes[..16] == ED25519_PKCS8_V1_PREFIX;
    let v2 = bytes.len() >= 48 && bytes[..16] == ED25519_PKCS8_V2_PREFIX;
    if !(v1 || v2) {
        return Err(bad("not an Ed25519 private key"));
    }
    Ok(bytes[16..48].try_into().expect("32 bytes"))
}

/// The key as RFC 8410 PKCS#8 v1 PEM. ring writes v2 documents, which
/// OpenSSL 3.0 (and so curl) cannot read; v1 is what every tool reads, and
/// ring and rustls read it too.
fn private_key_pem(kp: &KeyPair) -> String {
    let der = kp.serialize_der();
    let v1 = match der.get(..16) {
        Some(prefix) if prefix == ED25519_PKCS8_V2_PREFIX && der.len() >= 48 => {
            let mut v1 = ED25519_PKCS8_V1_PREFIX.to_vec();
            v1.extend_from_slice(&der[16..48]);
            v1
        }
        _ => return kp.serialize_pem(),
    };
    pem::encode(&pem::Pem::new("PRIVATE KEY", v1))
}

/// BLAKE3 of the CA certificate's DER bytes, hex: what a join token pins.
pub fn ca_fingerprint(ca_cert_pem: &str) -> Result<String, TlsError> {
    let der = first_cert_der(ca_cert_pem, "CA certificate")?;
    Ok(blake3::hash(der.as_ref()).to_hex().to_string())
}

/// The cell's certificate authority: its certificate and signing key.
pub struct CellCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CellCa {
    /// Creates a new CA for the cell `cell`.
    pub fn generate(cell: &str) -> Result<CellCa, TlsError> {
        check_name(cell)?;
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("wos cell CA {cell}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, 20);
        let cert = params.self_signed(&key)?;
        Ok(CellCa {
            cert_pem: cert.pem(),
            key_pem: private_key_pem(&key),
        })
    }

    /// Issues a certificate for `name` of `kind` in `cell`, binding the given
    /// public key (SPKI PEM). The private key never reaches the CA.
    pub fn issue(
        &self,
        cell: &str,
        kind: PeerKind,
        name: &str,
        public_key_pem: &str,
    ) -> Result<String, TlsError> {
        check_name(name)?;
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| TlsError::Pem {
            what: "CA key",
            cause: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &ca_key)?;
        let subject_key =
            SubjectPublicKeyInfo::from_pem(public_key_pem).map_err(|e| TlsError::Pem {
                what: "public key",
                cause: e.to_string(),
            })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        let uri = format!("wos://{cell}/{}/{name}", kind.as_str());
        params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if kind == PeerKind::Node {
            params
                .subject_alt_names
                .push(SanType::DnsName(NODE_SERVER_NAME.try_into()?));
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, 10);
        Ok(params.signed_by(&subject_key, &issuer)?.pem())
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(params: &mut CertificateParams, years: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365 * years);
}

/// Reads the principal a certificate names (its `wos://cell/kind/name` URI).
pub fn peer_from_cert_der(der: &[u8]) -> PeerId {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return PeerId::Anonymous;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return PeerId::Anonymous;
    };
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            let Some(rest) = uri.strip_prefix("wos://") else {
                continue;
            };
            let mut parts = rest.splitn(3, '/');
            let (_cell, kind, name) = (parts.next(), parts.next(), parts.next());
            let kind = match kind {
                Some("node") => PeerKind::Node,
                Some("user") => PeerKind::User,
                _ => continue,
            };
            if let Some(name) = name {
                return PeerId::Principal {
                    kind,
                    name: name.to_string(),
                };
            }
        }
    }
    PeerId::Anonymous
}

fn first_cert_der(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, TlsError> {
    certs_der(pem, what)?
        .into_iter()
        .next()
        .ok_or(TlsError::Pem {
            what,
            cause: "no certificate in PEM".into(),
        })
}

fn certs_der(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            cause: e.to_string(),
        })
}

fn private_key_der(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| TlsError::Pem {
            what: "private key",
            cause: e.to_string(),
        })?
        .ok_or(TlsError::Pem {
            what: "private key",
            cause: "no private key in PEM".into(),
        })
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A principal's TLS material: the cell CA certificate, its own certificate
/// and private key (all PEM).
#[derive(Clone, Serialize, Deserialize)]
pub struct TlsIdentity {
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    fn roots(&self) -> Result<RootCertStore, TlsError> {
        roots_from_pem(&self.ca_cert_pem)
    }

    /// Server side of a node: presents the node certificate; asks every client
    /// for a certificate of this cell but lets anonymous clients through, so
    /// that the API can answer them with a clear 401 (and let joiners join).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()?),
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                certs_der(&self.cert_pem, "certificate")?,
                private_key_der(&self.key_pem)?,
            )?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Client side: presents our certificate, trusts only node certificates
    /// issued by the cell CA.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let mut cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(CellServerVerifier::new(self.roots()?)?)
            .with_client_auth_cert(
                certs_der(&self.cert_pem, "certificate")?,
                private_key_der(&self.key_pem)?,
            )?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(cfg)
    }
}

pub(crate) fn roots_from_pem(ca_cert_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs_der(ca_cert_pem, "CA certificate")? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// Verifies that the server holds a node certificate of the cell, whatever
/// address we dialled (see [`NODE_SERVER_NAME`]).
#[derive(Debug)]
pub(crate) struct CellServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl CellServerVerifier {
    pub(crate) fn new(roots: RootCertStore) -> Result<Arc<CellServerVerifier>, TlsError> {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
        Ok(Arc::new(CellServerVerifier { inner }))
    }
}

impl rustls::client::danger::ServerCertVerifier for CellServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(NODE_SERVER_NAME).expect("static DNS name");
        self.inner
            .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any server certificate. Used only to download a cell's CA
/// certificate before joining, which the joiner then checks against the
/// fingerprint pinned in its join token.
#[derive(Debug)]
pub(crate) struct AcceptAnyServer(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificate_names_its_principal() {
        let ca = CellCa::generate("lab").unwrap();
        let (_key, spki) = generate_keypair().unwrap();
        let cert = ca.issue("lab", PeerKind::User, "alice", &spki).unwrap();
        let der = first_cert_der(&cert, "cert").unwrap();
        assert_eq!(
            peer_from_cert_der(der.as_ref()),
            PeerId::Principal {
                kind: PeerKind::User,
                name: "alice".into()
            }
        );
    }

    #[test]
    fn private_keys_are_pkcs8_v1_and_still_load() {
        let (key, _) = generate_keypair().unwrap();
        let der = private_key_der(&key).unwrap();
        let PrivateKeyDer::Pkcs8(p) = &der else {
            panic!("not PKCS#8")
        };
        assert_eq!(&p.secret_pkcs8_der()[..16], &ED25519_PKCS8_V1_PREFIX);
        assert_eq!(p.secret_pkcs8_der().len(), 48);
        KeyPair::from_pem(&key).unwrap();
        rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
    }

    #[test]
    fn raw_ed25519_keys_match() {
        let (key, spki) = generate_keypair().unwrap();
        let seed = ed25519_seed(&key).unwrap();
        let public = ed25519_public_key(&spki).unwrap();
        let kp = KeyPair::from_pem(&key).unwrap();
        assert_eq!(kp.public_key_raw(), &public[..]);
        assert_ne!(seed, [0u8; 32]);
        assert!(ed25519_public_key(&key).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("node-1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("../x").is_err());
        assert!(check_name("Alice").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn fingerprint_is_stable_and_distinct() {
        let a = CellCa::generate("a").unwrap();
        let b = CellCa::generate("a").unwrap();
        assert_eq!(
            ca_fingerprint(&a.cert_pem).unwrap(),
            ca_fingerprint(&a.cert_pem).unwrap()
        );
        assert_ne!(
            ca_fingerprint(&a.cert_pem).unwrap(),
            ca_fingerprint(&b.cert_pem).unwrap()
        );
    }
}

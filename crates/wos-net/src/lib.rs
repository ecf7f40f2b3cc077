//! Transport: how nodes and clients of a cell reach each other.
//!
//! Owns the cell certificate authority (Ed25519, issued with `rcgen`), the
//! certificates of nodes and users, and the one mutual-TLS HTTP/2 stack
//! (`rustls` with the ring provider): the server accept loop that tells each
//! request who its peer is ([`PeerId`]), and the `reqwest` clients that nodes
//! and the CLI use. Everything above this crate speaks HTTP through it and never
//! touches TLS.
//!
//! This crate never depends on the metadata, membership or auth crates: it
//! says *who* a peer proved to be, not what that peer may do.

mod client;
mod server;
mod tls;

pub use client::{ClientError, bootstrap_client, cell_client, pinned_anonymous_client};
pub use server::{ServeError, serve};
pub use tls::{
    CellCa, NODE_SERVER_NAME, PeerId, PeerKind, TlsError, TlsIdentity, ca_fingerprint, check_name,
    ed25519_public_key, ed25519_seed, generate_keypair, peer_from_cert_der,
};

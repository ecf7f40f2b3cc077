//! The daemon: a running wos node.
//!
//! Owns the data directory ([`config`]), creating or joining a cell
//! ([`bootstrap`]), the HTTP router and its handlers ([`api`]), and the wiring
//! of store, transport, metadata and membership into one process ([`run`]),
//! and the jobs the node runs (`jobs`: admission, sandbox, output, ending;
//! `jobs_api`: their endpoints and the relay between nodes), and WebFS
//! (`fs_api`: the HTTP gateway, chunk replication, fsck and repair;
//! `fs_cache`: callbacks, which let reads skip the metadata leader).
//! The CLI in the `wos` crate calls into here; nothing else depends on this
//! crate.

pub mod api;
pub mod bootstrap;
pub mod config;
mod ctx;
mod fs_api;
mod fs_cache;
mod jobs;
mod jobs_api;
mod run;
pub mod sensors;

pub use bootstrap::{InitOptions, InitOutput, JoinOptions, init_cell, join_cell};
pub use run::{RunOptions, run_node};

/// Unix milliseconds now.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix seconds now.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

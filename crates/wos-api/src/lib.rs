//! The public API of a cell: the JSON types of every `/v1/` endpoint, the
//! identity and client-config files, and [`Client`], the Rust client that the
//! CLI (and any program) uses.
//!
//! This crate is what a program outside the cell links against: it never
//! depends on the node's internals (metadata, membership, Raft).

mod client;
pub mod fs;
mod identity;
pub mod jobs;
mod types;

pub use client::{ApiFailure, Client, ClientConfig, ErrorKind};
pub use fs::{FsEntry, FsIds, FsListing, FsOpRequest, FsckReport, SpecialKind};
pub use identity::{Identity, IdentityError, default_client_config_path, write_private_file};
pub use jobs::{
    FrameDecoder, FrameKind, JobInfo, JobKind, JobLimits, JobState, JobUsage, RunRequest,
    SignalRequest, encode_frame,
};
pub use types::*;

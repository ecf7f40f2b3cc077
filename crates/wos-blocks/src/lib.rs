//! The chunk store of WebFS: the local half of file data, and where chunks go.
//!
//! WebFS keeps file data as immutable, content-addressed chunks: a chunk is
//! named by the BLAKE3 hash of its bytes ([`ChunkId`]), files are cut into
//! fixed [`CHUNK_SIZE`] pieces ([`Chunker`]), and a file version is a list of
//! chunk ids kept in the cell's metadata. This crate owns
//!
//! * [`ChunkStore`]: one node's directory of chunks as plain files, with
//!   crash-safe writes (an acknowledged put survives a crash), verified reads
//!   (a corrupt file is moved aside so that repair fetches a good copy), and
//!   the collection of chunks no version refers to;
//! * [`ChunkCache`]: chunks a node read from others, kept (LRU, bounded)
//!   so that reading them again costs no network;
//! * [`place`]: which nodes hold a chunk, by rendezvous hashing over the live
//!   nodes weighted by their free space.
//!
//! It never depends on the network, the cell metadata or async: the node
//! daemon serves the store over HTTP, decides what is live from the metadata,
//! and runs the blocking calls here on blocking threads. Keeping this crate
//! to plain files and pure functions lets it be tested without a cell.

mod cache;
mod chunker;
pub mod direct;
mod error;
mod id;
mod place;
mod store;

pub use cache::{CacheStats, ChunkCache};
pub use chunker::{CHUNK_SIZE, Chunker};
pub use error::{Error, Result};
pub use id::{ChunkId, ParseChunkIdError};
pub use place::{Candidate, place};
pub use store::{ChunkStore, CollectReport, Stats};

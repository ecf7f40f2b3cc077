//! WebFS over HTTP: what `GET /v1/fs/PATH` lists and stats, what
//! `POST /v1/fs/PATH` changes, and what `GET /v1/fsck` reports.

use serde::{Deserialize, Serialize};

/// One entry of the namespace, as listings and stats show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    pub name: String,
    pub path: String,
    /// The object id: it never changes when the data moves or the entry
    /// is renamed.
    pub ino: u64,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    pub size: u64,
    /// Files: the committed version (what `--if-version` and `If-Match`
    /// compare); 0 for other kinds.
    pub version: u64,
    pub mode: u32,
    pub owner: String,
    pub mtime_ms: u64,
    #[serde(default)]
    pub target: Option<String>,
    /// Files: how many chunks hold the data.
    #[serde(default)]
    pub chunks: usize,
}

/// `GET /v1/fs/DIR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsListing {
    pub path: String,
    pub entries: Vec<FsEntry>,
}

/// `POST /v1/fs/PATH`: a namespace change that carries no data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum FsOpRequest {
    /// Make a directory (`parents`: and missing ones above it, like
    /// `mkdir -p`).
    Mkdir {
        #[serde(default)]
        parents: bool,
        #[serde(default)]
        mode: Option<u32>,
    },
    /// Move to `to` (atomic; replaces a file there).
    Rename {
        to: String,
    },
    Symlink {
        target: String,
    },
    Chmod {
        mode: u32,
    },
    /// Set how many nodes hold each chunk of files below this directory
    /// (none: inherit from the parent; the cell's default is 3).
    Replicas {
        replicas: Option<u8>,
    },
}

/// `GET /v1/fsck`: every chunk the namespace refers to, against the copies
/// the live nodes hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckReport {
    pub files: u64,
    pub chunks: u64,
    pub bytes: u64,
    /// Nodes asked (alive ones) and nodes that did not answer.
    pub nodes_asked: Vec<String>,
    pub nodes_unreachable: Vec<String>,
    /// Chunks with fewer copies than their directory's R: `id copies/R`.
    pub under_replicated: Vec<String>,
    /// Chunks no live node holds.
    pub missing: Vec<String>,
    /// Chunks held but not referenced (garbage to collect).
    pub unreferenced: u64,
}

impl FsckReport {
    pub fn healthy(&self) -> bool {
        self.under_replicated.is_empty() && self.missing.is_empty()
    }
}

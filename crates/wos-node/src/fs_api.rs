//! WebFS on a node: the HTTP gateway (`/v1/fs/PATH`: GET with `Range` and
//! `ETag`, HEAD, PUT, DELETE, POST for namespace changes), `GET /v1/fsck`,
//! the chunk endpoints between nodes (`/internal/chunks`), and repair.
//!
//! Data: a file's content is cut into 4 MiB chunks named by their BLAKE3
//! hash (`wos-blocks`); each chunk is stored on R nodes chosen by weighted
//! rendezvous hashing over the live nodes before the write is acknowledged.
//! Namespace: `wos-fsmeta` inside the cell's Raft state; a PUT commits the
//! new chunk list in one metadata write once every chunk is stored, so a
//! reader sees the old or the new content, never a mix (close-to-open).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use wos_api::{FsEntry, FsIds, FsListing, FsOpRequest, FsckReport, NodeState, SpecialKind};
use wos_auth::{Action, Object, Principal};
use wos_blocks::{CHUNK_SIZE, Candidate, ChunkId};
use wos_fsmeta::{ChunkRef, Errno, FsError, FsOp, FsReply, Ino, Inode, Kind};
use wos_meta::{CellState, Command, Outcome};

use crate::api::{ApiError, Bearer, check, node_infos};
use crate::ctx::NodeCtx;
use crate::now_millis;

type Ctx = State<Arc<NodeCtx>>;

/// Chunks a read fetches ahead of the one it sends.
const READ_AHEAD: usize = 3;
/// Chunks an upload replicates while it receives the next.
const WRITE_BEHIND: usize = 8;

pub fn routes() -> Router<Arc<NodeCtx>> {
    Router::new()
        .route(
            "/v1/fs/{*path}",
            get(fs_get)
                .put(fs_put)
                .delete(fs_delete)
                .post(fs_post)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/fs", get(fs_root).post(fs_post_root))
        .route("/v1/fs/", get(fs_root).post(fs_post_root))
        .route("/v1/fsck", get(fsck))
        .route("/internal/chunks", get(chunk_list))
        .route(
            crate::fs_cache::REGISTER_PATH,
            axum::routing::post(crate::fs_cache::register_handler),
        )
        .route(
            crate::fs_cache::BREAK_PATH,
            axum::routing::post(crate::fs_cache::break_handler),
        )
        .route(
            "/internal/chunks/{id}",
            put(chunk_put)
                .get(chunk_get)
                .layer(DefaultBodyLimit::max(CHUNK_SIZE + 1024)),
        )
}

/// The object a `/v1/fs/...` URL path names, for the reference monitor.
pub fn object_of(rest: &[&str]) -> Object {
    let joined = rest.join("/");
    let decoded = percent_encoding::percent_decode_str(&joined).decode_utf8_lossy();
    Object::Fs(format!("/{}", decoded.trim_end_matches('/')))
}

fn fs_error(e: FsError) -> ApiError {
    let status = match e.errno() {
        Errno::NoEnt => StatusCode::NOT_FOUND,
        Errno::Exist | Errno::NotEmpty | Errno::IsDir | Errno::NotDir => StatusCode::CONFLICT,
        Errno::Conflict => StatusCode::PRECONDITION_FAILED,
        Errno::Perm => StatusCode::FORBIDDEN,
        Errno::Inval | Errno::NameTooLong | Errno::Loop => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.to_string())
}

fn full_path(path: &str) -> Result<String, ApiError> {
    let p = format!("/{}", path.trim_end_matches('/'));
    let p = if p.is_empty() { "/".to_string() } else { p };
    wos_fsmeta::parse_path(&p).map_err(fs_error)?;
    Ok(p)
}

/// Splits `/a/b/c` into (`/a/b`, `c`).
fn split(path: &str) -> Result<(String, String), ApiError> {
    let (parent, name) = path
        .rsplit_once('/')
        .ok_or_else(|| ApiError::bad(format!("{path} has no parent")))?;
    if name.is_empty() {
        return Err(ApiError::bad("the root has no parent"));
    }
    let parent = if parent.is_empty() { "/" } else { parent };
    Ok((parent.to_string(), name.to_string()))
}

fn entry(path: &str, inode: &Inode) -> FsEntry {
    let (kind, size, version, target, chunks, rdev) = match &inode.kind {
        Kind::Dir { entries, .. } => ("dir", entries.len() as u64, 0, None, 0, 0),
        Kind::File {
            version,
            size,
            chunks,
        } => ("file", *size, *version, None, chunks.len(), 0),
        Kind::Symlink { target } => {
            let t = Some(target.clone());
            ("symlink", target.len() as u64, 0, t, 0, 0)
        }
        Kind::Special { kind, rdev } => (special_kind(*kind).as_str(), 0, 0, None, 0, *rdev),
    };
    FsEntry {
        name: path.rsplit('/').next().unwrap_or("").to_string(),
        path: path.to_string(),
        ino: inode.ino.0,
        kind: kind.into(),
        size,
        version,
        mode: inode.mode,
        owner: inode.owner.clone(),
        mtime_ms: inode.mtime_ms,
        ctime_ms: inode.ctime_ms,
        atime_ms: inode.atime_ms,
        nlink: inode.nlink,
        rdev,
        target,
        chunks,
    }
}

/// The API's name for a special file's kind, and back.
fn special_kind(kind: wos_fsmeta::SpecialKind) -> SpecialKind {
    match kind {
        wos_fsmeta::SpecialKind::Fifo => SpecialKind::Fifo,
        wos_fsmeta::SpecialKind::Socket => SpecialKind::Socket,
        wos_fsmeta::SpecialKind::CharDevice => SpecialKind::Char,
        wos_fsmeta::SpecialKind::BlockDevice => SpecialKind::Block,
    }
}

fn fsmeta_special(kind: SpecialKind) -> wos_fsmeta::SpecialKind {
    match kind {
        SpecialKind::Fifo => wos_fsmeta::SpecialKind::Fifo,
        SpecialKind::Socket => wos_fsmeta::SpecialKind::Socket,
        SpecialKind::Char => wos_fsmeta::SpecialKind::CharDevice,
        SpecialKind::Block => wos_fsmeta::SpecialKind::BlockDevice,
    }
}

/// A GET of a special file: it has a name and attributes but no bytes.
fn no_content(path: &str, kind: wos_fsmeta::SpecialKind) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "{path} is a {} (a special file): it has no content to read; \
             see its attributes with ?stat=true",
            kind.describe()
        ),
    )
}

fn etag(inode: &Inode) -> String {
    let version = match &inode.kind {
        Kind::File { version, .. } => *version,
        _ => 0,
    };
    format!("\"{}.{}\"", inode.ino.0, version)
}

/// Applies a namespace change through the cell's metadata.
async fn apply(ctx: &NodeCtx, op: FsOp) -> Result<FsReply, ApiError> {
    match ctx.meta.write(Command::Fs { op }).await?.outcome {
        Outcome::Fs { reply } => (*reply).map_err(fs_error),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {other:?}"),
        )),
    }
}

#[derive(Debug, Deserialize, Default)]
struct ReadQuery {
    /// Read the local replica (possibly stale) instead of a linearizable
    /// read.
    #[serde(default)]
    stale: bool,
    /// Stat (JSON) instead of the content.
    #[serde(default)]
    stat: bool,
}

async fn fs_root(
    State(ctx): Ctx,
    Query(q): Query<ReadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read_path(&ctx, "/".into(), q, &headers).await
}

/// `GET|HEAD /v1/fs/PATH`: a file's bytes (with `Range`, `ETag`,
/// `If-None-Match`), a directory's listing (JSON), or with `?stat` the
/// entry itself (JSON).
async fn fs_get(
    State(ctx): Ctx,
    Path(path): Path<String>,
    Query(q): Query<ReadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = full_path(&path)?;
    read_path(&ctx, path, q, &headers).await
}

async fn read_path(
    ctx: &Arc<NodeCtx>,
    path: String,
    q: ReadQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let listing = !q.stat;
    let read = |s: &CellState| find_for_read(s, &path, listing);
    // Every open sees the latest committed version (close-to-open): from
    // this node's replica under callbacks, else after asking the leader.
    let found = if q.stale {
        ctx.meta.read(read).0
    } else {
        crate::fs_cache::fresh_read(ctx, read).await?
    };
    match found.map_err(fs_error)? {
        Found::Inode(inode) if q.stat => Ok(Json(entry(&path, &inode)).into_response()),
        Found::Listing(entries) => Ok(Json(FsListing { path, entries }).into_response()),
        Found::Inode(inode) => match &inode.kind {
            Kind::File { size, chunks, .. } => serve_file(ctx, &inode, *size, chunks, headers),
            Kind::Dir { .. } => Err(crate::api::internal("a directory read without its listing")),
            Kind::Symlink { .. } => Err(ApiError::bad("a symlink loop")),
            Kind::Special { kind, .. } => Err(no_content(&path, *kind)),
        },
    }
}

/// What a read found: an inode, or a directory's entries.
enum Found {
    Inode(Inode),
    Listing(Vec<FsEntry>),
}

/// Resolves `path` (following symlinks) in `s`, with the objects the
/// answer depends on: the directories from the root down and the object
/// itself (and a listing's children, whose sizes and times it shows); for
/// a name that is absent, the directories down to the one that lacks it.
/// Not cacheable (`None`) when a symlink or `..` was on the way.
fn find_for_read(
    s: &CellState,
    path: &str,
    listing: bool,
) -> (Result<Found, FsError>, Option<Vec<Ino>>) {
    let inode = match s.fs.resolve_follow(path) {
        Ok(inode) => inode,
        Err(e) => {
            let deps = matches!(e, FsError::NotFound { .. })
                .then(|| absent_deps(s, path))
                .flatten();
            return (Err(e), deps);
        }
    };
    let canonical = s.fs.path_of(inode.ino).is_some_and(|p| p == path);
    let mut deps = canonical.then(|| chain(s, inode.ino));
    if !(listing && inode.is_dir()) {
        return (Ok(Found::Inode(inode.clone())), deps);
    }
    let entries = s.fs.list(inode.ino).map(|list| {
        list.into_iter()
            .map(|(name, child)| {
                if let Some(d) = deps.as_mut() {
                    d.push(child.ino);
                }
                entry(&child_path(path, &name), child)
            })
            .collect::<Vec<_>>()
    });
    (entries.map(Found::Listing), deps)
}

fn child_path(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// `ino` and every directory above it.
fn chain(s: &CellState, ino: Ino) -> Vec<Ino> {
    let mut inos = vec![ino];
    let mut at = ino;
    while let Some((parent, _)) = s.fs.location(at) {
        if parent == at || inos.len() > 4096 {
            break;
        }
        inos.push(parent);
        at = parent;
    }
    inos
}

/// The objects that say `path` is absent: its parent directory (reached
/// without symlinks) and those above it.
fn absent_deps(s: &CellState, path: &str) -> Option<Vec<Ino>> {
    let (parent, name) = path.rsplit_once('/')?;
    let parent = if parent.is_empty() { "/" } else { parent };
    let dir = s.fs.resolve(parent).ok()?;
    let canonical = s.fs.path_of(dir.ino).is_some_and(|p| p == parent);
    (canonical && dir.entries()?.get(name).is_none()).then(|| chain(s, dir.ino))
}

fn serve_file(
    ctx: &Arc<NodeCtx>,
    inode: &Inode,
    size: u64,
    chunks: &[ChunkRef],
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let tag = etag(inode);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => Some(parse_range(r, size)?),
        None => None,
    };
    let (start, end) = range.unwrap_or((0, size));
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
    let chunks = chunks.to_vec();
    let ctx2 = ctx.clone();
    tokio::spawn(async move {
        // The chunks the range touches, with the part of each to send.
        let mut offset = 0u64;
        let mut wanted = vec![];
        for c in chunks {
            let (c_start, c_end) = (offset, offset + c.len as u64);
            offset = c_end;
            if c_end > start && c_start < end {
                let from = start.saturating_sub(c_start) as usize;
                let to = (end.min(c_end) - c_start) as usize;
                wanted.push((ChunkId(c.id), from, to));
            }
        }
        // A few chunks are fetched ahead of the one being sent, so that
        // the network and the disks of several nodes work at once; memory
        // stays bounded by READ_AHEAD chunks.
        let ctx3 = ctx2.clone();
        let mut fetched = futures::stream::iter(wanted)
            .map(move |(id, from, to)| {
                let ctx = ctx3.clone();
                async move { fetch_chunk(&ctx, &id).await.map(|d| (d, from, to)) }
            })
            .buffered(READ_AHEAD);
        while let Some(next) = fetched.next().await {
            let item = next
                .map(|(data, from, to)| Bytes::from(data).slice(from..to))
                .map_err(|e| std::io::Error::other(e.message));
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let mut rx = rx;
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, tag);
    if range.is_some() {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    Ok(resp
        .body(Body::from_stream(stream))
        .expect("response builds"))
}

/// Parses a single `bytes=A-B` range against `size`; beyond the end: 416.
fn parse_range(value: &str, size: u64) -> Result<(u64, u64), ApiError> {
    let unsatisfiable = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("range {value:?} is outside the file's {size} bytes"),
        )
    };
    let spec = value
        .strip_prefix("bytes=")
        .ok_or_else(|| ApiError::bad(format!("unsupported range {value:?}: use bytes=A-B")))?;
    if spec.contains(',') {
        return Err(ApiError::bad("one range per request"));
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| ApiError::bad(format!("bad range {value:?}")))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::bad(format!("bad range {value:?}")))
    };
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => {
            let n = parse(b)?;
            (size.saturating_sub(n), size)
        }
        (false, true) => (parse(a)?, size),
        (false, false) => (parse(a)?, parse(b)?.saturating_add(1).min(size)),
        (true, true) => return Err(ApiError::bad(format!("bad range {value:?}"))),
    };
    if start >= size || start >= end {
        return Err(unsatisfiable());
    }
    Ok((start, end))
}

/// Live nodes as placement candidates, weighted by their free disk.
fn candidates(ctx: &NodeCtx) -> Vec<Candidate> {
    node_infos(ctx)
        .into_iter()
        .filter(|n| n.state == NodeState::Alive)
        .map(|n| {
            let free = if n.name == ctx.cfg.name {
                ctx.chunks.free_bytes()
            } else {
                n.sensors.map(|s| s.disk_free_bytes).unwrap_or(1)
            };
            Candidate {
                name: n.name,
                free_bytes: free.max(1),
            }
        })
        .collect()
}

fn address_of(ctx: &NodeCtx, node: &str) -> Option<String> {
    ctx.meta
        .read(|s| s.nodes.get(node).map(|n| n.address.clone()))
}

/// Stores a chunk on `node` (this one or another).
async fn store_on(ctx: &NodeCtx, node: &str, id: &ChunkId, data: &Bytes) -> Result<(), String> {
    if node == ctx.cfg.name {
        let store = ctx.chunks.clone();
        let (id, data) = (*id, data.clone());
        return tokio::task::spawn_blocking(move || store.put(&id, &data))
            .await
            .map_err(|e| e.to_string())?
            .map(|_| ())
            .map_err(|e| e.to_string());
    }
    let address = address_of(ctx, node).ok_or_else(|| format!("no node {node}"))?;
    let resp = ctx
        .http
        .put(format!("https://{address}/internal/chunks/{id}"))
        .body(data.clone())
        .send()
        .await
        .map_err(|e| format!("node {node}: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let why = resp.text().await.unwrap_or_default();
        let why: String = why.chars().take(300).collect();
        return Err(format!("node {node} answered {status}: {why}"));
    }
    Ok(())
}

/// Stores a chunk on `r` nodes, best placed first, moving down the
/// rendezvous order past nodes that fail. Acknowledged only when `r` hold it.
async fn replicate(ctx: &NodeCtx, id: &ChunkId, data: Bytes, r: usize) -> Result<(), ApiError> {
    let nodes = candidates(ctx);
    let order = wos_blocks::place(id, &nodes, nodes.len());
    let want = r.min(order.len()).max(1);
    let mut stored = 0;
    let mut problems = vec![];
    let mut next = order.iter();
    while stored < want {
        let batch: Vec<&String> = next.by_ref().take(want - stored).collect();
        if batch.is_empty() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "chunk {id} reached only {stored} of {want} nodes: {}; nothing was changed",
                    problems.join("; ")
                ),
            ));
        }
        let results =
            futures::future::join_all(batch.iter().map(|n| store_on(ctx, n, id, &data))).await;
        for res in results {
            match res {
                Ok(()) => stored += 1,
                Err(e) => problems.push(e),
            }
        }
    }
    Ok(())
}

/// A chunk's bytes: from this node's store or its cache, or from the nodes
/// most likely to hold it (rendezvous order over every node of the cell),
/// verified, then cached.
async fn fetch_chunk(ctx: &NodeCtx, id: &ChunkId) -> Result<Vec<u8>, ApiError> {
    let store = ctx.chunks.clone();
    let local_id = *id;
    if store.contains(id)
        && let Ok(Ok(data)) = tokio::task::spawn_blocking(move || store.get(&local_id)).await
    {
        return Ok(data);
    }
    let cache = ctx.chunk_cache.clone();
    let cached_id = *id;
    if let Ok(Some(data)) = tokio::task::spawn_blocking(move || cache.get(&cached_id)).await {
        metrics::counter!("wos_fs_chunk_cache_total", "result" => "hit").increment(1);
        return Ok(data);
    }
    metrics::counter!("wos_fs_chunk_cache_total", "result" => "miss").increment(1);
    let data = fetch_remote_chunk(ctx, id).await?;
    let (cache, cached_id, copy) = (ctx.chunk_cache.clone(), *id, data.clone());
    // Kept in the background: the reader does not wait for the cache.
    tokio::task::spawn_blocking(move || {
        if let Err(e) = cache.put(&cached_id, &copy) {
            tracing::debug!("caching chunk {cached_id}: {e}");
        }
    });
    Ok(data)
}

/// A chunk's bytes from the nodes most likely to hold it, verified.
async fn fetch_remote_chunk(ctx: &NodeCtx, id: &ChunkId) -> Result<Vec<u8>, ApiError> {
    let mut all: Vec<Candidate> = candidates(ctx);
    let alive: BTreeSet<String> = all.iter().map(|c| c.name.clone()).collect();
    let others: Vec<Candidate> = ctx.meta.read(|s| {
        s.nodes
            .keys()
            .filter(|n| !alive.contains(*n))
            .map(|n| Candidate {
                name: n.clone(),
                free_bytes: 1,
            })
            .collect()
    });
    all.extend(others);
    for node in wos_blocks::place(id, &all, all.len()) {
        if node == ctx.cfg.name {
            continue;
        }
        let Some(address) = address_of(ctx, &node) else {
            continue;
        };
        let resp = ctx
            .http
            .get(format!("https://{address}/internal/chunks/{id}"))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(resp) = resp else { continue };
        if !resp.status().is_success() {
            continue;
        }
        let Ok(bytes) = resp.bytes().await else {
            continue;
        };
        if ChunkId::of(&bytes) == *id {
            return Ok(bytes.to_vec());
        }
        tracing::warn!(chunk = %id, %node, "a node served a chunk with the wrong content");
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("no live node holds chunk {id} (see `wos fs fsck`)"),
    ))
}

#[derive(Debug, Deserialize, Default)]
struct PutQuery {
    /// Mode of a new file (octal digits, e.g. 644).
    #[serde(default)]
    mode: Option<String>,
    /// The object the path must name (else 412, nothing changed): a writer
    /// does not write over a file that was renamed, removed or replaced
    /// since it opened it. With `new`, the id (reserved with
    /// `ReserveIds`) the file is created under if the path names none.
    #[serde(default)]
    ino: Option<u64>,
    /// Create the file under `ino` with this content, in one step.
    #[serde(default)]
    new: bool,
}

/// The version a conditional write expects: `X-Wos-If-Version: N` or
/// `If-Match: "INO.VERSION"`.
fn if_version(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    if let Some(v) = headers.get("x-wos-if-version") {
        let v = v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| ApiError::bad("X-Wos-If-Version must be a number"))?;
        return Ok(Some(v));
    }
    let Some(m) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let m = m.to_str().unwrap_or("").trim().trim_matches('"');
    let version = m
        .rsplit_once('.')
        .map(|(_, v)| v)
        .unwrap_or(m)
        .parse()
        .map_err(|_| ApiError::bad(format!("If-Match {m:?} is not an ETag of this API")))?;
    Ok(Some(version))
}

/// `PUT /v1/fs/PATH`: the body becomes the file's new content, visible at
/// once and whole when the answer arrives; a body cut short changes
/// nothing.
async fn fs_put(
    State(ctx): Ctx,
    Extension(who): Extension<Principal>,
    Path(path): Path<String>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut body = Some(body);
    let result = put_file(&ctx, &who, &path, q, &headers, &mut body).await;
    let failed = result.is_err();
    if let (true, Some(unread)) = (failed, body.take()) {
        // Read (bounded) what the client already sent before refusing: an
        // HTTP/2 answer to an unread request makes some clients (curl 7.x)
        // report a framing error instead of the message.
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            axum::body::to_bytes(unread, 1 << 20),
        )
        .await;
    }
    result
}

async fn put_file(
    ctx: &Arc<NodeCtx>,
    who: &Principal,
    path: &str,
    q: PutQuery,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    let path = full_path(path)?;
    let (parent_path, name) = split(&path)?;
    let expected = if_version(headers)?;
    let exclusive = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let mode = match q.mode.as_deref() {
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| ApiError::bad(format!("mode {m:?} is not an octal mode")))?,
        None => 0o644,
    };
    // The checks below are the friendly part: the metadata ops check
    // again when they apply.
    // (Only the parent's id: cloning its inode would copy every entry.)
    let (parent, existing) = crate::fs_cache::fresh_read(ctx, |s| {
        let parent =
            s.fs.resolve_follow(&parent_path)
                .map(|p| (p.ino, p.is_dir()));
        let existing = parent
            .as_ref()
            .ok()
            .and_then(|(p, _)| s.fs.lookup(*p, &name).cloned());
        let deps = match &parent {
            Ok((p, _)) if s.fs.path_of(*p).is_some_and(|c| c == parent_path) => Some(chain(s, *p)),
            _ => None,
        };
        ((parent, existing), deps)
    })
    .await?;
    let (parent, parent_is_dir) = parent.map_err(fs_error)?;
    if !parent_is_dir {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{parent_path} is not a directory"),
        ));
    }
    let same_object = existing.as_ref().is_some_and(|e| Some(e.ino.0) == q.ino);
    if let Some(e) = existing.as_ref().filter(|_| !same_object) {
        if exclusive {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                format!("{path} exists (If-None-Match: *)"),
            ));
        }
        if e.is_dir() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{path} is a directory"),
            ));
        }
    }
    if existing.is_none() && expected.is_some_and(|v| v != 0) {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "{path} does not exist, so it is not at version {}",
                expected.unwrap_or(0)
            ),
        ));
    }
    let r = ctx.meta.read(|s| s.fs.replicas_for(parent)) as usize;
    if q.new {
        let ino = q.ino.ok_or_else(|| {
            ApiError::bad("new=true needs ino=ID, an id reserved with the reserveids op")
        })?;
        let body = body.take().expect("the body is read once");
        let (size, chunks) = store_body(ctx, body, r).await?;
        let op = FsOp::CreateAs {
            ino: Ino(ino),
            parent,
            name,
            mode,
            owner: who.id(),
            now_ms: now_millis(),
            exclusive,
            size,
            chunks,
        };
        let reply = apply(ctx, op).await?;
        return Ok(put_answer(&path, &reply.inode));
    }
    if let Some(ino) = q.ino
        && existing.as_ref().is_none_or(|e| e.ino.0 != ino)
    {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "{path} no longer names object {ino}: it was renamed, removed or replaced \
                 by another client; nothing was changed"
            ),
        ));
    }
    let body = body.take().expect("the body is read once");
    let (size, chunks) = store_body(ctx, body, r).await?;
    let ino = match existing {
        Some(e) => e.ino,
        None => {
            let created = apply(
                ctx,
                FsOp::Create {
                    parent,
                    name: name.clone(),
                    mode,
                    owner: who.id(),
                    now_ms: now_millis(),
                    exclusive,
                },
            )
            .await?;
            if size == 0 {
                // A new empty file (what `open(O_CREAT)` makes): one
                // metadata write, no content to commit.
                return Ok(put_answer(&path, &created.inode));
            }
            created.inode.ino
        }
    };
    let reply = apply(
        ctx,
        FsOp::Commit {
            ino,
            if_version: expected,
            size,
            chunks,
            now_ms: now_millis(),
        },
    )
    .await?;
    Ok(put_answer(&path, &reply.inode))
}

fn put_answer(path: &str, inode: &Inode) -> Response {
    let tag = etag(inode);
    (
        StatusCode::OK,
        [(header::ETAG, HeaderValue::from_str(&tag).expect("ascii"))],
        Json(entry(path, inode)),
    )
        .into_response()
}

/// Cuts the body into chunks and stores each on `r` nodes as it arrives;
/// up to [`WRITE_BEHIND`] chunks replicate (as tasks) while the next one is
/// received, so memory stays bounded by a few chunks.
async fn store_body(
    ctx: &Arc<NodeCtx>,
    body: Body,
    r: usize,
) -> Result<(u64, Vec<ChunkRef>), ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE);
    let mut chunks = vec![];
    let mut size = 0u64;
    // Chunks being replicated while the next ones arrive, in order.
    let mut pending = futures::stream::FuturesOrdered::new();
    loop {
        match stream.next().await {
            Some(Ok(bytes)) => {
                let mut rest: &[u8] = &bytes;
                while !rest.is_empty() {
                    let take = (CHUNK_SIZE - buf.len()).min(rest.len());
                    buf.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if buf.len() == CHUNK_SIZE {
                        size += CHUNK_SIZE as u64;
                        pending.push_back(tokio::spawn(flush(
                            ctx.clone(),
                            std::mem::take(&mut buf),
                            r,
                        )));
                        buf.reserve(CHUNK_SIZE);
                        if pending.len() >= WRITE_BEHIND
                            && let Some(done) = pending.next().await
                        {
                            chunks.push(done.map_err(crate::api::internal)??);
                        }
                    }
                }
            }
            Some(Err(e)) => {
                return Err(ApiError::bad(format!(
                    "the upload broke off ({e}); nothing was changed"
                )));
            }
            None => break,
        }
    }
    if !buf.is_empty() {
        size += buf.len() as u64;
        pending.push_back(tokio::spawn(flush(ctx.clone(), buf, r)));
    }
    while let Some(done) = pending.next().await {
        chunks.push(done.map_err(crate::api::internal)??);
    }
    Ok((size, chunks))
}

async fn flush(ctx: Arc<NodeCtx>, buf: Vec<u8>, r: usize) -> Result<ChunkRef, ApiError> {
    let data = Bytes::from(buf);
    let id = ChunkId::of(&data);
    let len = data.len() as u32;
    replicate(&ctx, &id, data, r).await?;
    Ok(ChunkRef { id: id.0, len })
}

/// `DELETE /v1/fs/PATH`: a file or symlink, or an empty directory.
async fn fs_delete(State(ctx): Ctx, Path(path): Path<String>) -> Result<StatusCode, ApiError> {
    let path = full_path(&path)?;
    let (parent_path, name) = split(&path)?;
    ctx.meta.linearizable().await?;
    let (parent, target) = ctx.meta.read(|s| {
        let parent = s.fs.resolve(&parent_path).map(|p| p.ino);
        let target = s.fs.resolve(&path).map(|i| i.is_dir());
        (parent, target)
    });
    let parent = parent.map_err(fs_error)?;
    let is_dir = target.map_err(fs_error)?;
    let now_ms = now_millis();
    let op = if is_dir {
        FsOp::Rmdir {
            parent,
            name,
            now_ms,
        }
    } else {
        FsOp::Unlink {
            parent,
            name,
            now_ms,
        }
    };
    apply(&ctx, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/fs` (the root directory) with a JSON [`FsOpRequest`].
async fn fs_post_root(
    ctx: Ctx,
    who: Extension<Principal>,
    bearer: Extension<Bearer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    fs_post(ctx, who, bearer, Path(String::new()), body).await
}

/// `POST /v1/fs/PATH` with a JSON [`FsOpRequest`].
async fn fs_post(
    State(ctx): Ctx,
    Extension(who): Extension<Principal>,
    Extension(Bearer(bearer)): Extension<Bearer>,
    Path(path): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let path = full_path(&path)?;
    let req: FsOpRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("bad file system operation: {e}")))?;
    if let FsOpRequest::ReserveIds { count } = req {
        return Ok(Json(reserve_ids(&ctx, &who, &path, count).await?).into_response());
    }
    ctx.meta.linearizable().await?;
    let now_ms = now_millis();
    let inode = match req {
        FsOpRequest::Mkdir { parents, mode } => {
            mkdir(&ctx, &path, parents, mode.unwrap_or(0o755), &who.id()).await?
        }
        FsOpRequest::Symlink { target } => {
            let (parent_path, name) = split(&path)?;
            let parent = resolve_ino(&ctx, &parent_path)?;
            let op = FsOp::Symlink {
                parent,
                name,
                target,
                owner: who.id(),
                now_ms,
            };
            apply(&ctx, op).await?.inode
        }
        FsOpRequest::Replicas { replicas } => {
            if replicas == Some(0) {
                return Err(ApiError::bad("replicas must be at least 1"));
            }
            let ino = resolve_ino(&ctx, &path)?;
            apply(
                &ctx,
                FsOp::SetReplicas {
                    ino,
                    replicas,
                    now_ms,
                },
            )
            .await?
            .inode
        }
        FsOpRequest::Chmod { mode } => {
            let ino = resolve_ino(&ctx, &path)?;
            let op = FsOp::SetAttr {
                ino,
                mode: Some(mode),
                owner: None,
                atime_ms: None,
                mtime_ms: None,
                now_ms,
            };
            apply(&ctx, op).await?.inode
        }
        FsOpRequest::Times { atime_ms, mtime_ms } => {
            let ino = resolve_ino(&ctx, &path)?;
            let op = FsOp::SetAttr {
                ino,
                mode: None,
                owner: None,
                atime_ms,
                mtime_ms,
                now_ms,
            };
            apply(&ctx, op).await?.inode
        }
        FsOpRequest::Mknod { kind, mode, rdev } => {
            let (parent_path, name) = split(&path)?;
            let op = FsOp::Mknod {
                parent: resolve_ino(&ctx, &parent_path)?,
                name,
                kind: fsmeta_special(kind),
                rdev,
                mode: mode.unwrap_or(0o644),
                owner: who.id(),
                now_ms,
            };
            apply(&ctx, op).await?.inode
        }
        FsOpRequest::Rename { to } => {
            let to = full_path(to.trim_start_matches('/'))?;
            // Moving writes the destination too: the monitor decides it.
            check(
                &ctx,
                &who,
                bearer.as_deref(),
                Action::Write,
                &Object::Fs(to.clone()),
            )?;
            let (from_parent, from_name) = split(&path)?;
            let (to_parent, to_name) = split(&to)?;
            let op = FsOp::Rename {
                from_parent: resolve_ino(&ctx, &from_parent)?,
                from_name,
                to_parent: resolve_ino(&ctx, &to_parent)?,
                to_name,
                now_ms,
            };
            let inode = apply(&ctx, op).await?.inode;
            return Ok(Json(entry(&to, &inode)).into_response());
        }
        FsOpRequest::ReserveIds { .. } => unreachable!("answered above"),
    };
    Ok(Json(entry(&path, &inode)).into_response())
}

/// Sets aside object ids for `who` to create files under (the monitor has
/// checked write access to `dir`, which must be a directory).
async fn reserve_ids(
    ctx: &NodeCtx,
    who: &Principal,
    dir: &str,
    count: u64,
) -> Result<FsIds, ApiError> {
    let is_dir = crate::fs_cache::fresh_read(ctx, |s| {
        let found = s.fs.resolve_follow(dir).map(|i| i.is_dir());
        (found, None)
    })
    .await?
    .map_err(fs_error)?;
    if !is_dir {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{dir} is not a directory: reserve ids on the directory you create in"),
        ));
    }
    let cmd = Command::ReserveFileIds {
        owner: who.id(),
        count,
    };
    match ctx.meta.write(cmd).await?.outcome {
        Outcome::FileIds { ids } => {
            let ids = ids.map_err(fs_error)?;
            Ok(FsIds {
                first: ids.start,
                count: ids.end - ids.start,
            })
        }
        other => Err(crate::api::internal(format!(
            "unexpected outcome {other:?}"
        ))),
    }
}

fn resolve_ino(ctx: &NodeCtx, path: &str) -> Result<Ino, ApiError> {
    ctx.meta
        .read(|s| s.fs.resolve(path).map(|i| i.ino))
        .map_err(fs_error)
}

async fn mkdir(
    ctx: &NodeCtx,
    path: &str,
    parents: bool,
    mode: u32,
    owner: &str,
) -> Result<Inode, ApiError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut dir = Ino::ROOT;
    let mut last = None;
    for (i, name) in parts.iter().enumerate() {
        let found = ctx.meta.read(|s| s.fs.lookup(dir, name).cloned());
        let is_last = i + 1 == parts.len();
        match found {
            Some(inode) if inode.is_dir() && (parents || !is_last) => {
                dir = inode.ino;
                last = Some(inode);
            }
            Some(_) if is_last || !parents => {
                let so_far = format!("/{}", parts[..=i].join("/"));
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{so_far} exists"),
                ));
            }
            Some(_) => {
                let so_far = format!("/{}", parts[..=i].join("/"));
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{so_far} is not a directory"),
                ));
            }
            None if !is_last && !parents => {
                let so_far = format!("/{}", parts[..=i].join("/"));
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("{so_far} does not exist (use --parents / -p)"),
                ));
            }
            None => {
                let op = FsOp::Mkdir {
                    parent: dir,
                    name: name.to_string(),
                    mode,
                    owner: owner.to_string(),
                    now_ms: now_millis(),
                };
                let inode = apply(ctx, op).await?.inode;
                dir = inode.ino;
                last = Some(inode);
            }
        }
    }
    last.ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "/ exists"))
}

/// `PUT /internal/chunks/ID`: store a chunk sent by another node.
async fn chunk_put(
    State(ctx): Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let id: ChunkId = id
        .parse()
        .map_err(|e| ApiError::bad(format!("bad chunk id: {e}")))?;
    let store = ctx.chunks.clone();
    tokio::task::spawn_blocking(move || store.put(&id, &body))
        .await
        .map_err(crate::api::internal)?
        .map_err(store_refused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bad data is the sender's fault (400); a disk that cannot take the chunk
/// (full, failing) is this node's (507), and the sender tries another.
fn store_refused(e: wos_blocks::Error) -> ApiError {
    match e {
        wos_blocks::Error::Io { .. } => {
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
        }
        e => ApiError::bad(e.to_string()),
    }
}

/// `GET /internal/chunks/ID`.
async fn chunk_get(State(ctx): Ctx, Path(id): Path<String>) -> Result<Vec<u8>, ApiError> {
    let id: ChunkId = id
        .parse()
        .map_err(|e| ApiError::bad(format!("bad chunk id: {e}")))?;
    let store = ctx.chunks.clone();
    tokio::task::spawn_blocking(move || store.get(&id))
        .await
        .map_err(crate::api::internal)?
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
}

/// `GET /internal/chunks`: the ids this node holds.
async fn chunk_list(State(ctx): Ctx) -> Result<Json<Vec<String>>, ApiError> {
    let store = ctx.chunks.clone();
    let ids = tokio::task::spawn_blocking(move || {
        store
            .list()
            .filter_map(|r| r.ok())
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
    })
    .await
    .map_err(crate::api::internal)?;
    Ok(Json(ids))
}

/// Which live nodes hold which chunks.
struct Census {
    holders: BTreeMap<ChunkId, Vec<String>>,
    asked: Vec<String>,
    unreachable: Vec<String>,
}

async fn census(ctx: &NodeCtx) -> Census {
    let mut census = Census {
        holders: BTreeMap::new(),
        asked: vec![],
        unreachable: vec![],
    };
    for c in candidates(ctx) {
        let ids: Option<Vec<String>> = if c.name == ctx.cfg.name {
            Some(
                ctx.chunks
                    .list()
                    .filter_map(|r| r.ok())
                    .map(|i| i.to_string())
                    .collect(),
            )
        } else {
            match address_of(ctx, &c.name) {
                Some(a) => match ctx
                    .http
                    .get(format!("https://{a}/internal/chunks"))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.json().await.ok(),
                    _ => None,
                },
                None => None,
            }
        };
        match ids {
            Some(ids) => {
                for id in ids.iter().filter_map(|i| i.parse::<ChunkId>().ok()) {
                    census.holders.entry(id).or_default().push(c.name.clone());
                }
                census.asked.push(c.name);
            }
            None => census.unreachable.push(c.name),
        }
    }
    census
}

/// Every referenced chunk with the R its file's directory asks for.
fn wanted(ctx: &NodeCtx) -> (u64, u64, BTreeMap<ChunkId, usize>) {
    ctx.meta.read(|s| {
        let mut want: BTreeMap<ChunkId, usize> = BTreeMap::new();
        let (mut files, mut bytes) = (0, 0);
        for inode in s.fs.inodes() {
            if let Kind::File { chunks, size, .. } = &inode.kind {
                files += 1;
                bytes += size;
                let r =
                    s.fs.location(inode.ino)
                        .map(|(parent, _)| s.fs.replicas_for(parent))
                        .unwrap_or(wos_fsmeta::DEFAULT_REPLICAS) as usize;
                for c in chunks {
                    let e = want.entry(ChunkId(c.id)).or_default();
                    *e = (*e).max(r);
                }
            }
        }
        (files, bytes, want)
    })
}

/// `GET /v1/fsck`: chunks below their R, and missing ones.
async fn fsck(State(ctx): Ctx) -> Result<Json<FsckReport>, ApiError> {
    ctx.meta.linearizable().await?;
    Ok(Json(fsck_report(&ctx).await))
}

async fn fsck_report(ctx: &NodeCtx) -> FsckReport {
    let census = census(ctx).await;
    let (files, bytes, want) = wanted(ctx);
    let live = census.asked.len() + census.unreachable.len();
    let mut report = FsckReport {
        files,
        chunks: want.len() as u64,
        bytes,
        nodes_asked: census.asked.clone(),
        nodes_unreachable: census.unreachable.clone(),
        ..Default::default()
    };
    for (id, r) in &want {
        let have = census.holders.get(id).map(|h| h.len()).unwrap_or(0);
        let r = (*r).min(live.max(1));
        if have == 0 {
            report.missing.push(id.to_string());
        } else if have < r {
            report.under_replicated.push(format!("{id} {have}/{r}"));
        }
    }
    report.unreferenced = census
        .holders
        .keys()
        .filter(|id| !want.contains_key(id))
        .count() as u64;
    report
}

/// Repair (on the metadata leader, from the upkeep loop): copies every
/// chunk that has fewer live copies than its R to the best-placed live
/// nodes that lack it. Returns how many copies were made.
pub async fn repair(ctx: &NodeCtx) -> usize {
    let census = census(ctx).await;
    if !census.unreachable.is_empty() {
        // A node that does not answer may hold copies: wait until
        // membership has decided on it.
        return 0;
    }
    let (_, _, want) = wanted(ctx);
    let nodes = candidates(ctx);
    let mut copies = 0;
    for (id, r) in want {
        let holders = census.holders.get(&id).cloned().unwrap_or_default();
        let r = r.min(nodes.len());
        if holders.is_empty() || holders.len() >= r {
            continue;
        }
        let Ok(data) = fetch_chunk(ctx, &id).await else {
            continue;
        };
        let data = Bytes::from(data);
        let targets: Vec<String> = wos_blocks::place(&id, &nodes, nodes.len())
            .into_iter()
            .filter(|n| !holders.contains(n))
            .take(r - holders.len())
            .collect();
        for node in targets {
            match store_on(ctx, &node, &id, &data).await {
                Ok(()) => copies += 1,
                Err(e) => tracing::warn!(chunk = %id, %node, "repair copy failed: {e}"),
            }
        }
    }
    if copies > 0 {
        tracing::info!(copies, "repair brought chunks back to their replica count");
    }
    copies
}

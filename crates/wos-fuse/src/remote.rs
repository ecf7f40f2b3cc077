//! The WebFS HTTP gateway, seen from a FUSE thread: every call blocks the
//! calling thread on the async client (`Handle::block_on`), which is why the
//! FUSE loop must never run on a tokio worker.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::{Method, StatusCode, header};
use tokio::io::AsyncReadExt;
use tokio::runtime::Handle;
use wos_api::{ApiFailure, Client, ErrorKind, FsEntry, FsIds, FsListing, FsOpRequest, NodeState};

/// Transfers of whole files may take as long as they take; the client's own
/// (short) timeout stays for metadata calls and ranges.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A range is at most one 4 MiB chunk: allow for a slow wide-area link.
const RANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// How much an upload reads from the spool file at a time.
const UPLOAD_PIECE: usize = 1 << 20;

/// One version of a file, as an `ETag` names it: `"INO.VERSION"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tag {
    pub ino: u64,
    pub version: u64,
}

impl Tag {
    pub fn of(e: &FsEntry) -> Tag {
        Tag {
            ino: e.ino,
            version: e.version,
        }
    }

    fn parse(value: &str) -> Option<Tag> {
        let (ino, version) = value.trim().trim_matches('"').split_once('.')?;
        Some(Tag {
            ino: ino.parse().ok()?,
            version: version.parse().ok()?,
        })
    }

    fn of_response(resp: &reqwest::Response) -> Option<Tag> {
        resp.headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(Tag::parse)
    }
}

/// A transfer that failed on the cell's side or on the local spool file.
#[derive(Debug)]
pub(crate) enum Fail {
    Api(ApiFailure),
    Local(std::io::Error),
}

impl From<ApiFailure> for Fail {
    fn from(f: ApiFailure) -> Fail {
        Fail::Api(f)
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Api(a) => write!(f, "{a}"),
            Fail::Local(e) => write!(
                f,
                "the local spool file failed: {e} (check the cache dir's disk)"
            ),
        }
    }
}

/// Which file an upload makes a new version of.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// Object `ino`, which the path must still name (else the cell refuses
    /// and nothing changes: another client renamed, removed or replaced it).
    Existing(u64),
    /// A file this mount created under the reserved id `ino` and the cell
    /// has not seen yet: created with this content in the same request.
    New {
        ino: u64,
        mode: u32,
        exclusive: bool,
    },
}

/// Bytes of one version of a file.
pub(crate) struct Range {
    pub tag: Option<Tag>,
    pub data: Bytes,
}

/// A range being read as one response.
pub(crate) struct Streaming {
    pub tag: Option<Tag>,
    resp: reqwest::Response,
}

#[derive(Clone)]
pub(crate) struct Remote {
    client: Client,
    rt: Handle,
}

type Result<T> = std::result::Result<T, ApiFailure>;

impl Remote {
    pub fn new(client: Client, rt: Handle) -> Remote {
        Remote { client, rt }
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .map_err(|e| self.client.transport_failure(e))?;
        if resp.status().is_success() || resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(resp);
        }
        Err(Client::failure(resp).await)
    }

    /// The entry at `path` (a symlink in the last component is followed).
    pub fn stat(&self, path: &str) -> Result<FsEntry> {
        self.block_on(self.client.get(&url(path, "?stat=true")))
    }

    /// A directory's entries (symlinks as themselves).
    pub fn list(&self, path: &str) -> Result<FsListing> {
        self.block_on(async {
            // Should the path name a file by now, the range keeps the answer
            // to one byte instead of the whole file.
            let req = self
                .client
                .request(Method::GET, &url(path, ""))
                .header(header::RANGE, "bytes=0-0");
            let resp = self.send(req).await?;
            let is_json = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if resp.status() != StatusCode::OK || !is_json {
                return Err(failure(409, format!("{path}: not a directory")));
            }
            resp.json::<FsListing>()
                .await
                .map_err(|e| failure(502, format!("listing {path}: unexpected answer: {e}")))
        })
    }

    /// Bytes `start..end` of the file at `path`.
    pub fn read_range(&self, path: &str, start: u64, end: u64) -> Result<Range> {
        self.block_on(async {
            let resp = self.get_range(path, start, end, RANGE_TIMEOUT).await?;
            let tag = Tag::of_response(&resp);
            let data = resp
                .bytes()
                .await
                .map_err(|e| failure(502, format!("reading {path} broke off: {e}")))?;
            Ok(Range { tag, data })
        })
    }

    /// Starts reading bytes `start..end` of the file at `path` as one
    /// stream: the gateway fetches a few chunks ahead while the caller
    /// takes pieces with [`Remote::next_piece`].
    pub fn open_stream(&self, path: &str, start: u64, end: u64) -> Result<Streaming> {
        self.block_on(async {
            let resp = self.get_range(path, start, end, TRANSFER_TIMEOUT).await?;
            Ok(Streaming {
                tag: Tag::of_response(&resp),
                resp,
            })
        })
    }

    /// `GET` of bytes `start..end` (416 past the end of the file).
    async fn get_range(
        &self,
        path: &str,
        start: u64,
        end: u64,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        let req = self
            .client
            .request(Method::GET, &url(path, ""))
            .timeout(timeout)
            .header(header::RANGE, format!("bytes={start}-{}", end - 1));
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(failure(416, format!("{path} is shorter than {end} bytes")));
        }
        Ok(resp)
    }

    /// The next piece of a stream; `None` at its end.
    pub fn next_piece(&self, s: &mut Streaming) -> Result<Option<Bytes>> {
        self.block_on(s.resp.chunk())
            .map_err(|e| failure(502, format!("reading broke off: {e}")))
    }

    /// Streams the file at `path` (its first `limit` bytes, if given) into
    /// `to`, without holding it in memory. Returns the version read (none
    /// for an empty file).
    pub fn download(
        &self,
        path: &str,
        limit: Option<u64>,
        to: &mut File,
    ) -> std::result::Result<Option<Tag>, Fail> {
        if limit == Some(0) {
            return Ok(None);
        }
        self.block_on(async {
            let mut req = self
                .client
                .request(Method::GET, &url(path, ""))
                .timeout(TRANSFER_TIMEOUT);
            if let Some(n) = limit {
                req = req.header(header::RANGE, format!("bytes=0-{}", n - 1));
            }
            let mut resp = self.send(req).await?;
            if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
                // An empty file: nothing to copy.
                return Ok(None);
            }
            let tag = Tag::of_response(&resp);
            while let Some(piece) = resp
                .chunk()
                .await
                .map_err(|e| failure(502, format!("downloading {path} broke off: {e}")))?
            {
                // A blocking write, on purpose: this future runs on the FUSE
                // thread that asked (block_on), not on a runtime worker.
                to.write_all(&piece).map_err(Fail::Local)?;
            }
            Ok(tag)
        })
    }

    /// Makes the content of `spool` (none: empty) the new version of the
    /// file `target` names at `path`, streamed from the file.
    pub fn upload(
        &self,
        path: &str,
        spool: Option<&Path>,
        target: Target,
    ) -> std::result::Result<FsEntry, Fail> {
        self.block_on(async {
            let body = match spool {
                Some(spool) => {
                    let file = tokio::fs::File::open(spool).await.map_err(Fail::Local)?;
                    let len = file.metadata().await.map_err(Fail::Local)?.len();
                    reqwest::Body::wrap_stream(file_stream(file, len))
                }
                None => reqwest::Body::from(Vec::new()),
            };
            self.put(path, target, body).await
        })
    }

    /// Starts uploading the spool file at `spool` while it is still being
    /// written: the request sends what [`Growing::announce`] says is
    /// there, waits for more, and ends at [`Remote::finish`].
    pub fn start_upload(&self, path: &str, spool: &Path, target: Target, len: u64) -> Growing {
        let (tx, rx) = tokio::sync::watch::channel(Progress::Written(len));
        let (this, path, spool) = (self.clone(), path.to_string(), spool.to_path_buf());
        let task = self.rt.spawn(async move {
            let file = tokio::fs::File::open(&spool).await.map_err(Fail::Local)?;
            let body = reqwest::Body::wrap_stream(growing_stream(file, rx));
            this.put(&path, target, body).await
        });
        Growing {
            tx,
            task: Some(task),
            announced: len,
        }
    }

    /// Ends a growing upload at `len` bytes and waits for the cell's answer.
    pub fn finish(&self, mut up: Growing, len: u64) -> std::result::Result<FsEntry, Fail> {
        let _ = up.tx.send(Progress::Done(len));
        let task = up.task.take().expect("finished once");
        match self.block_on(task) {
            Ok(r) => r,
            Err(e) => Err(Fail::Api(failure(
                502,
                format!("the upload task failed: {e}"),
            ))),
        }
    }

    async fn put(
        &self,
        path: &str,
        target: Target,
        body: reqwest::Body,
    ) -> std::result::Result<FsEntry, Fail> {
        let query = match target {
            Target::Existing(ino) => format!("?ino={ino}"),
            Target::New { ino, mode, .. } => format!("?ino={ino}&new=true&mode={mode:o}"),
        };
        let mut req = self
            .client
            .request(Method::PUT, &url(path, &query))
            .timeout(TRANSFER_TIMEOUT)
            .body(body);
        if let Target::New {
            exclusive: true, ..
        } = target
        {
            req = req.header(header::IF_NONE_MATCH, "*");
        }
        let resp = self.send(req).await?;
        let entry = resp
            .json::<FsEntry>()
            .await
            .map_err(|e| failure(502, format!("writing {path}: unexpected answer: {e}")))?;
        Ok(entry)
    }

    /// Creates an empty file with `mode`; fails (412 "exists") if the name
    /// is taken.
    pub fn create(&self, path: &str, mode: u32) -> Result<FsEntry> {
        self.block_on(async {
            let req = self
                .client
                .request(Method::PUT, &url(path, &format!("?mode={mode:o}")))
                .header(header::IF_NONE_MATCH, "*")
                .body(Vec::<u8>::new());
            let resp = self.send(req).await?;
            resp.json::<FsEntry>()
                .await
                .map_err(|e| failure(502, format!("creating {path}: unexpected answer: {e}")))
        })
    }

    /// Sets aside `count` object ids for files this identity creates (in
    /// `dir` or anywhere else it may).
    pub fn reserve_ids(&self, dir: &str, count: u64) -> Result<FsIds> {
        self.block_on(
            self.client
                .post(&url(dir, ""), &FsOpRequest::ReserveIds { count }),
        )
    }

    /// A namespace change: mkdir, rename, symlink, chmod.
    pub fn op(&self, path: &str, req: &FsOpRequest) -> Result<FsEntry> {
        self.block_on(self.client.post(&url(path, ""), req))
    }

    /// Removes a file, a symlink or an empty directory.
    pub fn delete(&self, path: &str) -> Result<()> {
        self.block_on(async {
            let req = self.client.request(Method::DELETE, &url(path, ""));
            self.send(req).await.map(|_| ())
        })
    }

    /// What the cell can still store, counting each byte R times (R = 3, or
    /// fewer in a smaller cell).
    pub fn free_bytes(&self) -> Result<u64> {
        let nodes = self.block_on(self.client.nodes())?;
        let alive: Vec<u64> = nodes
            .iter()
            .filter(|n| n.state == NodeState::Alive)
            .filter_map(|n| n.sensors.as_ref().map(|s| s.disk_free_bytes))
            .collect();
        let copies = alive.len().clamp(1, 3) as u64;
        Ok(alive.iter().sum::<u64>() / copies)
    }
}

/// The API path of a file system path, each component percent-encoded.
pub(crate) fn url(path: &str, query: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let mut u = String::from("/v1/fs");
    for c in path.split('/').filter(|c| !c.is_empty()) {
        u.push('/');
        u.extend(percent_encoding::utf8_percent_encode(c, SET));
    }
    u.push_str(query);
    u
}

/// How far a spool being uploaded while written has got.
#[derive(Debug, Clone, Copy)]
enum Progress {
    /// Its first this many bytes are final.
    Written(u64),
    /// It is complete at this length.
    Done(u64),
    /// Written over below what was announced: the request must fail, so
    /// that the cell changes nothing.
    Abandoned,
}

/// An upload under way while its spool is still being written (see
/// [`Remote::start_upload`]). Dropped without [`Remote::finish`], it fails
/// and the cell changes nothing.
#[derive(Debug)]
pub(crate) struct Growing {
    tx: tokio::sync::watch::Sender<Progress>,
    task: Option<tokio::task::JoinHandle<std::result::Result<FsEntry, Fail>>>,
    announced: u64,
}

impl Growing {
    /// What the request may have sent already: bytes below this must not
    /// change any more.
    pub fn announced(&self) -> u64 {
        self.announced
    }

    /// The spool's first `len` bytes are final.
    pub fn announce(&mut self, len: u64) {
        self.announced = self.announced.max(len);
        let _ = self.tx.send(Progress::Written(self.announced));
    }
}

impl Drop for Growing {
    fn drop(&mut self) {
        // Finished uploads sent `Done` already; this only reaches a stream
        // still waiting for more.
        let _ = self.tx.send_if_modified(|p| match p {
            Progress::Done(_) => false,
            _ => {
                *p = Progress::Abandoned;
                true
            }
        });
    }
}

/// A growing spool file as a request body: reads what is announced, waits
/// for more, ends at `Done` and fails at `Abandoned`.
fn growing_stream(
    file: tokio::fs::File,
    progress: tokio::sync::watch::Receiver<Progress>,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures::stream::unfold(Some((file, 0u64, progress)), |state| async move {
        let (mut file, sent, mut progress) = state?;
        loop {
            let (ready, complete) = match *progress.borrow_and_update() {
                Progress::Written(n) => (n, false),
                Progress::Done(n) if n < sent => {
                    // Shortened below what went out: this upload is void.
                    let e = std::io::Error::other("the file was shortened while uploading");
                    return Some((Err(e), None));
                }
                Progress::Done(n) => (n, true),
                Progress::Abandoned => {
                    let e = std::io::Error::other("the file was written over while uploading");
                    return Some((Err(e), None));
                }
            };
            if sent < ready {
                let want = (ready - sent).min(UPLOAD_PIECE as u64) as usize;
                let mut buf = vec![0u8; want];
                return match file.read_exact(&mut buf).await {
                    Ok(_) => Some((Ok(buf), Some((file, sent + want as u64, progress)))),
                    Err(e) => Some((Err(e), None)),
                };
            }
            if complete {
                return None;
            }
            if progress.changed().await.is_err() {
                let e = std::io::Error::other("the writer went away");
                return Some((Err(e), None));
            }
        }
    })
    .boxed()
}

/// The spool file (`len` bytes long) as a request body, read a piece at a
/// time. Buffers are sized to what is left: a small file does not cost a
/// zeroed piece-sized buffer.
fn file_stream(
    file: tokio::fs::File,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures::stream::unfold(Some((file, len)), |state| async move {
        let (mut file, left) = state?;
        let want = left.clamp(1, UPLOAD_PIECE as u64) as usize;
        let mut buf = vec![0u8; want];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                let left = left.saturating_sub(n as u64);
                Some((Ok(buf), Some((file, left))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

fn failure(status: u16, message: String) -> ApiFailure {
    let kind = match status {
        409 => ErrorKind::Conflict,
        416 => ErrorKind::BadRequest,
        _ => ErrorKind::Unavailable,
    };
    ApiFailure {
        kind,
        status: Some(status),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_each_component() {
        assert_eq!(url("/", "?stat=true"), "/v1/fs?stat=true");
        assert_eq!(url("/a/b c/d%e", ""), "/v1/fs/a/b%20c/d%25e");
        assert_eq!(url("/ü/x?y#z", ""), "/v1/fs/%C3%BC/x%3Fy%23z");
    }

    #[test]
    fn etags_name_object_and_version() {
        assert_eq!(
            Tag::parse("\"17.3\""),
            Some(Tag {
                ino: 17,
                version: 3
            })
        );
        assert_eq!(Tag::parse("W/\"x\""), None);
    }
}

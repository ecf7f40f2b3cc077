//! The job endpoints: `POST /v1/jobs` (start, and stream stdin/stdout/stderr
//! and signals over the one request), `GET /v1/jobs`, `GET /v1/jobs/ID`
//! (`?wait=SECONDS`), `GET /v1/jobs/ID/logs` (`?follow=true`),
//! `POST /v1/jobs/ID/signal`, and their node-to-node halves under
//! `/internal/jobs`.
//!
//! Any node answers: a job for another node is carried there over the
//! node-to-node connection (one hop, already open), after this node has
//! decided `(Run, node:NAME)` through the reference monitor. Without a node
//! named, this node places the job on the least loaded live node that the
//! principal may run on, and moves to the next when a node's own policy
//! refuses it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use wos_api::jobs::{FrameDecoder, FrameKind, SILENCE_LIMIT_MS};
use wos_api::{JobInfo, NodeState, RunRequest, SignalRequest, encode_frame};
use wos_auth::{Action, Decision, Object, Principal};

use crate::api::{ApiError, Bearer, check, decide, node_infos};
use crate::ctx::NodeCtx;
use crate::jobs::{Running, Started, StdinMsg, signal_number};

type Ctx = State<Arc<NodeCtx>>;

/// Content type of a framed job stream.
const FRAMES: &str = "application/vnd.wos.frames";
/// How long a client has to send the first frame (the job's description).
const SPEC_WAIT: Duration = Duration::from_secs(10);
/// Largest JSON job description (it may carry a WebAssembly module).
const JSON_RUN_LIMIT: usize = 64 << 20;
/// Far enough away to mean "no deadline" for a streaming request.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn routes() -> Router<Arc<NodeCtx>> {
    Router::new()
        // Job streams are unbounded; each frame is bounded instead.
        .route(
            "/v1/jobs",
            post(run_job)
                .layer(DefaultBodyLimit::disable())
                .get(list_jobs),
        )
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/logs", get(job_logs))
        .route("/v1/jobs/{id}/signal", post(signal_job))
        .route(
            "/internal/jobs",
            post(run_here).layer(DefaultBodyLimit::disable()),
        )
        .route("/internal/jobs/{id}/logs", post(logs_here))
        .route("/internal/jobs/{id}/signal", post(signal_here))
        .layer(DefaultBodyLimit::max(crate::api::API_BODY_LIMIT))
}

/// What one node asks another to run.
#[derive(Debug, Serialize, Deserialize)]
struct InternalRun {
    request: RunRequest,
    /// The principal id the job runs for (already authorized).
    owner: String,
}

/// The frames of a streaming request body.
struct BodyFrames {
    stream: axum::body::BodyDataStream,
    decoder: FrameDecoder,
}

impl BodyFrames {
    fn new(body: Body) -> BodyFrames {
        BodyFrames {
            stream: body.into_data_stream(),
            decoder: FrameDecoder::default(),
        }
    }

    /// The next frame; `Ok(None)` at a clean end; `Err` when the client
    /// broke the stream.
    async fn next(&mut self) -> Result<Option<(FrameKind, Vec<u8>)>, String> {
        loop {
            if let Some(f) = self.decoder.next_frame().map_err(|e| e.to_string())? {
                return Ok(Some(f));
            }
            match self.stream.next().await {
                Some(Ok(bytes)) => self.decoder.push(&bytes),
                Some(Err(e)) => return Err(e.to_string()),
                None if self.decoder.pending() > 0 => {
                    return Err("the request ended inside a frame".into());
                }
                None => return Ok(None),
            }
        }
    }

    /// The first frame, which must describe the job.
    async fn spec<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let first = tokio::time::timeout(SPEC_WAIT, self.next())
            .await
            .map_err(|_| ApiError::bad("no job description arrived within 10 s"))?
            .map_err(ApiError::bad)?;
        match first {
            Some((FrameKind::Spec, payload)) => serde_json::from_slice(&payload)
                .map_err(|e| ApiError::bad(format!("bad job description: {e}"))),
            Some((kind, _)) => Err(ApiError::bad(format!(
                "the first frame must describe the job, not {kind:?}"
            ))),
            None => Err(ApiError::bad(
                "empty request: send the job description first",
            )),
        }
    }
}

fn frames_response(rx: mpsc::Receiver<Vec<u8>>) -> Response {
    let stream = tokio_stream(rx).map(|b| Ok::<_, std::io::Error>(Bytes::from(b)));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, FRAMES)
        .body(Body::from_stream(stream))
        .expect("response builds")
}

fn tokio_stream(mut rx: mpsc::Receiver<Vec<u8>>) -> impl futures::Stream<Item = Vec<u8>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `POST /v1/jobs`.
///
/// A body of type `application/json` is a plain [`RunRequest`] for a
/// detached job (so that `curl -d` can start one); any other body is the
/// framed stream.
async fn run_job(
    State(ctx): Ctx,
    Extension(who): Extension<Principal>,
    Extension(Bearer(bearer)): Extension<Bearer>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (req, frames) = if json {
        let bytes = axum::body::to_bytes(body, JSON_RUN_LIMIT)
            .await
            .map_err(|e| ApiError::bad(format!("reading the job description: {e}")))?;
        let mut req: RunRequest = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad(format!("bad job description: {e}")))?;
        req.attach = false;
        (req, BodyFrames::new(Body::empty()))
    } else {
        let mut frames = BodyFrames::new(body);
        (frames.spec().await?, frames)
    };
    let owner = who.id();
    let (candidates, automatic) = match &req.node {
        Some(node) => {
            if !ctx.meta.read(|s| s.nodes.contains_key(node)) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no node named {node} in this cell (see `wos node ls`)"),
                ));
            }
            check(
                &ctx,
                &who,
                bearer.as_deref(),
                Action::Run,
                &Object::Node(node.clone()),
            )?;
            (vec![node.clone()], false)
        }
        None => (placement(&ctx, &who, bearer.as_deref())?, true),
    };
    let mut refusals = vec![];
    for node in candidates {
        let attempt = if node == ctx.cfg.name {
            start_here(&ctx, req.clone(), &owner).await
        } else {
            start_remote(&ctx, &node, req.clone(), &owner).await
        };
        match attempt {
            Ok(started) => return Ok(respond(&ctx, started, frames, &owner, req.attach).await),
            // A node's refusal (its policy, its capacity) sends an
            // automatically placed job to the next node.
            Err(e)
                if automatic
                    && matches!(
                        e.status,
                        StatusCode::FORBIDDEN | StatusCode::SERVICE_UNAVAILABLE
                    ) =>
            {
                refusals.push(e.message)
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("no node admits the job: {}", refusals.join("; ")),
    ))
}

/// The live nodes `who` may run on, least loaded first.
fn placement(
    ctx: &NodeCtx,
    who: &Principal,
    bearer: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let mut nodes: Vec<(f64, String)> = node_infos(ctx)
        .into_iter()
        .filter(|n| n.state == NodeState::Alive)
        .map(|n| {
            let load = n
                .sensors
                .map(|s| (s.jobs as f64 + s.cpu_load as f64) / s.cpus.max(1) as f64)
                .unwrap_or(f64::MAX);
            (load, n.name)
        })
        .collect();
    nodes.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let allowed: Vec<String> = nodes
        .into_iter()
        .map(|(_, name)| name)
        .filter(|name| {
            decide(ctx, who, bearer, Action::Run, &Object::Node(name.clone())).0 == Decision::Allow
        })
        .collect();
    if allowed.is_empty() {
        // Decide once more on the cell as a whole, so the denial is audited
        // and says what is missing.
        check(ctx, who, bearer, Action::Run, &Object::Node("*".into()))?;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no live node to run the job on",
        ));
    }
    // The chosen node's decision goes to the audit log when it is tried.
    Ok(allowed)
}

/// A job started (or found by its idempotency key), here or on another node.
enum Placed {
    Local(Started),
    /// Another node runs it: its answer, and where to send the client's
    /// frames.
    Remote {
        node: String,
        response: reqwest::Response,
        input: mpsc::Sender<std::io::Result<Vec<u8>>>,
    },
}

async fn start_here(ctx: &Arc<NodeCtx>, req: RunRequest, owner: &str) -> Result<Placed, ApiError> {
    Ok(Placed::Local(ctx.jobs.start(ctx, req, owner).await?))
}

async fn start_remote(
    ctx: &NodeCtx,
    node: &str,
    req: RunRequest,
    owner: &str,
) -> Result<Placed, ApiError> {
    let address = ctx
        .meta
        .read(|s| s.nodes.get(node).map(|n| n.address.clone()))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no node named {node}")))?;
    let spec = serde_json::to_vec(&InternalRun {
        request: req,
        owner: owner.to_string(),
    })
    .expect("request encodes");
    let (input, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(16);
    input
        .send(Ok(encode_frame(FrameKind::Spec, &spec)))
        .await
        .expect("receiver alive");
    let body = reqwest::Body::wrap_stream(
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(|r| r.map(Bytes::from)),
    );
    let response = ctx
        .http
        .post(format!("https://{address}/internal/jobs"))
        .timeout(STREAM_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("node {node} cannot be reached: {e}"),
            )
        })?;
    if !response.status().is_success() {
        return Err(remote_error(node, response).await);
    }
    Ok(Placed::Remote {
        node: node.to_string(),
        response,
        input,
    })
}

async fn remote_error(node: &str, response: reqwest::Response) -> ApiError {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let bytes = response.bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<wos_api::ErrorBody>(&bytes)
        .map(|b| b.error)
        .unwrap_or_else(|_| format!("node {node} answered {status}"));
    ApiError::new(status, message)
}

/// Answers the client once the job has started somewhere.
async fn respond(
    ctx: &Arc<NodeCtx>,
    placed: Placed,
    frames: BodyFrames,
    owner: &str,
    attach: bool,
) -> Response {
    match placed {
        Placed::Local(Started::New(job)) if attach => {
            tokio::spawn(feed_input(frames, job.clone(), owner.to_string()));
            let (tx, rx) = mpsc::channel(16);
            let started = serde_json::to_vec(&job.info).expect("job encodes");
            let _ = tx.try_send(encode_frame(FrameKind::Started, &started));
            let mut output = job.frames(true);
            tokio::spawn(async move {
                while let Some(f) = output.recv().await {
                    if tx.send(f).await.is_err() {
                        return;
                    }
                }
            });
            frames_response(rx)
        }
        Placed::Local(Started::New(job)) => Json(job.info.clone()).into_response(),
        Placed::Local(Started::Existing(info)) if attach => {
            // A retried start: show the job that the first attempt started.
            let (tx, rx) = mpsc::channel(16);
            let started = serde_json::to_vec(&info).expect("job encodes");
            let _ = tx.try_send(encode_frame(FrameKind::Started, &started));
            let ctx = ctx.clone();
            tokio::spawn(async move {
                if let Ok(mut logs) = open_logs(&ctx, &info, true).await {
                    while let Some(f) = logs.recv().await {
                        if tx.send(f).await.is_err() {
                            return;
                        }
                    }
                }
            });
            frames_response(rx)
        }
        Placed::Local(Started::Existing(info)) => Json(*info).into_response(),
        Placed::Remote {
            node,
            response,
            input,
        } if attach => {
            tokio::spawn(relay_input(frames, input));
            frames_response(relay_output(node, response))
        }
        Placed::Remote { response, .. } => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::OK);
            let bytes = response.bytes().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
    }
}

/// Carries the client's stdin and signals to a job running here. A client
/// that vanishes (a broken stream, not a clean end) hangs up on the job,
/// as a dropped ssh session does.
async fn feed_input(mut frames: BodyFrames, job: Arc<Running>, owner: String) {
    loop {
        match frames.next().await {
            Ok(Some((FrameKind::Stdin, data))) => job.stdin(StdinMsg::Data(data)).await,
            Ok(Some((FrameKind::StdinEof, _))) => job.stdin(StdinMsg::Eof).await,
            Ok(Some((FrameKind::Signal, name))) => {
                let name = String::from_utf8_lossy(&name).to_string();
                if let Some(sig) = signal_number(&name) {
                    let _ = job.signal(sig, &owner);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                job.stdin(StdinMsg::Eof).await;
                return;
            }
            Err(_) => {
                job.stdin(StdinMsg::Eof).await;
                let _ = job.signal(libc::SIGHUP, &owner);
                return;
            }
        }
    }
}

/// Carries the client's frames to the node that runs the job.
async fn relay_input(mut frames: BodyFrames, input: mpsc::Sender<std::io::Result<Vec<u8>>>) {
    loop {
        match frames.next().await {
            Ok(Some((kind, data))) => {
                if input.send(Ok(encode_frame(kind, &data))).await.is_err() {
                    return;
                }
            }
            // Dropping `input` ends (cleanly) the request to the other node.
            Ok(None) => return,
            // Breaking our request passes the hang-up on.
            Err(e) => {
                let _ = input.send(Err(std::io::Error::other(e))).await;
                return;
            }
        }
    }
}

/// Carries the executing node's frames back to the client, and turns a
/// silent or broken connection into an error frame the client can print.
fn relay_output(node: String, response: reqwest::Response) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        let silence = Duration::from_millis(SILENCE_LIMIT_MS);
        let mut decoder = FrameDecoder::default();
        loop {
            let problem = match tokio::time::timeout(silence, stream.next()).await {
                Ok(Some(Ok(bytes))) => {
                    decoder.push(&bytes);
                    let mut ended = false;
                    while let Ok(Some((kind, payload))) = decoder.next_frame() {
                        ended |= matches!(kind, FrameKind::Exit | FrameKind::Error);
                        if tx.send(encode_frame(kind, &payload)).await.is_err() {
                            return;
                        }
                    }
                    if ended {
                        return;
                    }
                    continue;
                }
                Ok(Some(Err(e))) => format!("the connection broke: {e}"),
                Ok(None) => "the stream ended before the job did".to_string(),
                Err(_) => format!("no word for {} s", silence.as_secs()),
            };
            let msg = format!(
                "lost contact with node {node}: {problem}; the job is presumed lost (see `wos ps --all`)"
            );
            let _ = tx
                .send(encode_frame(FrameKind::Error, msg.as_bytes()))
                .await;
            return;
        }
    });
    rx
}

/// `POST /internal/jobs`: another node asks this one to run a job it has
/// authorized.
async fn run_here(
    State(ctx): Ctx,
    Extension(who): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    if !matches!(who, Principal::Node(_)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only nodes may call /internal",
        ));
    }
    let mut frames = BodyFrames::new(body);
    let run: InternalRun = frames.spec().await?;
    let attach = run.request.attach;
    let started = ctx.jobs.start(&ctx, run.request, &run.owner).await?;
    Ok(respond(&ctx, Placed::Local(started), frames, &run.owner, attach).await)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /v1/jobs`: the jobs the caller may see (running ones unless `all`).
async fn list_jobs(
    State(ctx): Ctx,
    Extension(who): Extension<Principal>,
    Extension(Bearer(bearer)): Extension<Bearer>,
    Query(q): Query<ListQuery>,
) -> Json<Vec<JobInfo>> {
    let jobs: Vec<JobInfo> = ctx.meta.read(|s| {
        s.jobs
            .values()
            .filter(|j| q.all || j.state.is_running())
            .cloned()
            .collect()
    });
    let mut visible: Vec<JobInfo> = jobs
        .into_iter()
        .filter(|j| {
            decide(
                &ctx,
                &who,
                bearer.as_deref(),
                Action::Read,
                &Object::Job(j.id.clone()),
            )
            .0 == Decision::Allow
        })
        .collect();
    visible.sort_by_key(|j| j.started_ms);
    Json(visible)
}

#[derive(Debug, Deserialize)]
struct GetQuery {
    /// Wait up to this many seconds for the job to end.
    #[serde(default)]
    wait: Option<u64>,
}

fn job_record(ctx: &NodeCtx, id: &str) -> Result<JobInfo, ApiError> {
    ctx.meta.read(|s| s.jobs.get(id).cloned()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job {id} (see `wos ps --all`)"),
        )
    })
}

/// `GET /v1/jobs/ID[?wait=SECONDS]`.
async fn get_job(
    State(ctx): Ctx,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> Result<Json<JobInfo>, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0).min(300));
    loop {
        let job = job_record(&ctx, &id)?;
        if !job.state.is_running() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(job));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
}

/// `GET /v1/jobs/ID/logs[?follow=true]`: the job's output as frames.
async fn job_logs(
    State(ctx): Ctx,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let job = job_record(&ctx, &id)?;
    Ok(frames_response(open_logs(&ctx, &job, q.follow).await?))
}

/// The output of `job`, from this node or from the one that ran it.
async fn open_logs(
    ctx: &NodeCtx,
    job: &JobInfo,
    follow: bool,
) -> Result<mpsc::Receiver<Vec<u8>>, ApiError> {
    if job.node == ctx.cfg.name {
        return local_logs(ctx, job, follow);
    }
    let address = ctx
        .meta
        .read(|s| s.nodes.get(&job.node).map(|n| n.address.clone()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::GONE,
                format!(
                    "node {} that ran job {} has left the cell",
                    job.node, job.id
                ),
            )
        })?;
    let response = ctx
        .http
        .post(format!(
            "https://{address}/internal/jobs/{}/logs?follow={follow}",
            job.id
        ))
        .timeout(STREAM_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "node {} that ran job {} cannot be reached: {e}",
                    job.node, job.id
                ),
            )
        })?;
    if !response.status().is_success() {
        return Err(remote_error(&job.node, response).await);
    }
    Ok(relay_output(job.node.clone(), response))
}

fn local_logs(
    ctx: &NodeCtx,
    job: &JobInfo,
    follow: bool,
) -> Result<mpsc::Receiver<Vec<u8>>, ApiError> {
    if let Some(running) = ctx.jobs.get(&job.id) {
        return Ok(running.frames(follow));
    }
    let path = ctx.jobs.output_path(&job.id).ok_or_else(|| {
        ApiError::new(
            StatusCode::GONE,
            format!(
                "the output of job {} is no longer kept on node {}",
                job.id, job.node
            ),
        )
    })?;
    let (tx, rx) = mpsc::channel(16);
    let end = serde_json::to_vec(job).expect("job encodes");
    tokio::spawn(async move {
        let Ok(bytes) = tokio::fs::read(&path).await else {
            return;
        };
        for chunk in bytes.chunks(1 << 20) {
            if tx.send(chunk.to_vec()).await.is_err() {
                return;
            }
        }
        if follow {
            let _ = tx.send(encode_frame(FrameKind::Exit, &end)).await;
        }
    });
    Ok(rx)
}

/// `POST /internal/jobs/ID/logs`.
async fn logs_here(
    State(ctx): Ctx,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let job = job_record(&ctx, &id)?;
    if job.node != ctx.cfg.name {
        return Err(ApiError::bad(format!(
            "job {id} runs on {}, not here",
            job.node
        )));
    }
    Ok(frames_response(local_logs(&ctx, &job, q.follow)?))
}

/// `POST /v1/jobs/ID/signal`.
async fn signal_job(
    State(ctx): Ctx,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(req): Json<SignalRequest>,
) -> Result<Json<JobInfo>, ApiError> {
    let job = job_record(&ctx, &id)?;
    deliver(&ctx, &job, &req.signal, &who.id()).await?;
    Ok(Json(job))
}

#[derive(Debug, Serialize, Deserialize)]
struct InternalSignal {
    signal: String,
    by: String,
}

async fn deliver(ctx: &NodeCtx, job: &JobInfo, signal: &str, by: &str) -> Result<(), ApiError> {
    let sig = signal_number(signal).ok_or_else(|| {
        ApiError::bad(format!(
            "unknown signal {signal:?}: use one of {}",
            crate::jobs::SIGNALS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if !job.state.is_running() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {} has ended ({})", job.id, job.state.describe()),
        ));
    }
    if job.node == ctx.cfg.name {
        let running = ctx.jobs.get(&job.id).ok_or_else(|| {
            ApiError::new(StatusCode::CONFLICT, format!("job {} has ended", job.id))
        })?;
        return running
            .signal(sig, by)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, e));
    }
    let address = ctx
        .meta
        .read(|s| s.nodes.get(&job.node).map(|n| n.address.clone()))
        .ok_or_else(|| ApiError::new(StatusCode::GONE, format!("node {} has left", job.node)))?;
    let response = ctx
        .http
        .post(format!("https://{address}/internal/jobs/{}/signal", job.id))
        .json(&InternalSignal {
            signal: signal.to_string(),
            by: by.to_string(),
        })
        .send()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("node {} cannot be reached: {e}", job.node),
            )
        })?;
    if !response.status().is_success() {
        return Err(remote_error(&job.node, response).await);
    }
    Ok(())
}

/// `POST /internal/jobs/ID/signal`.
async fn signal_here(
    State(ctx): Ctx,
    Path(id): Path<String>,
    Json(req): Json<InternalSignal>,
) -> Result<StatusCode, ApiError> {
    let job = job_record(&ctx, &id)?;
    if job.node != ctx.cfg.name {
        return Err(ApiError::bad(format!(
            "job {id} runs on {}, not here",
            job.node
        )));
    }
    deliver(&ctx, &job, &req.signal, &req.by).await?;
    Ok(StatusCode::NO_CONTENT)
}

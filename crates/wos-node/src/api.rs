//! The HTTP router of a node: the public `/v1/` JSON API, `/metrics`, and the
//! node-to-node `/internal/` calls, all behind the one reference monitor.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use wos_api::*;
use wos_auth::{Action, Decision, JoinToken, Object, Principal, PrincipalRecord};
use wos_membership::MemberState;
use wos_meta::{Command, MetaError, Outcome, Rejection, RpcKind};
use wos_net::{PeerId, PeerKind};

use crate::ctx::NodeCtx;
use crate::{now_millis, now_secs};

type Ctx = State<Arc<NodeCtx>>;

/// Largest accepted body of a public API request.
pub const API_BODY_LIMIT: usize = 1 << 20;
/// Largest node-to-node body (metadata snapshots travel in one).
pub const INTERNAL_BODY_LIMIT: usize = 256 << 20;
/// Longest join-token lifetime.
const MAX_TOKEN_TTL: u64 = 30 * 24 * 3600;

/// An error answer: `{"error": message}` with a status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> ApiError {
        let status = match e {
            MetaError::NoLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
            MetaError::BadRequest(_) => StatusCode::BAD_REQUEST,
            MetaError::Fatal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn rejected(r: Rejection) -> ApiError {
    let status = match r {
        Rejection::BadToken(_) => StatusCode::UNAUTHORIZED,
        Rejection::Exists(_) | Rejection::Conflict(_) => StatusCode::CONFLICT,
        Rejection::NotFound(_) => StatusCode::NOT_FOUND,
    };
    ApiError::new(status, r.to_string())
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body too large: the limit is {API_BODY_LIMIT} bytes"),
    )
}

/// A JSON body whose rejections are JSON errors that say what was wrong.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// Reads the whole body (up to the limit) before judging it, so that the
    /// client always gets our answer rather than a reset stream.
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // A declared length over the limit is refused before any of the body
        // is read: a client that waits for `100 Continue` then sends nothing,
        // and no unread bytes make the closing socket reset our answer away.
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > API_BODY_LIMIT as u64) {
            return Err(too_large());
        }
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct.split(';').next().unwrap_or("").trim();
                ct == "application/json" || ct.ends_with("+json")
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad(format!("cannot read the request body: {}", rej.body_text()))
            }
        })?;
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rej) => Err(ApiError::new(
                rej.status(),
                format!("invalid request body: {}", rej.body_text()),
            )),
        }
    }
}

/// Builds the router of a node.
pub fn router(ctx: Arc<NodeCtx>) -> Router {
    let public = Router::new()
        .route("/v1/cell/ca", get(get_ca))
        .route("/v1/join", post(join))
        .route("/v1/status", get(status))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{name}", axum::routing::delete(remove_node))
        .route("/v1/nodes/{name}/promote", post(promote))
        .route("/v1/nodes/{name}/demote", post(demote))
        .route("/v1/users", post(add_user))
        .route("/v1/tokens", post(create_token))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put))
        .route("/v1/audit", get(audit))
        .route("/v1/caps", post(mint_cap))
        .route("/v1/acl/{*object}", get(acl_get).put(acl_set))
        .route("/v1/groups/{name}", axum::routing::put(group_set))
        .route("/v1/caps/revoke", post(revoke_cap))
        .route("/metrics", get(prometheus))
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    let internal = Router::new()
        .route("/internal/raft/{kind}", post(raft_rpc))
        .route("/internal/meta/leader", post(leader_request))
        .route("/internal/gossip", post(gossip))
        .route("/internal/sign", post(sign_handler))
        .route("/internal/audit", post(audit_local))
        .route("/internal/mint", post(mint_internal))
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT));
    public
        .merge(internal)
        .merge(crate::jobs_api::routes())
        .merge(crate::fs_api::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(ctx.clone(), authorize))
        .with_state(ctx)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: see README.md for the API",
    )
}

/// Which (action, object) a request is. `None`: no such endpoint.
fn classify(method: &Method, path: &str) -> Option<(Action, Object)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = method.clone();
    Some(match (m, segs.as_slice()) {
        (Method::GET, ["v1", "cell", "ca"]) => (Action::FetchCa, Object::Cell),
        (Method::POST, ["v1", "join"]) => (Action::Join, Object::Cell),
        (Method::GET, ["v1", "status"] | ["v1", "nodes"] | ["metrics"]) => {
            (Action::Read, Object::Cell)
        }
        (Method::GET, ["v1", "kv", key @ ..]) => (Action::Read, Object::Kv(key.join("/"))),
        (Method::PUT, ["v1", "kv", key @ ..]) => (Action::Write, Object::Kv(key.join("/"))),
        (Method::GET, ["v1", "audit"]) => (Action::Administer, Object::Cell),
        (Method::POST, ["v1", "caps"]) => (Action::Mint, Object::Cell),
        (Method::GET, ["v1", "acl", rest @ ..]) => (
            Action::Read,
            wos_auth::parse_object(&rest.join("/")).unwrap_or(Object::Cell),
        ),
        (Method::PUT, ["v1", "acl", rest @ ..]) => (
            Action::Administer,
            wos_auth::parse_object(&rest.join("/")).unwrap_or(Object::Cell),
        ),
        (Method::PUT, ["v1", "groups", _]) => (Action::Administer, Object::Cell),
        (Method::POST, ["v1", "caps", "revoke"]) => (Action::Administer, Object::Cell),
        (Method::POST, ["v1", "users"] | ["v1", "tokens"]) => (Action::Administer, Object::Cell),
        (Method::DELETE, ["v1", "nodes", name]) => {
            (Action::Administer, Object::Node(name.to_string()))
        }
        (Method::POST, ["v1", "nodes", name, "promote" | "demote"]) => {
            (Action::Administer, Object::Node(name.to_string()))
        }
        // Deferred: the handler checks Run on the node it starts the job on.
        (Method::POST, ["v1", "jobs"]) => (Action::Run, Object::Cell),
        (Method::GET, ["v1", "jobs"]) => (Action::Read, Object::Cell),
        (Method::GET, ["v1", "jobs", id] | ["v1", "jobs", id, "logs"]) => {
            (Action::Read, Object::Job(id.to_string()))
        }
        (Method::POST, ["v1", "jobs", id, "signal"]) => {
            (Action::Write, Object::Job(id.to_string()))
        }
        (Method::GET | Method::HEAD, ["v1", "fs"]) => (Action::Read, Object::Fs("/".into())),
        (Method::GET | Method::HEAD, ["v1", "fs", rest @ ..]) => {
            (Action::Read, crate::fs_api::object_of(rest))
        }
        (Method::PUT | Method::DELETE | Method::POST, ["v1", "fs", rest @ ..]) => {
            (Action::Write, crate::fs_api::object_of(rest))
        }
        (Method::GET, ["v1", "fsck"]) => (Action::Administer, Object::Cell),
        (Method::POST, ["internal", ..]) => (Action::NodeRpc, Object::Cell),
        (Method::GET | Method::PUT, ["internal", "chunks", ..]) => (Action::NodeRpc, Object::Cell),
        _ => return None,
    })
}

/// The one authorization point: every request passes here before its handler.
async fn authorize(State(ctx): Ctx, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<PeerId>()
        .cloned()
        .unwrap_or(PeerId::Anonymous);
    let Some((action, object)) = classify(req.method(), req.uri().path()) else {
        return not_found().await.into_response();
    };
    let who = Principal::from(&peer);
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    // Starting a job is decided by its handler, which knows the node it
    // asks for only from the body (or picks it): it calls [`check`] with
    // `(Run, node:NAME)` before anything happens.
    let deferred = action == Action::Run && object == Object::Cell;
    let (decision, reason) = if deferred {
        (Decision::Allow, String::new())
    } else {
        decide(&ctx, &who, bearer.as_deref(), action, &object)
    };
    // Audited: every decision on data, every capability use, everything
    // privileged, every denial; not status polling or node-to-node traffic.
    let on_data = matches!(object, Object::Kv(_) | Object::Fs(_));
    let audited = action.privileged() || on_data || bearer.is_some() || decision != Decision::Allow;
    if audited && !deferred {
        audit_decision(&ctx, &who, action, &object, &decision, reason);
    }
    let resp = match decision {
        Decision::Allow => {
            req.extensions_mut().insert(who);
            req.extensions_mut().insert(Bearer(bearer));
            next.run(req).await
        }
        Decision::Deny(d) => {
            // Read what the client already sent (bounded in size and time:
            // a streaming request never ends) before answering: an HTTP/2
            // answer to an unread request makes some clients (curl 7.x)
            // report a framing error instead of our message.
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                axum::body::to_bytes(req.into_body(), API_BODY_LIMIT),
            )
            .await;
            let status = if d.unauthenticated {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            ApiError::new(status, d.message).into_response()
        }
    };
    metrics::counter!("wos_http_requests_total",
        "action" => format!("{action:?}"), "status" => resp.status().as_u16().to_string())
    .increment(1);
    resp
}

/// The capability token a request presented, if any.
#[derive(Debug, Clone)]
pub(crate) struct Bearer(pub Option<String>);

/// Decides `(who, action, object)` through the reference monitor: by the
/// presented capability token alone when there is one, else by the
/// principal's own rights. Returns the decision and the reason to audit.
pub(crate) fn decide(
    ctx: &NodeCtx,
    who: &Principal,
    bearer: Option<&str>,
    action: Action,
    object: &Object,
) -> (Decision, String) {
    match (bearer, ctx.cap_verifier()) {
        (Some(token), Some(verifier)) if !matches!(action, Action::FetchCa | Action::Join) => {
            ctx.meta.read(|s| {
                ctx.monitor.decide_capability(
                    &verifier,
                    s,
                    who,
                    action,
                    object,
                    token,
                    &ctx.cfg.name,
                )
            })
        }
        // A token must never fall back to the presenter's own rights, which
        // may be wider: until this node knows the cell's capability root key
        // (a node that just joined), it refuses requests that carry one.
        (Some(_), None) if !matches!(action, Action::FetchCa | Action::Join) => {
            let message =
                "this node cannot check capability tokens yet (it has not received the cell's metadata); retry shortly"
                    .to_string();
            (
                Decision::Deny(wos_auth::Denial {
                    unauthenticated: false,
                    message: message.clone(),
                }),
                message,
            )
        }
        _ => {
            let d = ctx
                .meta
                .read(|s| ctx.monitor.decide(s, who, action, object));
            let reason = match &d {
                Decision::Allow => ctx
                    .meta
                    .read(|s| ctx.monitor.reason(s, who, action, object)),
                Decision::Deny(denial) => denial.message.clone(),
            };
            (d, reason)
        }
    }
}

pub(crate) fn audit_decision(
    ctx: &NodeCtx,
    who: &Principal,
    action: Action,
    object: &Object,
    decision: &Decision,
    reason: String,
) {
    ctx.audit.record(AuditEntry {
        time_ms: now_millis(),
        node: ctx.cfg.name.clone(),
        principal: who.id(),
        action: format!("{action:?}"),
        object: object.id(),
        allowed: *decision == Decision::Allow,
        reason,
    });
}

/// Decides and audits a request a handler must check beyond what its route
/// says (e.g. on which node a job may run): `Ok` or the denial as an error.
pub(crate) fn check(
    ctx: &NodeCtx,
    who: &Principal,
    bearer: Option<&str>,
    action: Action,
    object: &Object,
) -> Result<(), ApiError> {
    let (decision, reason) = decide(ctx, who, bearer, action, object);
    audit_decision(ctx, who, action, object, &decision, reason);
    match decision {
        Decision::Allow => Ok(()),
        Decision::Deny(d) => Err(ApiError::new(
            if d.unauthenticated {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            },
            d.message,
        )),
    }
}

fn principal_name(who: &Principal) -> String {
    match who {
        Principal::Anonymous => "anonymous".into(),
        Principal::Node(n) | Principal::User(n) => n.clone(),
    }
}

async fn get_ca(State(ctx): Ctx) -> Json<CaInfo> {
    Json(CaInfo {
        cell: ctx.cfg.cell.clone(),
        ca_cert_pem: ctx.tls.ca_cert_pem.clone(),
    })
}

fn check_address(addr: &str) -> Result<(), ApiError> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "invalid address {addr:?}: expected host:port"
        )))
    }
}

async fn join(
    State(ctx): Ctx,
    JsonBody(req): JsonBody<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    let token = JoinToken::parse(&req.token)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let fingerprint = wos_net::ca_fingerprint(&ctx.tls.ca_cert_pem).map_err(internal)?;
    if token.ca_fingerprint != fingerprint {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "join token belongs to another cell (its CA fingerprint does not match)",
        ));
    }
    wos_net::check_name(&req.name).map_err(|e| ApiError::bad(e.to_string()))?;
    check_address(&req.address)?;
    // Check the public key before anything is recorded.
    sign(&ctx, PeerKind::Node, &req.name, &req.public_key_pem, false).await?;
    let public_key = hex::encode(
        wos_net::ed25519_public_key(&req.public_key_pem)
            .map_err(|e| ApiError::bad(e.to_string()))?,
    );
    let id = loop {
        let id: u64 = rand::random();
        if id != 0 && ctx.meta.read(|s| s.node_by_id(id).is_none()) {
            break id;
        }
    };
    let written = ctx
        .meta
        .write(Command::RegisterNode {
            token_id: token.id.clone(),
            token_secret: token.secret.clone(),
            now: now_secs(),
            name: req.name.clone(),
            id,
            address: req.address.clone(),
            core: req.core,
            public_key,
        })
        .await?;
    let name = match written.outcome {
        Outcome::NodeAdmitted { name } => name,
        Outcome::Rejected { reason } => return Err(rejected(reason)),
        other => return Err(internal(format!("unexpected outcome {other:?}"))),
    };
    let signed = sign(&ctx, PeerKind::Node, &name, &req.public_key_pem, false).await?;
    // A core joiner gets the core secrets from this node if it has them;
    // otherwise it fetches them itself once it runs (see `run::fetch_ca_key`).
    let core_secrets = match (req.core, ctx.ca(), ctx.cap_key()) {
        (true, Some(ca), Some(cap)) => Some((ca.key_pem.clone(), cap)),
        _ => None,
    };
    let peers = ctx.meta.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.name != name)
            .map(|n| (n.name.clone(), n.address.clone()))
            .collect()
    });
    tracing::info!(node = %name, address = %req.address, core = req.core, "node joined");
    Ok(Json(JoinResponse {
        cell: ctx.cfg.cell.clone(),
        name,
        node_id: id,
        cert_pem: signed.cert_pem,
        ca_cert_pem: ctx.tls.ca_cert_pem.clone(),
        ca_key_pem: core_secrets.as_ref().map(|s| s.0.clone()),
        cap_key: core_secrets.map(|s| s.1),
        peers,
    }))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

#[derive(Debug, Serialize, Deserialize)]
struct SignRequest {
    kind: PeerKind,
    name: String,
    public_key_pem: String,
    /// Also hand over the core secrets (CA key, capability root key): only
    /// for a node that the metadata records as core, asking for itself.
    want_core_secrets: bool,
}

/// A certificate, and the core secrets when asked for and allowed.
#[derive(Debug, Serialize, Deserialize)]
struct Signed {
    cert_pem: String,
    ca_key_pem: Option<String>,
    cap_key: Option<String>,
}

/// Addresses of the core nodes other than this one, the leader first.
fn core_addresses(ctx: &NodeCtx) -> Vec<String> {
    let status = ctx.meta.status();
    let mut targets: Vec<String> = Vec::new();
    for id in status.leader.iter().chain(status.voters.iter()) {
        if let Some((_, a)) = status.addresses.iter().find(|(i, _)| i == id)
            && !targets.contains(a)
            && *id != status.id
        {
            targets.push(a.clone());
        }
    }
    targets
}

/// Sends `req` to `path` on the core nodes in turn until one answers; a
/// client error (4xx) of theirs is final and passed on.
async fn ask_core<Req: Serialize, Resp: serde::de::DeserializeOwned>(
    ctx: &NodeCtx,
    path: &str,
    req: &Req,
    what: &str,
) -> Result<Resp, ApiError> {
    let mut last = String::from("no core node known");
    for addr in core_addresses(ctx) {
        let sent = ctx
            .http
            .post(format!("https://{addr}{path}"))
            .timeout(Duration::from_secs(5))
            .json(req)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return r.json().await.map_err(internal),
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                let body: ErrorBody = r.json().await.unwrap_or(ErrorBody {
                    error: status.to_string(),
                });
                return Err(ApiError::new(status, body.error));
            }
            Ok(r) => last = format!("{addr}: HTTP {}", r.status()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("no core node could {what} ({last})"),
    ))
}

/// Issues a certificate here if this node holds the CA key, else asks the
/// core nodes.
async fn sign(
    ctx: &Arc<NodeCtx>,
    kind: PeerKind,
    name: &str,
    public_key_pem: &str,
    want_core_secrets: bool,
) -> Result<Signed, ApiError> {
    let req = SignRequest {
        kind,
        name: name.into(),
        public_key_pem: public_key_pem.into(),
        want_core_secrets,
    };
    if ctx.ca().is_some() {
        return sign_here(ctx, &req);
    }
    ask_core(ctx, "/internal/sign", &req, "issue the certificate").await
}

fn sign_here(ctx: &NodeCtx, req: &SignRequest) -> Result<Signed, ApiError> {
    let Some(ca) = ctx.ca() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node holds no CA key",
        ));
    };
    let cert_pem = ca
        .issue(&ctx.cfg.cell, req.kind, &req.name, &req.public_key_pem)
        .map_err(|e| ApiError::bad(format!("cannot issue a certificate: {e}")))?;
    let secrets = req.want_core_secrets;
    Ok(Signed {
        cert_pem,
        ca_key_pem: secrets.then(|| ca.key_pem.clone()),
        cap_key: if secrets { ctx.cap_key() } else { None },
    })
}

/// Asks the core nodes for the core secrets (CA key, capability root key),
/// for this node, which the metadata records as core. `spki` is a throwaway
/// key the signer certifies on the way.
pub(crate) async fn fetch_ca_key(
    ctx: &Arc<NodeCtx>,
    spki: &str,
) -> Result<(String, String), ApiError> {
    let s = sign(ctx, PeerKind::Node, &ctx.cfg.name, spki, true).await?;
    match (s.ca_key_pem, s.cap_key) {
        (Some(ca), Some(cap)) => Ok((ca, cap)),
        _ => Err(internal("the core node did not hand over its secrets")),
    }
}

async fn sign_handler(
    State(ctx): Ctx,
    axum::Extension(who): axum::Extension<Principal>,
    JsonBody(req): JsonBody<SignRequest>,
) -> Result<Json<Signed>, ApiError> {
    if req.want_core_secrets {
        let is_core = ctx
            .meta
            .read(|s| s.nodes.get(&req.name).is_some_and(|n| n.core));
        let for_itself = who == Principal::Node(req.name.clone());
        if !is_core || !for_itself {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{who} may not receive the core secrets for {}: they go only to a core node, for itself",
                    req.name
                ),
            ));
        }
    }
    sign_here(&ctx, &req).map(Json)
}

/// The names of node ids, from the metadata.
fn id_names(ctx: &NodeCtx) -> std::collections::HashMap<u64, String> {
    ctx.meta
        .read(|s| s.nodes.values().map(|n| (n.id, n.name.clone())).collect())
}

fn name_of(names: &std::collections::HashMap<u64, String>, id: u64) -> String {
    names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))
}

/// Every node the metadata records, with its liveness as this node sees it.
pub(crate) fn node_infos(ctx: &NodeCtx) -> Vec<NodeInfo> {
    let status = ctx.meta.status();
    let members = ctx.membership.members();
    let records: Vec<wos_meta::NodeRecord> = ctx.meta.read(|s| s.nodes.values().cloned().collect());
    records
        .into_iter()
        .map(|n| {
            let seen = members.iter().find(|m| m.name == n.name);
            let state = match seen.map(|m| m.state) {
                Some(MemberState::Alive) => NodeState::Alive,
                Some(MemberState::Suspect) => NodeState::Suspect,
                Some(MemberState::Dead) | None => NodeState::Dead,
            };
            NodeInfo {
                role: if status.voters.contains(&n.id) {
                    Role::Core
                } else {
                    Role::Worker
                },
                leader: status.leader == Some(n.id),
                state,
                sensors: seen.and_then(|m| m.sensors.clone()),
                last_heard_secs: seen
                    .and_then(|m| m.last_heard)
                    .map(|t| t.elapsed().as_secs_f64()),
                name: n.name,
                id: n.id,
                address: n.address,
            }
        })
        .collect()
}

async fn status(State(ctx): Ctx) -> Json<Status> {
    let raft = ctx.meta.status();
    let names = id_names(&ctx);
    let infos = node_infos(&ctx);
    let count = |st: NodeState| infos.iter().filter(|n| n.state == st).count();
    Json(Status {
        cell: ctx.cfg.cell.clone(),
        node: ctx.cfg.name.clone(),
        leader: raft.leader.map(|l| name_of(&names, l)),
        term: raft.term,
        voters: raft.voters.iter().map(|v| name_of(&names, *v)).collect(),
        nodes: NodeCounts {
            total: infos.len(),
            alive: count(NodeState::Alive),
            suspect: count(NodeState::Suspect),
            dead: count(NodeState::Dead),
        },
        applied_index: raft.applied_index,
        snapshot_index: raft.snapshot_index,
        purged_index: raft.purged_index,
    })
}

async fn nodes(State(ctx): Ctx) -> Json<Vec<NodeInfo>> {
    Json(node_infos(&ctx))
}

async fn set_role(ctx: &Arc<NodeCtx>, name: &str, core: bool) -> Result<Json<NodeInfo>, ApiError> {
    ctx.meta.linearizable().await?;
    let (exists, cores) = ctx.meta.read(|s| {
        (
            s.nodes.contains_key(name),
            s.nodes
                .values()
                .filter(|n| n.core && n.name != name)
                .count(),
        )
    });
    if !exists {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no node named {name}: see `wos node ls`"),
        ));
    }
    if !core && cores == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{name} is the only core node: promote another node before demoting it"),
        ));
    }
    let written = ctx
        .meta
        .write(Command::SetNodeRole {
            name: name.into(),
            core,
        })
        .await?;
    if let Outcome::Rejected { reason } = written.outcome {
        return Err(rejected(reason));
    }
    // The leader changes the Raft voters shortly; answer with what is known now.
    let info = node_infos(ctx).into_iter().find(|n| n.name == name);
    info.map(Json).ok_or_else(|| internal("node vanished"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveParams {
    /// Remove even if the node looks alive.
    #[serde(default)]
    force: bool,
}

/// Forgets a node: `wos node rm`. Refused for a live node (unless forced), for
/// the node answering, and for the last core node.
async fn remove_node(
    State(ctx): Ctx,
    Path(name): Path<String>,
    Query(p): Query<RemoveParams>,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    ctx.meta.linearizable().await?;
    let info = node_infos(&ctx)
        .into_iter()
        .find(|n| n.name == name)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no node named {name}: see `wos node ls`"),
            )
        })?;
    if name == ctx.cfg.name {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{name} is answering this request: ask another node to remove it"),
        ));
    }
    if info.state == NodeState::Alive && !p.force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{name} is alive: stop it first (or use --force)"),
        ));
    }
    let other_cores = ctx.meta.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.core && n.name != name)
            .count()
    });
    if other_cores == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{name} is the only core node: promote another node first"),
        ));
    }
    let written = ctx.meta.write(Command::RemoveNode { name }).await?;
    if let Outcome::Rejected { reason } = written.outcome {
        return Err(rejected(reason));
    }
    Ok(Json(node_infos(&ctx)))
}

async fn promote(State(ctx): Ctx, Path(name): Path<String>) -> Result<Json<NodeInfo>, ApiError> {
    set_role(&ctx, &name, true).await
}

async fn demote(State(ctx): Ctx, Path(name): Path<String>) -> Result<Json<NodeInfo>, ApiError> {
    set_role(&ctx, &name, false).await
}

async fn add_user(
    State(ctx): Ctx,
    JsonBody(req): JsonBody<AddUserRequest>,
) -> Result<(StatusCode, Json<AddUserResponse>), ApiError> {
    wos_net::check_name(&req.name).map_err(|e| ApiError::bad(e.to_string()))?;
    // Issue first: a bad public key is refused before anything is recorded.
    let cert_pem = sign(&ctx, PeerKind::User, &req.name, &req.public_key_pem, false)
        .await?
        .cert_pem;
    let public_key = hex::encode(
        wos_net::ed25519_public_key(&req.public_key_pem)
            .map_err(|e| ApiError::bad(e.to_string()))?,
    );
    let record = PrincipalRecord {
        public_key,
        name: req.name.clone(),
        kind: PeerKind::User,
        admin: req.admin,
        created: now_secs(),
    };
    let written = ctx.meta.write(Command::AddPrincipal { record }).await?;
    if let Outcome::Rejected { reason } = written.outcome {
        return Err(rejected(reason));
    }
    Ok((
        StatusCode::CREATED,
        Json(AddUserResponse {
            name: req.name,
            cert_pem,
            ca_cert_pem: ctx.tls.ca_cert_pem.clone(),
        }),
    ))
}

async fn create_token(
    State(ctx): Ctx,
    axum::Extension(who): axum::Extension<Principal>,
    JsonBody(req): JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreateTokenResponse>), ApiError> {
    if req.ttl_secs == 0 || req.ttl_secs > MAX_TOKEN_TTL {
        return Err(ApiError::bad(format!(
            "ttl_secs must be between 1 and {MAX_TOKEN_TTL} (30 days), not {}",
            req.ttl_secs
        )));
    }
    let fingerprint = wos_net::ca_fingerprint(&ctx.tls.ca_cert_pem).map_err(internal)?;
    let token = JoinToken::generate(&fingerprint);
    let expires = now_secs() + req.ttl_secs;
    let record = token.record(expires, &principal_name(&who));
    ctx.meta.write(Command::AddToken { record }).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateTokenResponse {
            token: token.to_string(),
            expires,
        }),
    ))
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty()
        || key.len() > 512
        || key.contains('\0')
        || key.split('/').any(|s| s.is_empty() || s == "..")
    {
        return Err(ApiError::bad(format!(
            "invalid key {key:?}: keys are 1-512 bytes of '/'-separated non-empty segments, without '..' or NUL"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadParams {
    /// Serve from the local replica without asking the leader.
    #[serde(default)]
    stale: bool,
}

async fn kv_get(
    State(ctx): Ctx,
    Path(key): Path<String>,
    Query(p): Query<ReadParams>,
) -> Result<Json<KvEntry>, ApiError> {
    check_key(&key)?;
    if !p.stale {
        ctx.meta.linearizable().await?;
    }
    let v = ctx.meta.read(|s| s.kv.get(&key).cloned());
    match v {
        Some(v) => Ok(Json(KvEntry {
            key,
            value: v.value,
            revision: v.revision,
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no key {key}"),
        )),
    }
}

async fn kv_put(
    State(ctx): Ctx,
    Path(key): Path<String>,
    JsonBody(req): JsonBody<KvPut>,
) -> Result<Json<KvEntry>, ApiError> {
    check_key(&key)?;
    if req.value.len() > 64 * 1024 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "values are at most 64 KiB",
        ));
    }
    let written = ctx
        .meta
        .write(Command::KvPut {
            key,
            value: req.value,
            if_revision: req.if_revision,
        })
        .await?;
    metrics::counter!("wos_meta_writes_total").increment(1);
    match written.outcome {
        Outcome::Kv { key, value } => Ok(Json(KvEntry {
            key,
            value: value.value,
            revision: value.revision,
        })),
        Outcome::Rejected { reason } => Err(rejected(reason)),
        other => Err(internal(format!("unexpected outcome {other:?}"))),
    }
}

/// This node's audit entries (asked by another node answering `/v1/audit`).
async fn audit_local(
    State(ctx): Ctx,
    JsonBody(q): JsonBody<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    ctx.audit.query(&q).map(Json).map_err(internal)
}

/// The audit log of the whole cell: this node's entries and every reachable
/// node's, merged by time. Nodes that do not answer are named in the
/// `x-wos-audit-missing` header.
async fn audit(State(ctx): Ctx, Query(q): Query<AuditQuery>) -> Result<Response, ApiError> {
    let mut entries = ctx.audit.query(&q).map_err(internal)?;
    let others: Vec<(String, String)> = ctx.meta.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.name != ctx.cfg.name)
            .map(|n| (n.name.clone(), n.address.clone()))
            .collect()
    });
    let asks = others.iter().map(|(name, addr)| {
        let req = ctx
            .http
            .post(format!("https://{addr}/internal/audit"))
            .timeout(Duration::from_secs(3))
            .json(&q)
            .send();
        async move {
            let got = match req.await {
                Ok(r) if r.status().is_success() => r.json::<Vec<AuditEntry>>().await.ok(),
                _ => None,
            };
            (name.clone(), got)
        }
    });
    let mut missing = Vec::new();
    for (name, got) in futures::future::join_all(asks).await {
        match got {
            Some(mut e) => entries.append(&mut e),
            None => missing.push(name),
        }
    }
    entries.sort_by_key(|e| e.time_ms);
    let limit = q.limit.unwrap_or(1000).min(wos_auth::audit::MAX_QUERY);
    if entries.len() > limit {
        entries.drain(..entries.len() - limit);
    }
    let mut resp = Json(entries).into_response();
    if !missing.is_empty()
        && let Ok(v) = axum::http::HeaderValue::from_str(&missing.join(","))
    {
        resp.headers_mut().insert("x-wos-audit-missing", v);
    }
    Ok(resp)
}

/// A mint request between nodes (the asking node has checked the minter).
#[derive(Debug, Serialize, Deserialize)]
struct MintWire {
    object: String,
    rights: Vec<String>,
    ttl_secs: u64,
    holder: Option<String>,
    minted_by: String,
}

impl MintWire {
    fn spec(&self) -> wos_auth::cap::MintSpec {
        wos_auth::cap::MintSpec {
            object: self.object.clone(),
            rights: self.rights.clone(),
            ttl: Duration::from_secs(self.ttl_secs),
            holder: self.holder.clone(),
            minted_by: self.minted_by.clone(),
        }
    }
}

fn mint_here(ctx: &NodeCtx, wire: &MintWire) -> Result<MintCapResponse, ApiError> {
    let Some(key) = ctx.cap_key() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node holds no capability root key",
        ));
    };
    let m = wos_auth::cap::mint(&key, &wire.spec()).map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(MintCapResponse {
        token: m.token,
        id: m.id,
        expires: m.expires,
    })
}

async fn mint_internal(
    State(ctx): Ctx,
    JsonBody(wire): JsonBody<MintWire>,
) -> Result<Json<MintCapResponse>, ApiError> {
    mint_here(&ctx, &wire).map(Json)
}

/// Mints a capability for rights the caller holds itself: each right is
/// checked with the reference monitor as if the caller exercised it.
async fn mint_cap(
    State(ctx): Ctx,
    axum::Extension(who): axum::Extension<Principal>,
    JsonBody(req): JsonBody<MintCapRequest>,
) -> Result<(StatusCode, Json<MintCapResponse>), ApiError> {
    wos_auth::cap::check_object(&req.object).map_err(|e| ApiError::bad(e.to_string()))?;
    wos_auth::cap::check_rights(&req.rights).map_err(|e| ApiError::bad(e.to_string()))?;
    if req.ttl_secs == 0 || req.ttl_secs > MAX_TOKEN_TTL {
        return Err(ApiError::bad(format!(
            "ttl_secs must be between 1 and {MAX_TOKEN_TTL} (30 days), not {}",
            req.ttl_secs
        )));
    }
    let object = wos_auth::parse_object(&req.object)
        .ok_or_else(|| ApiError::bad(format!("invalid object {:?}", req.object)))?;
    for right in &req.rights {
        let action = Action::for_right(right);
        let decision = ctx
            .meta
            .read(|s| ctx.monitor.decide(s, &who, action, &object));
        if let Decision::Deny(d) = decision {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{who} cannot grant {right} on {}: {}",
                    object.id(),
                    d.message
                ),
            ));
        }
    }
    let holder = match &req.holder {
        None => None,
        Some(h) => {
            let id = if h.contains(':') {
                h.clone()
            } else {
                format!("user:{h}")
            };
            let (kind, name) = id.split_once(':').unwrap_or(("", ""));
            let known = ctx.meta.read(|s| {
                s.principals.get(name).is_some_and(|p| match kind {
                    "user" => p.kind == PeerKind::User,
                    "node" => p.kind == PeerKind::Node,
                    _ => false,
                })
            });
            if !known {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no principal {id} to issue the capability to"),
                ));
            }
            Some(id)
        }
    };
    let wire = MintWire {
        object: req.object,
        rights: req.rights,
        ttl_secs: req.ttl_secs,
        holder,
        minted_by: who.id(),
    };
    let minted = if ctx.cap_key().is_some() {
        mint_here(&ctx, &wire)?
    } else {
        ask_core(&ctx, "/internal/mint", &wire, "mint the capability").await?
    };
    Ok((StatusCode::CREATED, Json(minted)))
}

fn check_acl_principal(p: &str) -> Result<(), ApiError> {
    let ok = p == "anyuser"
        || ["user:", "node:", "group:"].iter().any(|k| {
            p.strip_prefix(k)
                .is_some_and(|n| wos_net::check_name(n).is_ok())
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "invalid principal {p:?}: use user:NAME, node:NAME, group:NAME or anyuser"
        )))
    }
}

/// Sets one entry of an object's ACL (cell admins, or holders of admin on it).
async fn acl_set(
    State(ctx): Ctx,
    Path(object): Path<String>,
    JsonBody(req): JsonBody<SetAclRequest>,
) -> Result<Json<Vec<AclEntry>>, ApiError> {
    wos_auth::cap::check_object(&object).map_err(|e| ApiError::bad(e.to_string()))?;
    check_acl_principal(&req.principal)?;
    if !req.rights.is_empty() {
        wos_auth::cap::check_rights(&req.rights).map_err(|e| ApiError::bad(e.to_string()))?;
    }
    let cmd = Command::SetAcl {
        object: object.clone(),
        principal: req.principal,
        rights: req.rights,
    };
    ctx.meta.write(cmd).await?;
    Ok(Json(acl_entries(&ctx, &object)))
}

/// Every ACL entry that applies to `object` (set on it or on a prefix).
fn acl_entries(ctx: &NodeCtx, object: &str) -> Vec<AclEntry> {
    ctx.meta.read(|s| {
        s.acls
            .iter()
            .filter(|(o, _)| object.starts_with(o.as_str()))
            .flat_map(|(o, entries)| {
                entries.iter().map(|(p, rights)| AclEntry {
                    object: o.clone(),
                    principal: p.clone(),
                    rights: rights.iter().cloned().collect(),
                })
            })
            .collect()
    })
}

async fn acl_get(
    State(ctx): Ctx,
    Path(object): Path<String>,
) -> Result<Json<Vec<AclEntry>>, ApiError> {
    wos_auth::cap::check_object(&object).map_err(|e| ApiError::bad(e.to_string()))?;
    ctx.meta.linearizable().await?;
    Ok(Json(acl_entries(&ctx, &object)))
}

async fn group_set(
    State(ctx): Ctx,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SetGroupRequest>,
) -> Result<Json<Vec<String>>, ApiError> {
    wos_net::check_name(&name).map_err(|e| ApiError::bad(e.to_string()))?;
    for m in &req.members {
        if m == "anyuser" || m.starts_with("group:") {
            return Err(ApiError::bad(format!(
                "invalid member {m:?}: members are user:NAME or node:NAME"
            )));
        }
        check_acl_principal(m)?;
    }
    ctx.meta
        .write(Command::SetGroup {
            name,
            members: req.members.clone(),
        })
        .await?;
    Ok(Json(req.members))
}

/// Revokes a token (and everything attenuated or delegated from it).
async fn revoke_cap(
    State(ctx): Ctx,
    JsonBody(req): JsonBody<RevokeCapRequest>,
) -> Result<Json<RevokeCapResponse>, ApiError> {
    let id = match (&req.token, &req.id) {
        (Some(t), None) => wos_auth::cap::token_id(t).map_err(|e| ApiError::bad(e.to_string()))?,
        (None, Some(id)) => {
            let ok = id.len() == 128 && id.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(ApiError::bad(
                    "id must be the hex revocation id that `wos cap inspect` shows",
                ));
            }
            id.to_lowercase()
        }
        _ => return Err(ApiError::bad("give exactly one of token or id")),
    };
    let written = ctx.meta.write(Command::Revoke { id: id.clone() }).await?;
    if let Outcome::Rejected { reason } = written.outcome {
        return Err(rejected(reason));
    }
    Ok(Json(RevokeCapResponse { id }))
}

async fn prometheus(State(ctx): Ctx) -> Response {
    let raft = ctx.meta.status();
    metrics::gauge!("wos_raft_term").set(raft.term as f64);
    metrics::gauge!("wos_raft_applied_index").set(raft.applied_index as f64);
    metrics::gauge!("wos_raft_is_leader").set(if raft.is_leader { 1.0 } else { 0.0 });
    for (state, label) in [
        (MemberState::Alive, "alive"),
        (MemberState::Suspect, "suspect"),
        (MemberState::Dead, "dead"),
    ] {
        let n = ctx
            .membership
            .members()
            .iter()
            .filter(|m| m.state == state)
            .count();
        metrics::gauge!("wos_members", "state" => label).set(n as f64);
    }
    metrics::gauge!("wos_uptime_seconds").set(ctx.started.elapsed().as_secs_f64());
    let body = ctx.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}

async fn raft_rpc(
    State(ctx): Ctx,
    Path(kind): Path<String>,
    body: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let kind = RpcKind::from_path(&kind)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown raft rpc"))?;
    Ok(ctx.meta.handle_rpc(kind, &body).await?)
}

async fn leader_request(State(ctx): Ctx, body: Bytes) -> Result<Vec<u8>, ApiError> {
    Ok(ctx.meta.handle_leader_request(&body).await?)
}

async fn gossip(State(ctx): Ctx, body: Bytes) -> StatusCode {
    ctx.membership.receive(body.to_vec());
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_classified_and_unknown_ones_are_not() {
        assert_eq!(
            classify(&Method::GET, "/v1/status"),
            Some((Action::Read, Object::Cell))
        );
        assert_eq!(
            classify(&Method::POST, "/v1/users"),
            Some((Action::Administer, Object::Cell))
        );
        assert_eq!(
            classify(&Method::POST, "/v1/nodes/n1/promote"),
            Some((Action::Administer, Object::Node("n1".into())))
        );
        assert_eq!(
            classify(&Method::POST, "/internal/raft/vote"),
            Some((Action::NodeRpc, Object::Cell))
        );
        assert_eq!(classify(&Method::DELETE, "/v1/status"), None);
        assert_eq!(classify(&Method::GET, "/v2/x"), None);
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("a/b").is_ok());
        for bad in ["", "a//b", "../x", "a/../b", "a\0"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}

//! WebFS metadata caching with callbacks, as in AFS.
//!
//! Every node holds a full replica of the namespace (it is part of the
//! Raft state), but a replica may lag: what makes a local read safe to
//! serve is a *callback*, the metadata leader's promise to tell this node
//! before a change to an object is acknowledged. A read whose objects (the
//! file or directory, the directories above it, a listing's children) are
//! all under callback is served from the local replica with no round trip
//! to the leader; any other read registers its objects with the leader in
//! the same round trip as a ReadIndex, then waits for the local replica to
//! catch up with that index.
//!
//! The promises are bounded in time: a node's callbacks belong to a
//! *lease* of [`LEASE`] that it renews while it holds any. When the leader
//! cannot deliver a break (the node is down or cut off), it waits until
//! that lease has run out before acknowledging the write; a node stops
//! trusting its callbacks [`MARGIN`] before the leader stops honouring
//! them. A new leader knows no promises, so it waits one [`LEASE`] before
//! acknowledging its first WebFS change. A broken callback therefore
//! invalidates a cached entry at once, or within [`LEASE`] at worst.
//!
//! Race with a registration in flight: a break that arrives while this
//! node waits for a grant makes it drop that grant (the read itself is
//! still linearizable; only the promise is doubtful).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use wos_auth::Principal;
use wos_fsmeta::Ino;
use wos_meta::{AckGate, CellState};

use crate::api::ApiError;
use crate::ctx::NodeCtx;

/// How long a node's callbacks last without renewal.
pub const LEASE: Duration = Duration::from_secs(3);
/// How much earlier than the leader a node stops trusting its callbacks
/// (clock rates differ a little; the request's flight time is on the safe
/// side already, since a node counts from when it asked).
pub const MARGIN: Duration = Duration::from_millis(500);
/// Callbacks one node may hold; registering more drops them all first.
const MAX_HELD: usize = 200_000;

pub const REGISTER_PATH: &str = "/internal/fs/callbacks";
pub const BREAK_PATH: &str = "/internal/fs/callbacks/break";

/// A node asks the leader for callbacks on `inos` (none: renew only).
#[derive(Debug, Serialize, Deserialize)]
pub struct Register {
    /// The lease the node holds, if any: its callbacks carry over.
    pub lease: Option<u64>,
    /// The node dropped every callback it held: the leader forgets them.
    pub reset: bool,
    pub inos: Vec<u64>,
}

/// The leader's answer: the lease the callbacks now belong to (a new one
/// means every earlier callback is void) and a read index.
#[derive(Debug, Serialize, Deserialize)]
pub struct Granted {
    pub lease: u64,
    pub index: u64,
}

/// The leader tells a node that these objects are about to change.
#[derive(Debug, Serialize, Deserialize)]
pub struct Break {
    pub lease: u64,
    pub inos: Vec<u64>,
}

/// What the leader has promised whom.
#[derive(Default)]
struct Promises {
    /// The term these promises belong to; a new term starts from nothing.
    term: u64,
    /// A new leader acknowledges no WebFS change before this.
    grace_until: Option<Instant>,
    /// The last lease id handed out; ids grow within a term, and a later
    /// term's are larger (the term is in the high bits).
    last_lease: u64,
    holders: HashMap<Ino, HashSet<String>>,
    leases: HashMap<String, Lease>,
}

struct Lease {
    id: u64,
    expires: Instant,
    held: HashSet<Ino>,
}

/// The callbacks this node holds.
#[derive(Default)]
struct Holds {
    lease: Option<u64>,
    valid_until: Option<Instant>,
    held: HashSet<Ino>,
    /// Breaks received so far: a grant asked for before the latest break
    /// is not trusted.
    breaks: u64,
}

impl Holds {
    fn valid(&self) -> bool {
        self.valid_until.is_some_and(|t| Instant::now() < t)
    }

    fn clear(&mut self) {
        self.lease = None;
        self.valid_until = None;
        self.held.clear();
    }
}

/// Both sides of WebFS callbacks on one node.
pub struct FsCache {
    enabled: bool,
    promises: Mutex<Promises>,
    holds: Mutex<Holds>,
    /// The node, for the leader side's calls (set once the node is built).
    ctx: std::sync::OnceLock<Weak<NodeCtx>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FsCache {
    pub fn new(enabled: bool) -> Arc<FsCache> {
        Arc::new(FsCache {
            enabled,
            promises: Mutex::default(),
            holds: Mutex::default(),
            ctx: std::sync::OnceLock::new(),
        })
    }

    /// Connects the cache to its node and makes it the leader's gate.
    pub fn attach(self: &Arc<FsCache>, ctx: &Arc<NodeCtx>) {
        let _ = self.ctx.set(Arc::downgrade(ctx));
        ctx.meta.set_ack_gate(self.clone());
    }

    fn node(&self) -> Option<Arc<NodeCtx>> {
        self.ctx.get()?.upgrade()
    }

    /// True when this node holds valid callbacks on every one of `inos`.
    fn covers(&self, inos: &[Ino]) -> bool {
        let holds = lock(&self.holds);
        holds.valid() && inos.iter().all(|i| holds.held.contains(i))
    }

    /// Records a grant for `inos`, asked for at `asked` when `breaks`
    /// breaks had arrived. Lease ids only grow: a grant of an older lease
    /// than the one held is a late answer, and is ignored.
    fn granted(&self, g: &Granted, inos: &[Ino], asked: Instant, breaks: u64) {
        let mut holds = lock(&self.holds);
        match holds.lease {
            Some(held) if g.lease < held => return,
            Some(held) if g.lease == held => {}
            _ => {
                // A new lease: whatever was held before is void.
                holds.held.clear();
                holds.lease = Some(g.lease);
                holds.valid_until = None;
            }
        }
        let until = asked + LEASE - MARGIN;
        holds.valid_until = Some(holds.valid_until.map_or(until, |t| t.max(until)));
        if holds.breaks == breaks {
            holds.held.extend(inos.iter().copied());
        }
    }

    /// A break from the leader: these objects are about to change.
    fn broken(&self, b: &Break) {
        let mut holds = lock(&self.holds);
        holds.breaks += 1;
        for ino in &b.inos {
            holds.held.remove(&Ino(*ino));
        }
    }

    /// What this node would send to renew its lease, if it holds anything.
    fn renewal_due(&self) -> Option<Option<u64>> {
        let holds = lock(&self.holds);
        if holds.held.is_empty() || holds.lease.is_none() {
            return None;
        }
        let left = holds
            .valid_until
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        (left < LEASE / 2).then_some(holds.lease)
    }

    fn drop_all(&self) {
        lock(&self.holds).clear();
    }

    /// The number of callbacks this node holds (for `/metrics`).
    pub fn held(&self) -> usize {
        lock(&self.holds).held.len()
    }
}

/// Reads the local replica with `read`, which answers a value and the
/// objects it depends on (`None`: not cacheable). Served locally when every
/// such object is under callback; else after one round trip to the leader,
/// which also registers callbacks for next time. Either way the answer
/// reflects every change acknowledged before this call (close-to-open).
pub async fn fresh_read<T>(
    ctx: &NodeCtx,
    read: impl Fn(&CellState) -> (T, Option<Vec<Ino>>),
) -> Result<T, ApiError> {
    let cache = &ctx.fs_cache;
    if cache.enabled {
        let (value, deps) = ctx.meta.read(&read);
        if let Some(deps) = deps {
            if cache.covers(&deps) {
                metrics::counter!("wos_fs_cache_reads_total", "result" => "hit").increment(1);
                return Ok(value);
            }
            metrics::counter!("wos_fs_cache_reads_total", "result" => "miss").increment(1);
            if register(ctx, deps).await.is_ok() {
                return Ok(ctx.meta.read(&read).0);
            }
        }
    }
    leader_round_trip();
    ctx.meta.linearizable().await?;
    Ok(ctx.meta.read(&read).0)
}

fn leader_round_trip() {
    metrics::counter!("wos_fs_leader_round_trips_total").increment(1);
}

/// Registers callbacks on `inos` with the leader (or renews the lease
/// with none) and waits until the local replica has caught up with the
/// read index it answered.
async fn register(ctx: &NodeCtx, inos: Vec<Ino>) -> Result<(), ApiError> {
    let cache = &ctx.fs_cache;
    let (lease, breaks, reset) = {
        let mut holds = lock(&cache.holds);
        let reset = holds.held.len() + inos.len() > MAX_HELD;
        if reset {
            holds.clear();
        }
        (holds.lease, holds.breaks, reset)
    };
    let req = Register {
        lease,
        reset,
        inos: inos.iter().map(|i| i.0).collect(),
    };
    let asked = Instant::now();
    leader_round_trip();
    let granted = match ctx.meta.leader_address() {
        None if ctx.meta.status().is_leader => grant(ctx, &ctx.cfg.name, req).await?,
        None => return Err(ApiError::unavailable("no metadata leader known")),
        Some(address) => ask_leader(ctx, &address, &req).await?,
    };
    ctx.meta.wait_applied(granted.index).await?;
    cache.granted(&granted, &inos, asked, breaks);
    Ok(())
}

async fn ask_leader(ctx: &NodeCtx, address: &str, req: &Register) -> Result<Granted, ApiError> {
    let body = postcard::to_allocvec(req).map_err(crate::api::internal)?;
    let resp = ctx
        .http
        .post(format!("https://{address}{REGISTER_PATH}"))
        .timeout(Duration::from_secs(5))
        .body(body)
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("metadata leader at {address}: {e}")))?;
    if !resp.status().is_success() {
        return Err(ApiError::unavailable(format!(
            "metadata leader at {address} answered {}",
            resp.status()
        )));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    postcard::from_bytes(&bytes).map_err(crate::api::internal)
}

/// On the leader: records callbacks for `node` and answers a read index
/// taken after they were recorded, so that a change either breaks them
/// or is covered by the index.
async fn grant(ctx: &NodeCtx, node: &str, req: Register) -> Result<Granted, ApiError> {
    let term = ctx.meta.status().term;
    let cache = &ctx.fs_cache;
    let lease = {
        let mut p = lock(&cache.promises);
        p.start_term(term);
        p.grant(node, &req)
    };
    ctx.meta.linearizable().await?;
    Ok(Granted {
        lease,
        index: ctx.meta.status().applied_index,
    })
}

impl Promises {
    /// Forgets the promises of an earlier term and starts the new
    /// leader's grace period.
    fn start_term(&mut self, term: u64) {
        if self.term != term {
            *self = Promises {
                term,
                grace_until: Some(Instant::now() + LEASE),
                last_lease: term << 32,
                ..Promises::default()
            };
        }
    }

    /// Records callbacks on `req.inos` for `node` and answers its lease.
    /// A node that names no lease joins its live one; one that names a
    /// lease the leader no longer honours (or resets) gets a new one.
    fn grant(&mut self, node: &str, req: &Register) -> u64 {
        let now = Instant::now();
        let live = self
            .leases
            .get(node)
            .filter(|l| l.expires > now)
            .map(|l| l.id);
        let carries_over = match (live, req.lease) {
            (Some(id), Some(asked)) => id == asked,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !carries_over || req.reset {
            self.forget_node(node);
            self.last_lease += 1;
            self.leases.insert(
                node.to_string(),
                Lease {
                    id: self.last_lease,
                    expires: now,
                    held: HashSet::new(),
                },
            );
        }
        let lease = self.leases.get_mut(node).expect("inserted above");
        lease.expires = now + LEASE;
        for ino in &req.inos {
            lease.held.insert(Ino(*ino));
            self.holders
                .entry(Ino(*ino))
                .or_default()
                .insert(node.to_string());
        }
        lease.id
    }

    fn forget_node(&mut self, node: &str) {
        if let Some(lease) = self.leases.remove(node) {
            for ino in lease.held {
                if let Some(h) = self.holders.get_mut(&ino) {
                    h.remove(node);
                    if h.is_empty() {
                        self.holders.remove(&ino);
                    }
                }
            }
        }
    }

    /// Takes the callbacks on `changed` away from their holders: per node
    /// with a live lease, its lease id, expiry and the objects to tell it.
    fn take(&mut self, changed: &[Ino]) -> Vec<(String, u64, Instant, Vec<u64>)> {
        let mut per_node: HashMap<String, Vec<u64>> = HashMap::new();
        for ino in changed {
            for node in self.holders.remove(ino).unwrap_or_default() {
                if let Some(l) = self.leases.get_mut(&node) {
                    l.held.remove(ino);
                }
                per_node.entry(node).or_default().push(ino.0);
            }
        }
        let now = Instant::now();
        per_node
            .into_iter()
            .filter_map(|(node, inos)| {
                let l = self.leases.get(&node)?;
                (l.expires > now).then_some((node, l.id, l.expires, inos))
            })
            .collect()
    }
}

impl AckGate for FsCache {
    fn before_ack(
        &self,
        changed: Vec<Ino>,
        _index: u64,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let Some(ctx) = self.node() else { return };
            let term = ctx.meta.status().term;
            let (grace, to_tell) = {
                let mut p = lock(&self.promises);
                p.start_term(term);
                (p.grace_until, p.take(&changed))
            };
            if let Some(t) = grace.filter(|t| *t > Instant::now()) {
                // Promises of the last leader may still be honoured by
                // their holders until then.
                tokio::time::sleep_until(t.into()).await;
            }
            let tells = to_tell
                .into_iter()
                .map(|(node, lease, expires, inos)| tell(&ctx, node, lease, expires, inos));
            futures::future::join_all(tells).await;
        })
    }
}

/// Delivers a break to `node`; if it cannot be delivered, waits until the
/// node's lease has run out (the node stops trusting it by then) and
/// voids the lease.
async fn tell(ctx: &Arc<NodeCtx>, node: String, lease: u64, expires: Instant, inos: Vec<u64>) {
    let b = Break { lease, inos };
    if node == ctx.cfg.name {
        ctx.fs_cache.broken(&b);
        return;
    }
    let left = expires.saturating_duration_since(Instant::now());
    let address = ctx
        .meta
        .read(|s| s.nodes.get(&node).map(|n| n.address.clone()));
    let delivered = match (address, postcard::to_allocvec(&b)) {
        (Some(address), Ok(body)) => ctx
            .http
            .post(format!("https://{address}{BREAK_PATH}"))
            .timeout(left)
            .body(body)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
        _ => false,
    };
    if !delivered {
        tracing::warn!(
            %node,
            "could not break a WebFS callback: waiting for the node's lease to run out"
        );
        lock(&ctx.fs_cache.promises).forget_node(&node);
        tokio::time::sleep_until(expires.into()).await;
    }
}

/// `POST /internal/fs/callbacks` (to the leader, from a node).
pub async fn register_handler(
    State(ctx): State<Arc<NodeCtx>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let Principal::Node(node) = who else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only nodes hold WebFS callbacks",
        ));
    };
    let req: Register = postcard::from_bytes(&body)
        .map_err(|e| ApiError::bad(format!("bad callback registration: {e}")))?;
    if !ctx.meta.status().is_leader {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "this node is not the metadata leader",
        ));
    }
    let granted = grant(&ctx, &node, req).await?;
    postcard::to_allocvec(&granted).map_err(crate::api::internal)
}

/// `POST /internal/fs/callbacks/break` (from the leader).
pub async fn break_handler(
    State(ctx): State<Arc<NodeCtx>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let b: Break =
        postcard::from_bytes(&body).map_err(|e| ApiError::bad(format!("bad break: {e}")))?;
    ctx.fs_cache.broken(&b);
    Ok(StatusCode::NO_CONTENT)
}

/// Keeps this node's lease alive while it holds callbacks; a renewal that
/// fails drops them (reads then go to the leader until it answers again).
pub async fn renew_leases(ctx: Arc<NodeCtx>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(LEASE / 6);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        // A new leader starts its grace period as soon as it leads.
        let status = ctx.meta.status();
        if status.is_leader {
            lock(&ctx.fs_cache.promises).start_term(status.term);
        }
        if ctx.fs_cache.renewal_due().is_some() && register(&ctx, vec![]).await.is_err() {
            ctx.fs_cache.drop_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(lease: Option<u64>, inos: &[u64]) -> Register {
        Register {
            lease,
            reset: false,
            inos: inos.to_vec(),
        }
    }

    #[test]
    fn a_change_takes_the_callbacks_from_every_holder() {
        let mut p = Promises::default();
        p.start_term(1);
        let a = p.grant("a", &reg(None, &[1, 2, 3]));
        let b = p.grant("b", &reg(None, &[3, 4]));
        let mut told = p.take(&[Ino(3)]);
        told.sort_by(|x, y| x.0.cmp(&y.0));
        let who: Vec<(&str, u64, Vec<u64>)> = told
            .iter()
            .map(|(n, l, _, i)| (n.as_str(), *l, i.clone()))
            .collect();
        assert_eq!(who, [("a", a, vec![3]), ("b", b, vec![3])]);
        // Taken: a second change to it tells nobody.
        assert!(p.take(&[Ino(3)]).is_empty());
        assert_eq!(p.take(&[Ino(4)]).len(), 1);
    }

    #[test]
    fn a_known_lease_carries_over_and_an_unknown_one_starts_afresh() {
        let mut p = Promises::default();
        p.start_term(1);
        let a = p.grant("a", &reg(None, &[1]));
        assert_eq!(p.grant("a", &reg(Some(a), &[2])), a);
        assert_eq!(p.take(&[Ino(1), Ino(2)])[0].3.len(), 2);
        p.take(&[Ino(3)]);
        // No lease named: it joins the live one.
        assert_eq!(p.grant("a", &reg(None, &[3])), a);
        let again = p.grant("a", &reg(Some(a + 100), &[5]));
        assert!(again > a);
        // The void lease's callbacks are gone with it.
        p.grant("a", &reg(Some(again), &[6]));
        let mut told = p.take(&[Ino(5), Ino(6)]);
        told[0].3.sort();
        assert_eq!(told[0].3, [5, 6]);
    }

    #[test]
    fn a_new_term_forgets_every_promise_and_waits_a_lease() {
        let mut p = Promises::default();
        p.start_term(1);
        p.grant("a", &reg(None, &[1]));
        p.start_term(2);
        assert!(p.take(&[Ino(1)]).is_empty());
        assert!(p.grace_until.is_some_and(|t| t > Instant::now()));
    }

    #[test]
    fn a_grant_asked_before_a_break_is_not_trusted() {
        let cache = FsCache::new(true);
        let g = Granted { lease: 7, index: 1 };
        let asked = Instant::now();
        cache.granted(&g, &[Ino(1)], asked, 0);
        assert!(cache.covers(&[Ino(1)]));
        cache.broken(&Break {
            lease: 7,
            inos: vec![1],
        });
        assert!(!cache.covers(&[Ino(1)]));
        // Asked when 0 breaks had arrived; one has since.
        cache.granted(&g, &[Ino(1)], asked, 0);
        assert!(!cache.covers(&[Ino(1)]));
        cache.granted(&g, &[Ino(1)], asked, 1);
        assert!(cache.covers(&[Ino(1)]));
        // A new lease voids the old callbacks.
        cache.granted(&Granted { lease: 8, index: 2 }, &[Ino(2)], asked, 1);
        assert!(!cache.covers(&[Ino(1)]));
        assert!(cache.covers(&[Ino(2)]));
        // A late answer of the older lease adds nothing.
        cache.granted(&g, &[Ino(3)], asked, 1);
        assert!(!cache.covers(&[Ino(3)]));
        assert!(cache.covers(&[Ino(2)]));
    }
}

//! Running a node: open everything, serve, keep the cell in shape, stop cleanly.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use wos_auth::ReferenceMonitor;
use wos_membership::{Membership, MembershipConfig};
use wos_meta::{Command, Meta};
use wos_net::CellCa;
use wos_store::Store;

use crate::bootstrap::meta_config;
use crate::config::DataDir;
use crate::ctx::NodeCtx;

/// Called once with the API URL when the node serves.
pub type OnReady = Box<dyn FnOnce(&str) + Send>;

pub struct RunOptions {
    pub data: PathBuf,
    /// Overrides (and records) the listen address.
    pub listen: Option<String>,
    /// Overrides (and records) the advertised address.
    pub advertise: Option<String>,
    /// Called once the API is serving, with its URL.
    pub on_ready: Option<OnReady>,
}

/// Runs the node in `opts.data` until `shutdown` completes.
pub async fn run_node(opts: RunOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = DataDir(opts.data.clone());
    let mut cfg = dir.load_config()?;
    let mut changed = false;
    if let Some(l) = opts.listen {
        changed |= cfg.listen != l;
        cfg.listen = l;
    }
    if let Some(a) = opts.advertise {
        changed |= cfg.advertise != a;
        cfg.advertise = a;
    }
    if changed {
        dir.save_config(&cfg)?;
    }
    let tls = dir.tls()?;
    let ca = match (dir.read_secret("ca.key")?, &tls.ca_cert_pem) {
        (Some(key_pem), cert) => Some(Arc::new(CellCa {
            cert_pem: cert.clone(),
            key_pem,
        })),
        (None, _) => None,
    };
    let dir_cap_key = dir.read_secret("cap.key")?;
    let http = wos_net::cell_client(&tls, Duration::from_secs(10))?;
    let listener = TcpListener::bind(&cfg.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (in use? choose another with --listen)",
            cfg.listen
        )
    })?;
    let server_tls = tls.server_config()?;

    let store = Store::open(&dir.path("meta.redb"))?;
    let audit = wos_auth::AuditLog::open(store.clone())?;
    let leader_wait = Duration::from_millis(cfg.tuning.leader_wait_ms);
    let meta = Meta::start(
        store,
        cfg.id,
        &meta_config(&cfg.tuning, leader_wait),
        http.clone(),
    )
    .await?;
    let data_path = opts.data.clone();
    let job_count = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let jobs = Arc::new(crate::jobs::Jobs::new(
        &cfg.name,
        &opts.data,
        job_count.clone(),
    ));
    let membership = Membership::start(
        &cfg.name,
        &cfg.advertise,
        MembershipConfig::default(),
        http.clone(),
        move || {
            let mut s = crate::sensors::read(&data_path);
            s.jobs = job_count.load(std::sync::atomic::Ordering::Relaxed);
            s
        },
    );
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    let chunks = Arc::new(
        wos_blocks::ChunkStore::open(&dir.path("chunks"))
            .with_context(|| "opening the WebFS chunk store".to_string())?,
    );
    let chunk_cache = Arc::new(
        wos_blocks::ChunkCache::open(
            &dir.path("chunk-cache"),
            cfg.tuning.fs_cache_mib.saturating_mul(1 << 20),
        )
        .context("opening the chunk cache")?,
    );
    let fs_cache = crate::fs_cache::FsCache::new(cfg.tuning.fs_callbacks);
    let ctx = Arc::new(NodeCtx {
        cfg: cfg.clone(),
        data: dir,
        meta: meta.clone(),
        membership: membership.clone(),
        monitor: ReferenceMonitor,
        audit,
        tls,
        ca: std::sync::RwLock::new(ca),
        cap_key: std::sync::RwLock::new(dir_cap_key),
        cap_verifier: std::sync::OnceLock::new(),
        http,
        started,
        jobs,
        chunks,
        metrics,
        fs_cache: fs_cache.clone(),
        chunk_cache,
    });
    fs_cache.attach(&ctx);
    let app = crate::api::router(ctx.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(wos_net::serve(listener, server_tls, app, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    let renewals = tokio::spawn(crate::fs_cache::renew_leases(ctx.clone(), stop_rx.clone()));
    let upkeep = tokio::spawn(upkeep(ctx.clone(), stop_rx));
    let url = format!("https://{}", cfg.advertise);
    tracing::info!(node = %cfg.name, cell = %cfg.cell, %url, "node serving");
    if let Some(ready) = opts.on_ready {
        ready(&url);
    }

    shutdown.await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let _ = upkeep.await;
    let _ = renewals.await;
    meta.shutdown().await;
    let _ = server.await;
    Ok(())
}

/// Periodic work of a node: keep the Raft membership in line with the node
/// records (on the leader), tell gossip whom to (re)join, record a changed
/// address, and fetch the CA key after a promotion to core.
async fn upkeep(ctx: Arc<NodeCtx>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut rounds: u64 = 0;
    let mut lost_own_jobs = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        rounds += 1;
        ctx.meta.reconcile().await;
        let mut seeds: Vec<String> = ctx
            .meta
            .read(|s| s.nodes.values().map(|n| n.address.clone()).collect());
        seeds.extend(ctx.cfg.seeds.iter().cloned());
        seeds.sort();
        seeds.dedup();
        ctx.membership.set_seeds(seeds);
        if rounds.is_multiple_of(10) {
            record_address(&ctx).await;
            fetch_ca_key(&ctx).await;
        }
        if !lost_own_jobs {
            lost_own_jobs = mark_own_jobs_lost(&ctx).await;
        }
        if ctx.meta.status().is_leader {
            mark_jobs_of_dead_nodes_lost(&ctx).await;
            if rounds.is_multiple_of(6) {
                crate::fs_api::repair(&ctx).await;
            }
        }
        if rounds.is_multiple_of(120) {
            let known: std::collections::HashSet<String> =
                ctx.meta.read(|s| s.jobs.keys().cloned().collect());
            ctx.jobs.collect_garbage(&|id| known.contains(id));
            collect_chunks(&ctx).await;
        }
    }
}

/// Jobs this node ran before it restarted died with it (they are children of
/// the daemon): says so once, when the cell can be written. True when done.
async fn mark_own_jobs_lost(ctx: &NodeCtx) -> bool {
    let boot_ms = crate::now_millis() - ctx.started.elapsed().as_millis() as u64;
    let stale = ctx.meta.read(|s| {
        s.jobs
            .values()
            .any(|j| j.node == ctx.cfg.name && j.state.is_running() && j.started_ms < boot_ms)
    });
    if !stale {
        return true;
    }
    let cmd = Command::JobsLost {
        node: ctx.cfg.name.clone(),
        reason: format!("node {} restarted while the job ran", ctx.cfg.name),
        before_ms: boot_ms,
        ended_ms: crate::now_millis(),
    };
    ctx.meta.write(cmd).await.is_ok()
}

/// On the metadata leader: the running jobs of a node that membership
/// declared dead (or that left the cell) are lost.
async fn mark_jobs_of_dead_nodes_lost(ctx: &NodeCtx) {
    let members = ctx.membership.members();
    let orphaned: std::collections::BTreeSet<String> = ctx.meta.read(|s| {
        s.jobs
            .values()
            .filter(|j| j.state.is_running())
            .filter(|j| {
                !s.nodes.contains_key(&j.node)
                    || members
                        .iter()
                        .any(|m| m.name == j.node && m.state == wos_membership::MemberState::Dead)
            })
            .map(|j| j.node.clone())
            .collect()
    });
    for node in orphaned {
        let cmd = Command::JobsLost {
            reason: format!("node {node} died while the job ran"),
            node,
            before_ms: crate::now_millis(),
            ended_ms: crate::now_millis(),
        };
        if let Err(e) = ctx.meta.write(cmd).await {
            tracing::debug!("marking jobs lost: {e}");
        }
    }
}

/// How old an unreferenced chunk must be before it is collected: longer than
/// any upload takes between storing its first chunk and committing.
const CHUNK_GC_MIN_AGE: Duration = Duration::from_secs(3600);

/// Deletes this node's chunks that no file version refers to (as this
/// node's replica of the namespace says), once they are old enough that no
/// upload in progress can still commit them.
async fn collect_chunks(ctx: &NodeCtx) {
    // Judge by an up-to-date replica, never by one that is catching up.
    if ctx.meta.linearizable().await.is_err() {
        return;
    }
    let live: std::collections::BTreeSet<[u8; 32]> =
        ctx.meta.read(|s| s.fs.all_chunks().into_keys().collect());
    let store = ctx.chunks.clone();
    let report = tokio::task::spawn_blocking(move || {
        store.collect(
            &|id: &wos_blocks::ChunkId| live.contains(&id.0),
            CHUNK_GC_MIN_AGE,
        )
    })
    .await;
    match report {
        Ok(Ok(r)) if r.deleted > 0 => {
            tracing::info!(
                deleted = r.deleted,
                bytes = r.deleted_bytes,
                "collected unreferenced chunks"
            )
        }
        Ok(Err(e)) => tracing::warn!("collecting chunks: {e}"),
        _ => {}
    }
}

async fn record_address(ctx: &NodeCtx) {
    let recorded = ctx
        .meta
        .read(|s| s.nodes.get(&ctx.cfg.name).map(|n| n.address.clone()));
    if recorded.is_some_and(|a| a != ctx.cfg.advertise) {
        let cmd = Command::SetNodeAddress {
            name: ctx.cfg.name.clone(),
            address: ctx.cfg.advertise.clone(),
        };
        if let Err(e) = ctx.meta.write(cmd).await {
            tracing::debug!("recording new address: {e}");
        }
    }
}

/// A node promoted to core after joining gets the CA key from another core node.
async fn fetch_ca_key(ctx: &Arc<NodeCtx>) {
    if ctx.ca().is_some()
        || !ctx
            .meta
            .read(|s| s.nodes.get(&ctx.cfg.name).is_some_and(|n| n.core))
    {
        return;
    }
    let Ok((_key, spki)) = wos_net::generate_keypair() else {
        return;
    };
    match crate::api::fetch_ca_key(ctx, &spki).await {
        Ok((key_pem, cap_key)) => {
            let stored = ctx
                .data
                .write_secret("ca.key", &key_pem)
                .and_then(|_| ctx.data.write_secret("cap.key", &cap_key));
            if let Err(e) = stored {
                tracing::warn!("storing the CA key: {e}");
                return;
            }
            *ctx.cap_key.write().expect("cap key lock") = Some(cap_key);
            *ctx.ca.write().expect("ca lock") = Some(Arc::new(CellCa {
                cert_pem: ctx.tls.ca_cert_pem.clone(),
                key_pem,
            }));
            tracing::info!("received the cell CA key (this node is core)");
        }
        Err(e) => tracing::debug!("fetching the CA key: {}", e.message),
    }
}

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
    let membership = Membership::start(
        &cfg.name,
        &cfg.advertise,
        MembershipConfig::default(),
        http.clone(),
        move || crate::sensors::read(&data_path),
    );
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
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
        metrics,
    });
    let app = crate::api::router(ctx.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(wos_net::serve(listener, server_tls, app, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
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

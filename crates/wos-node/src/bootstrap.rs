//! Creating a cell (`wos cell init`) and joining one (`wos agent --join`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use wos_api::{CaInfo, ErrorBody, Identity, JoinRequest, JoinResponse};
use wos_auth::{JoinToken, PrincipalRecord};
use wos_meta::{Command, Meta, NodeRecord, Outcome};
use wos_net::{CellCa, PeerKind};
use wos_store::Store;

use crate::config::{DataDir, NodeConfig, Tuning};
use crate::now_secs;

pub struct InitOptions {
    pub data: PathBuf,
    pub cell: String,
    pub name: String,
    pub listen: String,
    pub advertise: String,
    /// Where the admin identity goes (default `DATA/admin.identity`).
    pub identity_out: Option<PathBuf>,
    pub token_ttl: Duration,
}

pub struct InitOutput {
    pub identity_path: PathBuf,
    pub token: String,
    pub api_url: String,
}

/// A fresh random node id (never 0).
fn new_node_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

pub(crate) fn meta_config(t: &Tuning, leader_wait: Duration) -> wos_meta::MetaConfig {
    wos_meta::MetaConfig {
        heartbeat_ms: t.raft_heartbeat_ms,
        election_min_ms: t.raft_election_min_ms,
        election_max_ms: t.raft_election_max_ms,
        snapshot_every: t.snapshot_every,
        snapshot_keep_logs: t.snapshot_keep_logs,
        leader_wait,
    }
}

/// Creates a new cell whose first (core) node lives in `opts.data`, then exits.
pub async fn init_cell(opts: InitOptions) -> anyhow::Result<InitOutput> {
    wos_net::check_name(&opts.cell).context("invalid cell name")?;
    wos_net::check_name(&opts.name).context("invalid node name")?;
    let dir = DataDir(opts.data.clone());
    if dir.exists() {
        bail!(
            "{} already holds a wos node: run it with `wos agent --data {}`, or choose another --data",
            opts.data.display(),
            opts.data.display()
        );
    }
    let identity_path = opts
        .identity_out
        .clone()
        .unwrap_or_else(|| opts.data.join("admin.identity"));
    if identity_path.exists() {
        bail!(
            "{} exists: choose another --identity-out",
            identity_path.display()
        );
    }
    dir.create()?;
    let ca = CellCa::generate(&opts.cell)?;
    let (node_key, node_spki) = wos_net::generate_keypair()?;
    let node_cert = ca.issue(&opts.cell, PeerKind::Node, &opts.name, &node_spki)?;
    let (admin_key, admin_spki) = wos_net::generate_keypair()?;
    let admin_cert = ca.issue(&opts.cell, PeerKind::User, "admin", &admin_spki)?;
    let (cap_key, cap_root) = wos_auth::cap::generate_root();
    dir.write_secret("ca.key", &ca.key_pem)?;
    dir.write_secret("cap.key", &cap_key)?;
    dir.write_public("ca.crt", &ca.cert_pem)?;
    dir.write_secret("node.key", &node_key)?;
    dir.write_public("node.crt", &node_cert)?;
    let id = new_node_id();
    let cfg = NodeConfig {
        cell: opts.cell.clone(),
        name: opts.name.clone(),
        id,
        listen: opts.listen.clone(),
        advertise: opts.advertise.clone(),
        seeds: vec![],
        tuning: Tuning::default(),
    };

    // Start the Raft group alone, record the cell, and stop again.
    let http = wos_net::cell_client(&dir.tls()?, Duration::from_secs(5))?;
    let store = Store::open(&dir.path("meta.redb"))?;
    let meta = Meta::start(
        store,
        id,
        &meta_config(&cfg.tuning, Duration::from_secs(20)),
        http,
    )
    .await?;
    meta.bootstrap(&opts.advertise).await?;
    let now = now_secs();
    let admin = PrincipalRecord {
        name: "admin".into(),
        kind: PeerKind::User,
        admin: true,
        created: now,
        public_key: hex::encode(wos_net::ed25519_public_key(&admin_spki)?),
    };
    let first_node = NodeRecord {
        name: opts.name.clone(),
        id,
        address: opts.advertise.clone(),
        joined: now,
        core: true,
        public_key: hex::encode(wos_net::ed25519_public_key(&node_spki)?),
    };
    let w = meta
        .write(Command::InitCell {
            cell: opts.cell.clone(),
            admin,
            first_node,
            cap_root,
        })
        .await?;
    if let Outcome::Rejected { reason } = w.outcome {
        bail!("initialising the cell: {reason}");
    }
    let token = JoinToken::generate(&wos_net::ca_fingerprint(&ca.cert_pem)?);
    meta.write(Command::AddToken {
        record: token.record(now + opts.token_ttl.as_secs(), "admin"),
    })
    .await?;
    meta.shutdown().await;
    dir.save_config(&cfg)?;

    let api_url = format!("https://{}", opts.advertise);
    let identity = Identity {
        cell: opts.cell.clone(),
        principal: "admin".into(),
        addresses: vec![api_url.clone()],
        ca_cert: ca.cert_pem.clone(),
        cert: admin_cert,
        key: admin_key,
    };
    identity.save_new(&identity_path)?;
    Ok(InitOutput {
        identity_path,
        token: token.to_string(),
        api_url,
    })
}

pub struct JoinOptions {
    pub data: PathBuf,
    pub join: String,
    pub token: String,
    pub name: String,
    pub listen: String,
    pub advertise: String,
    pub core: bool,
}

/// Joins the cell that `opts.join` belongs to, writing the node's state into
/// `opts.data`. The node is then run with [`crate::run_node`].
pub async fn join_cell(opts: JoinOptions) -> anyhow::Result<NodeConfig> {
    let dir = DataDir(opts.data.clone());
    if dir.exists() {
        bail!(
            "{} already holds a node that joined a cell: restart it with `wos agent --data {}` (without --join)",
            opts.data.display(),
            opts.data.display()
        );
    }
    let token = JoinToken::parse(&opts.token)?;
    let base = format!("https://{}", opts.join.trim_start_matches("https://"));

    // Learn the cell's CA, and trust it only if it is the one the token pins.
    let boot = wos_net::bootstrap_client(Duration::from_secs(10))?;
    let ca: CaInfo = boot
        .get(format!("{base}/v1/cell/ca"))
        .send()
        .await
        .with_context(|| format!("cannot reach the cell at {base}"))?
        .error_for_status()?
        .json()
        .await?;
    if wos_net::ca_fingerprint(&ca.ca_cert_pem)? != token.ca_fingerprint {
        bail!(
            "the node at {base} is not of the cell this token belongs to (CA fingerprint mismatch): check --join and --token"
        );
    }

    let (key, spki) = wos_net::generate_keypair()?;
    let client = wos_net::pinned_anonymous_client(&ca.ca_cert_pem, Duration::from_secs(30))?;
    let req = JoinRequest {
        token: opts.token.clone(),
        name: opts.name.clone(),
        address: opts.advertise.clone(),
        public_key_pem: spki,
        core: opts.core,
    };
    let resp = client
        .post(format!("{base}/v1/join"))
        .json(&req)
        .send()
        .await
        .with_context(|| format!("join request to {base} failed"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let msg = resp
            .json::<ErrorBody>()
            .await
            .map(|b| b.error)
            .unwrap_or_default();
        bail!("the cell refused to admit this node ({status}): {msg}");
    }
    let joined: JoinResponse = resp.json().await?;

    dir.create()?;
    dir.write_secret("node.key", &key)?;
    dir.write_public("node.crt", &joined.cert_pem)?;
    dir.write_public("ca.crt", &joined.ca_cert_pem)?;
    if let Some(ca_key) = &joined.ca_key_pem {
        dir.write_secret("ca.key", ca_key)?;
    }
    if let Some(cap_key) = &joined.cap_key {
        dir.write_secret("cap.key", cap_key)?;
    }
    let mut seeds: Vec<String> = joined.peers.iter().map(|(_, a)| a.clone()).collect();
    let join_addr = opts.join.trim_start_matches("https://").to_string();
    if !seeds.contains(&join_addr) {
        seeds.push(join_addr);
    }
    let cfg = NodeConfig {
        cell: joined.cell,
        name: joined.name,
        id: joined.node_id,
        listen: opts.listen,
        advertise: opts.advertise,
        seeds,
        tuning: Tuning::default(),
    };
    dir.save_config(&cfg)?;
    Ok(cfg)
}

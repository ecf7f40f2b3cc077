//! Daemon commands: `wos up`, `wos cell init`, `wos agent`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use wos_node::{InitOptions, JoinOptions, RunOptions};

use crate::cli::{AgentArgs, InitArgs, UpArgs};
use crate::client::write_client_config;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,openraft=warn,fuser=error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The host name, made into a valid node name.
fn default_node_name() -> String {
    let raw = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "node".into());
    let mut name: String = raw
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_start_matches(['-', '.'])
        .chars()
        .take(63)
        .collect();
    if name.is_empty() { "node".into() } else { name }
}

fn advertise_of(listen: &str, advertise: Option<String>) -> anyhow::Result<String> {
    if let Some(a) = advertise {
        return Ok(a);
    }
    let unspecified = listen.starts_with("0.0.0.0:") || listen.starts_with("[::]:");
    if unspecified {
        bail!(
            "--listen {listen} is a wildcard address: also pass --advertise HOST:PORT that other nodes can reach"
        );
    }
    Ok(listen.to_string())
}

pub async fn cell_init(a: InitArgs) -> anyhow::Result<()> {
    let advertise = advertise_of(&a.listen, a.advertise)?;
    let out = wos_node::init_cell(InitOptions {
        data: a.data.clone(),
        cell: a.name.clone(),
        name: a.node_name.unwrap_or_else(default_node_name),
        listen: a.listen,
        advertise,
        identity_out: a.identity_out,
        token_ttl: a.token_ttl,
    })
    .await?;
    println!("created cell {} in {}", a.name, a.data.display());
    println!("admin identity: {}", out.identity_path.display());
    println!("run the node:   wos agent --data {}", a.data.display());
    println!(
        "then:           wos --cell {} --identity {} status",
        out.api_url,
        out.identity_path.display()
    );
    println!(
        "join more nodes with this token (valid for {}):",
        humantime::format_duration(a.token_ttl)
    );
    println!("{}", out.token);
    Ok(())
}

pub async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    init_logging();
    let data = a.data.clone();
    if let (Some(join), Some(token)) = (a.join, a.token) {
        let listen = a
            .listen
            .clone()
            .context("--join needs --listen ADDR for this node")?;
        let advertise = advertise_of(&listen, a.advertise.clone())?;
        let cfg = wos_node::join_cell(JoinOptions {
            data: data.clone(),
            join,
            token,
            name: a.name.unwrap_or_else(default_node_name),
            listen,
            advertise,
            core: a.core,
        })
        .await?;
        eprintln!("joined cell {} as node {}", cfg.cell, cfg.name);
    }
    let mount = match a.mount {
        Some(dir) => {
            let identity = a
                .mount_identity
                .unwrap_or_else(|| data.join("admin.identity"));
            if !identity.exists() {
                bail!(
                    "--mount needs an identity to use the cell's files with: {} does not exist \
                     (pass --mount-identity FILE)",
                    identity.display()
                );
            }
            Some(MountAtStart { dir, identity })
        }
        None => None,
    };
    let opts = RunOptions {
        data,
        listen: a.listen,
        advertise: a.advertise,
        on_ready: None,
    };
    run_with_mount(opts, mount).await
}

/// A mount to make once the node serves (`--mount`).
struct MountAtStart {
    dir: PathBuf,
    identity: PathBuf,
}

/// Runs the node; with a mount, mounts the cell's files once the node
/// serves and unmounts them before the node stops, so that files being
/// written are uploaded while the node can still take them.
async fn run_with_mount(mut opts: RunOptions, mount: Option<MountAtStart>) -> anyhow::Result<()> {
    let Some(mount) = mount else {
        return wos_node::run_node(opts, stop_signal()).await;
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();
    let announce = opts.on_ready.take();
    opts.on_ready = Some(Box::new(move |url: &str| {
        if let Some(f) = announce {
            f(url);
        }
        let _ = ready_tx.send(url.to_string());
    }));
    let dir = mount.dir.clone();
    let mounter = tokio::spawn(async move {
        let url = ready_rx.await.ok()?;
        let client = wos_api::Identity::load(&mount.identity)
            .map_err(anyhow::Error::from)
            .and_then(|id| Ok(wos_api::Client::new(&url, &id, Duration::from_secs(30))?));
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot mount the cell's files: {e:#}");
                return None;
            }
        };
        let runtime = tokio::runtime::Handle::current();
        let opts = wos_fuse::MountOptions {
            unmount_on_signal: false,
            ..wos_fuse::MountOptions::default()
        };
        let dir = mount.dir.clone();
        tracing::info!("mounting the cell's files at {}", dir.display());
        Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = wos_fuse::mount(client, runtime, &dir, opts) {
                tracing::error!("the mount at {} failed: {e}", dir.display());
            }
        }))
    });
    let unmount_first = async move {
        stop_signal().await;
        if let Err(e) = wos_fuse::unmount(&dir) {
            tracing::warn!("unmounting {}: {e}", dir.display());
        }
    };
    let result = wos_node::run_node(opts, unmount_first).await;
    if let Ok(Some(thread)) = mounter.await {
        let _ = tokio::time::timeout(Duration::from_secs(10), thread).await;
    }
    result
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(d).join("wos"));
    }
    let home = std::env::var_os("HOME").context("no HOME: pass --data DIR")?;
    Ok(PathBuf::from(home).join(".local/share/wos"))
}

pub async fn up(a: UpArgs) -> anyhow::Result<()> {
    let data = match a.data {
        Some(d) => d,
        None => default_data_dir()?,
    };
    if a.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if a.nodes > 1 {
        if a.mount.is_some() {
            bail!("--mount works with a single-node `wos up`: mount one node with `wos mount DIR`");
        }
        return up_many(&data, &a.listen, a.nodes).await;
    }
    init_logging();
    let identity = data.join("admin.identity");
    let dir_has_node = data.join("node.toml").exists();
    if !dir_has_node {
        wos_node::init_cell(InitOptions {
            data: data.clone(),
            cell: "local".into(),
            name: default_node_name(),
            listen: a.listen.clone(),
            advertise: a.listen.clone(),
            identity_out: None,
            token_ttl: Duration::from_secs(3600),
        })
        .await?;
    }
    let config = if identity.exists() {
        Some(write_client_config(
            &format!("https://{}", a.listen),
            &identity,
        )?)
    } else {
        None
    };
    let shown_data = data.display().to_string();
    let shown_identity = identity.display().to_string();
    let opts = RunOptions {
        data,
        listen: Some(a.listen.clone()),
        advertise: Some(a.listen.clone()),
        on_ready: Some(Box::new(move |url: &str| {
            println!(
                "wos is up: {} a single-node cell",
                if dir_has_node { "resumed" } else { "created" }
            );
            println!("  API       {url}/v1/");
            println!("  data      {shown_data}");
            println!("  identity  {shown_identity}");
            if let Some(c) = config {
                println!("  config    {} (the CLI uses it by default)", c.display());
            }
            println!("In another terminal: wos status, wos node ls. Ctrl-C stops the cell.");
        })),
    };
    let mount = a.mount.map(|dir| MountAtStart {
        dir,
        identity: identity.clone(),
    });
    run_with_mount(opts, mount).await
}

/// `wos up --nodes N`: a local development cell of N separate processes on
/// 127.0.0.1, 127.0.0.2, ... (same port), each with its own data directory.
async fn up_many(data: &Path, listen: &str, n: u32) -> anyhow::Result<()> {
    let port = listen.rsplit_once(':').map(|(_, p)| p).unwrap_or("7700");
    let exe = std::env::current_exe()?;
    let identity = data.join("admin.identity");
    let addr = |i: u32| format!("127.0.0.{i}:{port}");
    let dir = |i: u32| data.join(format!("node-{i}"));
    let cores = if n >= 5 {
        5
    } else if n >= 3 {
        3
    } else {
        1
    };
    std::fs::create_dir_all(data)?;
    let mut token = None;
    if !dir(1).join("node.toml").exists() {
        let out = tokio::process::Command::new(&exe)
            .args([
                "cell",
                "init",
                "--name",
                "local",
                "--node-name",
                "node-1",
                "--listen",
                &addr(1),
            ])
            .arg("--data")
            .arg(dir(1))
            .arg("--identity-out")
            .arg(&identity)
            .output()
            .await?;
        if !out.status.success() {
            bail!("cell init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(str::to_string);
    }
    let mut children = Vec::new();
    for i in 1..=n {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("agent").arg("--data").arg(dir(i));
        if i > 1 && !dir(i).join("node.toml").exists() {
            let t = token.clone().context(
                "node-1 exists but other nodes do not: remove the data directory and retry",
            )?;
            cmd.args([
                "--listen",
                &addr(i),
                "--join",
                &addr(1),
                "--token",
                &t,
                "--name",
                &format!("node-{i}"),
            ]);
            if i <= cores {
                cmd.arg("--core");
            }
        }
        children.push(cmd.kill_on_drop(true).spawn().context("starting a node")?);
        if i == 1 {
            // Let the first node open its port before others join it.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let config = write_client_config(&format!("https://{}", addr(1)), &identity)?;
    println!("wos is up: a local cell of {n} nodes ({cores} core)");
    for i in 1..=n {
        println!(
            "  node-{i}  https://{}/v1/  data {}",
            addr(i),
            dir(i).display()
        );
    }
    println!("  identity  {}", identity.display());
    println!(
        "  config    {} (the CLI uses it by default)",
        config.display()
    );
    println!("In another terminal: wos status, wos node ls. Ctrl-C stops the cell.");
    stop_signal().await;
    for c in &mut children {
        if let Some(pid) = c.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for mut c in children {
        let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
    }
    Ok(())
}

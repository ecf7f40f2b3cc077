//! `wos fs`: the cell's files from the command line, over the HTTP gateway
//! of whichever node the client talks to.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wos_api::{Client, FsEntry, FsListing, FsOpRequest, FsckReport};

use crate::cli::Global;
use crate::client::{connect, print_json};

#[derive(Subcommand, Debug)]
pub enum FsCmd {
    /// List a directory.
    Ls {
        #[arg(default_value = "/")]
        path: String,
        #[arg(long)]
        json: bool,
    },
    /// Show one entry (id, kind, size, version, mode, owner).
    Stat {
        path: String,
        #[arg(long)]
        json: bool,
    },
    /// Print a file.
    Cat { path: String },
    /// Remove a file, a symlink or an empty directory.
    Rm { path: String },
    /// Make a directory.
    Mkdir {
        /// Make missing parents too; no error if it exists.
        #[arg(long, short = 'p')]
        parents: bool,
        path: String,
    },
    /// Move or rename (atomic).
    Mv { from: String, to: String },
    /// Upload LOCAL (`-`: stdin) to PATH; visible whole when it returns.
    Put {
        local: String,
        path: String,
        /// Only if the file is at this version (compare-and-swap; 0: only if
        /// it is new or empty).
        #[arg(long)]
        if_version: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Download PATH to LOCAL (`-`: stdout).
    Get { path: String, local: String },
    /// Set how many nodes keep each chunk of the files below a directory
    /// (`inherit`: the parent's setting).
    Replicas { path: String, replicas: String },
    /// Check that every chunk has its replica count (exit 1 if not).
    Fsck {
        #[arg(long)]
        json: bool,
    },
}

/// A length that means "no deadline" for transfers of any size.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

pub async fn run(g: &Global, cmd: FsCmd) -> anyhow::Result<()> {
    let client = connect(g)?;
    match cmd {
        FsCmd::Ls { path, json } => ls(&client, &path, json).await,
        FsCmd::Stat { path, json } => stat(&client, &path, json).await,
        FsCmd::Cat { path } => get(&client, &path, "-").await,
        FsCmd::Rm { path } => rm(&client, &path).await,
        FsCmd::Mkdir { parents, path } => {
            op(
                &client,
                &path,
                &FsOpRequest::Mkdir {
                    parents,
                    mode: None,
                },
            )
            .await
        }
        FsCmd::Mv { from, to } => {
            let to = cell_path(&client, &to).await?;
            op(&client, &from, &FsOpRequest::Rename { to }).await
        }
        FsCmd::Put {
            local,
            path,
            if_version,
            json,
        } => put(&client, &local, &path, if_version, json).await,
        FsCmd::Get { path, local } => get(&client, &path, &local).await,
        FsCmd::Replicas { path, replicas } => {
            let replicas = match replicas.as_str() {
                "inherit" => None,
                n => Some(n.parse::<u8>().map_err(|_| {
                    anyhow!("replicas {n:?}: give a number from 1 to 255, or inherit")
                })?),
            };
            op(&client, &path, &FsOpRequest::Replicas { replicas }).await
        }
        FsCmd::Fsck { json } => fsck(&client, json).await,
    }
}

/// `/a/b` or `wos://CELL/a/b` (the client's own cell) as an absolute path.
async fn cell_path(client: &Client, path: &str) -> anyhow::Result<String> {
    let Some(rest) = path.strip_prefix("wos://") else {
        if !path.starts_with('/') {
            bail!("{path:?}: give an absolute path (/dir/file) or wos://CELL/dir/file");
        }
        return Ok(path.to_string());
    };
    let (cell, p) = rest.split_once('/').unwrap_or((rest, ""));
    let status = client.status().await?;
    if cell != status.cell {
        bail!(
            "{path}: this client talks to cell {}, not {cell} (use --cell to reach another cell)",
            status.cell
        );
    }
    Ok(format!("/{p}"))
}

/// The API path of a file system path, each component percent-encoded.
async fn url(client: &Client, path: &str, query: &str) -> anyhow::Result<String> {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let path = cell_path(client, path).await?;
    let encoded: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| percent_encoding::utf8_percent_encode(c, SET).to_string())
        .collect();
    Ok(format!("/v1/fs/{}{query}", encoded.join("/")))
}

async fn ls(client: &Client, path: &str, json: bool) -> anyhow::Result<()> {
    let listing: FsListing = client.get(&url(client, path, "").await?).await?;
    if json {
        return print_json(&listing);
    }
    for e in listing.entries {
        let name = match (&e.kind[..], &e.target) {
            ("dir", _) => format!("{}/", e.name),
            ("symlink", Some(t)) => format!("{} -> {t}", e.name),
            // As `ls -F` marks them; device nodes with their numbers.
            ("fifo", _) => format!("{}|", e.name),
            ("socket", _) => format!("{}=", e.name),
            ("char" | "block", _) => format!("{} ({} {})", e.name, e.kind, device(e.rdev)),
            _ => e.name.clone(),
        };
        println!(
            "{:>4o} {:<14} {:>12} v{:<4} {}",
            e.mode, e.owner, e.size, e.version, name
        );
    }
    Ok(())
}

/// A device number as `major,minor` (Linux's encoding of `st_rdev`).
fn device(rdev: u64) -> String {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & 0xffff_f000);
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xffff_ff00);
    format!("{major},{minor}")
}

async fn stat(client: &Client, path: &str, json: bool) -> anyhow::Result<()> {
    let e: FsEntry = client.get(&url(client, path, "?stat=true").await?).await?;
    if json {
        return print_json(&e);
    }
    println!("path:    {}", e.path);
    println!("id:      {}", e.ino);
    println!("kind:    {}", e.kind);
    println!("size:    {}", e.size);
    println!("version: {}", e.version);
    println!("mode:    {:o}", e.mode);
    println!("owner:   {}", e.owner);
    println!("chunks:  {}", e.chunks);
    if let Some(t) = e.target {
        println!("target:  {t}");
    }
    if matches!(e.kind.as_str(), "char" | "block") {
        println!("device:  {}", device(e.rdev));
    }
    Ok(())
}

async fn rm(client: &Client, path: &str) -> anyhow::Result<()> {
    let resp = client
        .request(reqwest::Method::DELETE, &url(client, path, "").await?)
        .send()
        .await
        .map_err(|e| client.transport_failure(e))?;
    if !resp.status().is_success() {
        return Err(Client::failure(resp).await.into());
    }
    Ok(())
}

async fn op(client: &Client, path: &str, req: &FsOpRequest) -> anyhow::Result<()> {
    let _: FsEntry = client.post(&url(client, path, "").await?, req).await?;
    Ok(())
}

fn bar(len: Option<u64>) -> indicatif::ProgressBar {
    // Only worth drawing for transfers that take a while.
    match len {
        Some(n) if n >= 16 << 20 => {
            let b = indicatif::ProgressBar::new(n);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("template"),
            );
            b
        }
        _ => indicatif::ProgressBar::hidden(),
    }
}

async fn put(
    client: &Client,
    local: &str,
    path: &str,
    if_version: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let (reader, len): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) = if local == "-"
    {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let f = tokio::fs::File::open(local)
            .await
            .with_context(|| format!("opening {local}"))?;
        let len = f.metadata().await?.len();
        (Box::new(f), Some(len))
    };
    let progress = bar(len);
    let p2 = progress.clone();
    let stream = futures::stream::unfold(reader, move |mut r| {
        let p = p2.clone();
        async move {
            let mut buf = vec![0u8; 1 << 20];
            match r.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    p.inc(n as u64);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), r))
                }
                Err(e) => Some((Err(e), r)),
            }
        }
    });
    let mut req = client
        .request(reqwest::Method::PUT, &url(client, path, "").await?)
        .timeout(TRANSFER_TIMEOUT)
        .body(reqwest::Body::wrap_stream(stream));
    if let Some(v) = if_version {
        req = req.header("x-wos-if-version", v.to_string());
    }
    let resp = req.send().await.map_err(|e| client.transport_failure(e))?;
    progress.finish_and_clear();
    if !resp.status().is_success() {
        return Err(Client::failure(resp).await.into());
    }
    let e: FsEntry = resp.json().await?;
    if json {
        print_json(&e)?;
    } else {
        println!("{} version {} ({} bytes)", e.path, e.version, e.size);
    }
    Ok(())
}

async fn get(client: &Client, path: &str, local: &str) -> anyhow::Result<()> {
    let resp = client
        .request(reqwest::Method::GET, &url(client, path, "").await?)
        .timeout(TRANSFER_TIMEOUT)
        .send()
        .await
        .map_err(|e| client.transport_failure(e))?;
    if !resp.status().is_success() {
        return Err(Client::failure(resp).await.into());
    }
    let is_dir = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_dir {
        bail!("{path} is a directory: use `wos fs ls`");
    }
    let progress = bar(resp.content_length());
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = if local == "-" {
        Box::new(tokio::io::stdout())
    } else {
        Box::new(
            tokio::fs::File::create(local)
                .await
                .with_context(|| format!("creating {local}"))?,
        )
    };
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| anyhow!("the download broke off: {e}"))?;
        out.write_all(&chunk).await?;
        progress.inc(chunk.len() as u64);
    }
    out.flush().await?;
    progress.finish_and_clear();
    Ok(())
}

async fn fsck(client: &Client, json: bool) -> anyhow::Result<()> {
    let r: FsckReport = client.get("/v1/fsck").await?;
    if json {
        print_json(&r)?;
    } else {
        println!(
            "{} files, {} chunks, {} bytes; nodes asked: {}",
            r.files,
            r.chunks,
            r.bytes,
            r.nodes_asked.join(", ")
        );
        if !r.nodes_unreachable.is_empty() {
            println!("unreachable: {}", r.nodes_unreachable.join(", "));
        }
        for u in &r.under_replicated {
            println!("under-replicated: {u}");
        }
        for m in &r.missing {
            println!("missing: {m}");
        }
        println!("unreferenced chunks: {}", r.unreferenced);
        println!(
            "{}",
            if r.healthy() {
                "healthy"
            } else {
                "NOT healthy"
            }
        );
    }
    if !r.healthy() {
        return Err(crate::jobs::JobExit(1).into());
    }
    Ok(())
}

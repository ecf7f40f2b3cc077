//! `wos bench`: measurements anyone can rerun against a running cell.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde::Serialize;

use crate::cli::Global;
use crate::client::connect;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Metadata writes: throughput and latency of `kv put` through one node,
    /// next to a local durable write (redb commit) measured in the same run.
    Meta {
        /// Number of writes.
        #[arg(long, default_value_t = 2000)]
        writes: usize,
        /// Writes in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long)]
        json: bool,
    },
    /// Capability verification in the reference monitor: µs per request for
    /// a token delegated along a three-link chain, with and without the
    /// verified-token cache (no cell needed).
    Cap {
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
        #[arg(long)]
        json: bool,
    },
    /// Remote execution: round trip of `true` on a node, jobs per second,
    /// WebAssembly start-to-first-output, next to a local fork+exec.
    Run(crate::bench_exec::RunBench),
    /// WebFS through a mount (`wos mount DIR` first): sequential write and
    /// read, small files, stat, and `ls -l` of a large directory, each next
    /// to the same work on the local disk.
    Fs(crate::bench_fs::FsBench),
}

#[derive(Serialize)]
struct MetaBench {
    writes: usize,
    concurrency: usize,
    writes_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    local_commit_p50_ms: f64,
    local_commits_per_sec: f64,
    /// Cell write latency p50 divided by a local durable commit p50.
    p50_ratio_to_local_commit: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub async fn run(g: &Global, cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Meta {
            writes,
            concurrency,
            json,
        } => meta(g, writes, concurrency.max(1), json).await,
        BenchCmd::Cap { iterations, json } => cap(iterations.max(1), json),
        BenchCmd::Run(a) => crate::bench_exec::run(g, a).await,
        BenchCmd::Fs(a) => tokio::task::spawn_blocking(move || crate::bench_fs::run(a)).await?,
    }
}

async fn meta(g: &Global, writes: usize, concurrency: usize, json: bool) -> anyhow::Result<()> {
    let client = connect(g)?;
    let (local_p50, local_rate) = local_commits(writes.min(500))?;
    let run = format!("{:x}", std::process::id());
    let bar = indicatif::ProgressBar::new(writes as u64);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        let bar = bar.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= writes {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                client
                    .kv_put(&format!("bench/{run}/{i}"), "x", None)
                    .await?;
                lat.push(t.elapsed());
                bar.inc(1);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    lat.sort();
    let p50 = percentile(&lat, 0.5);
    let r = MetaBench {
        writes,
        concurrency,
        writes_per_sec: writes as f64 / elapsed.as_secs_f64(),
        p50_ms: p50,
        p99_ms: percentile(&lat, 0.99),
        local_commit_p50_ms: local_p50,
        local_commits_per_sec: local_rate,
        p50_ratio_to_local_commit: if local_p50 > 0.0 {
            p50 / local_p50
        } else {
            0.0
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "metadata writes through {}: {} writes, {} in flight",
            client.base(),
            r.writes,
            r.concurrency
        );
        println!(
            "  {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms",
            r.writes_per_sec, r.p50_ms, r.p99_ms
        );
        println!(
            "  baseline: local durable commit (redb) p50 {:.2} ms, {:.0} commits/s sequential",
            r.local_commit_p50_ms, r.local_commits_per_sec
        );
        println!(
            "  p50 ratio to a local commit: {:.1}x",
            r.p50_ratio_to_local_commit
        );
    }
    Ok(())
}

/// The baseline: sequential durable commits of one small value to a local redb file.
fn local_commits(n: usize) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let store = wos_store::Store::open(&dir.path().join("bench.redb"))?;
    const T: wos_store::BytesTable = wos_store::TableDefinition::new("bench");
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        store.put(T, format!("k{i}").as_bytes(), &"x")?;
        lat.push(t.elapsed());
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    Ok((percentile(&lat, 0.5), rate))
}

#[derive(Serialize)]
struct CapBench {
    iterations: u32,
    chain_links: usize,
    cached_us_per_request: f64,
    uncached_us_per_request: f64,
    /// Cached cost as a fraction of the full (uncached) verification.
    cached_ratio: f64,
}

struct Keys(std::collections::HashMap<String, String>);

impl wos_auth::cap::CapDirectory for Keys {
    fn is_revoked(&self, _: &str) -> bool {
        false
    }
    fn principal_with_key(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

fn cap(iterations: u32, json: bool) -> anyhow::Result<()> {
    use wos_auth::cap::{self, Attenuation, CapRequest, CapVerifier, MintSpec};
    let (root_priv, root_pub) = cap::generate_root();
    let mut keys = std::collections::HashMap::new();
    let mut seeds = Vec::new();
    for name in ["alice", "bob"] {
        let (key_pem, spki) = wos_net::generate_keypair()?;
        keys.insert(
            hex::encode(wos_net::ed25519_public_key(&spki)?),
            format!("user:{name}"),
        );
        seeds.push(wos_net::ed25519_seed(&key_pem)?);
    }
    let dir = Keys(keys);
    let minted = cap::mint(
        &root_priv,
        &MintSpec {
            object: "kv:".into(),
            rights: vec!["read".into()],
            ttl: Duration::from_secs(3600),
            holder: Some("user:alice".into()),
            minted_by: "user:admin".into(),
        },
    )?;
    let none = Attenuation::default();
    let t2 = cap::delegate(&minted.token, "user:bob", &seeds[0], &none)?;
    let t3 = cap::delegate(&t2.token, "user:carol", &seeds[1], &none)?;
    let req = CapRequest {
        presenter: Some("user:carol"),
        operation: "read",
        resource: "kv:a",
        node: "n1",
    };
    let cached = CapVerifier::new(&root_pub)?;
    cached
        .authorize(&t3.token, &req, &dir)
        .map_err(anyhow::Error::msg)?;
    let start = Instant::now();
    for _ in 0..iterations {
        cached
            .authorize(&t3.token, &req, &dir)
            .map_err(anyhow::Error::msg)?;
    }
    let cached_us = start.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    let start = Instant::now();
    for _ in 0..iterations {
        let fresh = CapVerifier::new(&root_pub)?;
        fresh
            .authorize(&t3.token, &req, &dir)
            .map_err(anyhow::Error::msg)?;
    }
    let uncached_us = start.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    let r = CapBench {
        iterations,
        chain_links: 3,
        cached_us_per_request: cached_us,
        uncached_us_per_request: uncached_us,
        cached_ratio: cached_us / uncached_us,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "capability check, token delegated admin -> alice -> bob -> carol, {iterations} requests:"
        );
        println!("  cached verified token: {cached_us:.1} µs per request");
        println!("  full verification:     {uncached_us:.1} µs per request (baseline)");
        println!("  cached / full:         {:.2}", r.cached_ratio);
    }
    Ok(())
}

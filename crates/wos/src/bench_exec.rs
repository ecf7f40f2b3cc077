//! `wos bench run`: remote execution figures, each next to a baseline
//! measured in the same run on the same machine (a local fork+exec).
//!
//! - round trip of `true` on a named node: from sending the start to the
//!   job's exit arriving back (one API connection, reused, as a program
//!   using the API would), p50 and p99;
//! - the same through the whole CLI (`wos run --on NODE -- true` as a new
//!   process each time), which adds process start, identity loading and a
//!   TLS handshake;
//! - jobs per second one node sustains for short jobs, several in flight;
//! - with `--wasm FILE`: start-to-first-output of a WebAssembly program on a
//!   warm node (its module already compiled there).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use base64::Engine;
use clap::Args;
use futures::StreamExt;
use serde::Serialize;
use wos_api::jobs::{FrameDecoder, FrameKind};
use wos_api::{Client, JobKind, RunRequest, encode_frame};

use crate::cli::Global;
use crate::client::connect;

#[derive(Args, Debug)]
pub struct RunBench {
    /// Node to run on.
    #[arg(long)]
    pub on: String,
    /// Round trips to time.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Jobs for the throughput figure.
    #[arg(long, default_value_t = 400)]
    pub jobs: usize,
    /// Jobs in flight for the throughput figure.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Also time N runs of the whole CLI (`wos run --on NODE -- true`).
    #[arg(long, default_value_t = 50)]
    pub cli_runs: usize,
    /// A WebAssembly program printing something at once (hello world).
    #[arg(long)]
    pub wasm: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Default)]
struct RunFigures {
    node: String,
    runs: usize,
    api_round_trip_p50_ms: f64,
    api_round_trip_p99_ms: f64,
    cli_round_trip_p50_ms: f64,
    cli_round_trip_p99_ms: f64,
    local_fork_exec_p50_ms: f64,
    local_fork_exec_p99_ms: f64,
    /// API round trip p50 / local fork+exec p50.
    ratio_to_local: f64,
    jobs_per_sec: f64,
    local_fork_exec_per_sec: f64,
    wasm_first_output_p50_ms: Option<f64>,
    wasm_first_output_p99_ms: Option<f64>,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs a job to its end over the API; returns the time to the first
/// output and to the exit.
async fn one_job(
    client: &Client,
    req: &RunRequest,
) -> anyhow::Result<(Option<Duration>, Duration)> {
    let started = Instant::now();
    let spec = serde_json::to_vec(req)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    tx.send(encode_frame(FrameKind::Spec, &spec)).await?;
    tx.send(encode_frame(FrameKind::StdinEof, b"")).await?;
    let body = reqwest::Body::wrap_stream(
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|b| Ok::<_, std::io::Error>(bytes::Bytes::from(b))),
    );
    let resp = client
        .request(reqwest::Method::POST, "/v1/jobs")
        .body(body)
        .send()
        .await
        .map_err(|e| client.transport_failure(e))?;
    if !resp.status().is_success() {
        return Err(Client::failure(resp).await.into());
    }
    let mut first = None;
    let mut stream = resp.bytes_stream();
    let mut dec = FrameDecoder::default();
    while let Some(chunk) = stream.next().await {
        dec.push(&chunk?);
        while let Some((kind, payload)) = dec.next_frame()? {
            match kind {
                FrameKind::Stdout if first.is_none() => first = Some(started.elapsed()),
                FrameKind::Exit => {
                    drop(tx);
                    return Ok((first, started.elapsed()));
                }
                FrameKind::Error => bail!("{}", String::from_utf8_lossy(&payload)),
                _ => {}
            }
        }
    }
    Err(anyhow!("the stream ended without the job's exit"))
}

fn local_fork_exec(n: usize) -> anyhow::Result<(Vec<Duration>, f64)> {
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let s = std::process::Command::new("true").status()?;
        if !s.success() {
            bail!("local `true` failed");
        }
        lat.push(t.elapsed());
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    Ok((lat, rate))
}

fn bar(n: usize, json: bool, what: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(n as u64).with_message(what.to_string());
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg:24} {bar:40} {pos}/{len}").expect("template"),
    );
    if json {
        b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    b
}

pub async fn run(g: &Global, a: RunBench) -> anyhow::Result<()> {
    let client = connect(g)?;
    let req = RunRequest {
        node: Some(a.on.clone()),
        argv: vec!["true".into()],
        attach: true,
        // Small reservations, so that admission lets the throughput run
        // keep several in flight.
        limits: wos_api::JobLimits {
            cpu_millis: Some(100),
            memory_bytes: Some(64 << 20),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut f = RunFigures {
        node: a.on.clone(),
        runs: a.runs,
        ..Default::default()
    };
    // Warm up the connection and the node.
    one_job(&client, &req).await?;
    let b = bar(a.runs, a.json, "api round trips");
    let mut lat = vec![];
    for _ in 0..a.runs {
        lat.push(one_job(&client, &req).await?.1);
        b.inc(1);
    }
    b.finish_and_clear();
    lat.sort();
    f.api_round_trip_p50_ms = pct(&lat, 0.5);
    f.api_round_trip_p99_ms = pct(&lat, 0.99);
    let (local, local_rate) = local_fork_exec(a.runs)?;
    f.local_fork_exec_p50_ms = pct(&local, 0.5);
    f.local_fork_exec_p99_ms = pct(&local, 0.99);
    f.local_fork_exec_per_sec = local_rate;
    f.ratio_to_local = f.api_round_trip_p50_ms / f.local_fork_exec_p50_ms.max(1e-9);
    f.cli_round_trip_p50_ms = 0.0;
    if a.cli_runs > 0 {
        let cli = cli_round_trips(g, &a)?;
        f.cli_round_trip_p50_ms = pct(&cli, 0.5);
        f.cli_round_trip_p99_ms = pct(&cli, 0.99);
    }
    f.jobs_per_sec = throughput(&client, &req, a.jobs, a.concurrency.max(1), a.json).await?;
    if let Some(path) = &a.wasm {
        let module = std::fs::read(path)?;
        let wreq = RunRequest {
            kind: JobKind::Wasm,
            argv: vec!["hello.wasm".into()],
            wasm_base64: Some(base64::engine::general_purpose::STANDARD.encode(module)),
            ..req.clone()
        };
        one_job(&client, &wreq).await?; // compiles and caches the module
        let mut first = vec![];
        for _ in 0..a.runs.min(100) {
            let (t, _) = one_job(&client, &wreq).await?;
            first.push(t.ok_or_else(|| anyhow!("the WebAssembly program printed nothing"))?);
        }
        first.sort();
        f.wasm_first_output_p50_ms = Some(pct(&first, 0.5));
        f.wasm_first_output_p99_ms = Some(pct(&first, 0.99));
    }
    report(&f, a.json)
}

fn cli_round_trips(g: &Global, a: &RunBench) -> anyhow::Result<Vec<Duration>> {
    let exe = std::env::current_exe()?;
    let mut lat = vec![];
    for _ in 0..a.cli_runs {
        let mut cmd = std::process::Command::new(&exe);
        if let Some(c) = &g.cell {
            cmd.arg("--cell").arg(c);
        }
        if let Some(i) = &g.identity {
            cmd.arg("--identity").arg(i);
        }
        cmd.args(["run", "--on", &a.on, "--", "true"])
            .stdin(std::process::Stdio::null());
        let t = Instant::now();
        let s = cmd.status()?;
        lat.push(t.elapsed());
        if !s.success() {
            bail!("`wos run --on {} -- true` failed", a.on);
        }
    }
    lat.sort();
    Ok(lat)
}

async fn throughput(
    client: &Client,
    req: &RunRequest,
    jobs: usize,
    concurrency: usize,
    json: bool,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let b = bar(jobs, json, "jobs");
    let started = Instant::now();
    let mut tasks = vec![];
    for _ in 0..concurrency {
        let (client, req, next, b) = (client.clone(), req.clone(), next.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < jobs {
                one_job(&client, &req).await?;
                b.inc(1);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    b.finish_and_clear();
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

fn report(f: &RunFigures, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(f)?);
        return Ok(());
    }
    println!("remote execution on node {} ({} runs):", f.node, f.runs);
    println!(
        "  `true` round trip over the API: p50 {:.2} ms, p99 {:.2} ms ({:.1}x a local fork+exec)",
        f.api_round_trip_p50_ms, f.api_round_trip_p99_ms, f.ratio_to_local
    );
    if f.cli_round_trip_p50_ms > 0.0 {
        println!(
            "  `wos run --on {} -- true` as a new process: p50 {:.2} ms, p99 {:.2} ms",
            f.node, f.cli_round_trip_p50_ms, f.cli_round_trip_p99_ms
        );
    }
    println!(
        "  baseline: local fork+exec of `true`: p50 {:.3} ms, p99 {:.3} ms, {:.0}/s",
        f.local_fork_exec_p50_ms, f.local_fork_exec_p99_ms, f.local_fork_exec_per_sec
    );
    println!(
        "  short jobs sustained by one node: {:.0} jobs/s",
        f.jobs_per_sec
    );
    if let (Some(p50), Some(p99)) = (f.wasm_first_output_p50_ms, f.wasm_first_output_p99_ms) {
        println!(
            "  WebAssembly hello, start to first output (warm): p50 {p50:.2} ms, p99 {p99:.2} ms"
        );
    }
    Ok(())
}

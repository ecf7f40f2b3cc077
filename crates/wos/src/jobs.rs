//! `wos run`, `wos ps`, `wos logs`, `wos kill`, `wos wait`.
//!
//! `wos run` exits with the job's exit code, or 128 + N when signal N ended
//! it (as a shell reports it), or 125 when wos itself failed (the job could
//! not be started, or contact with its node was lost): the convention of
//! `docker run`, so that a script can tell the two apart.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use clap::Args;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use wos_api::jobs::{FrameDecoder, FrameKind, SILENCE_LIMIT_MS};
use wos_api::{
    ApiFailure, Client, JobInfo, JobKind, JobLimits, JobState, RunRequest, SignalRequest,
    encode_frame,
};

use crate::cli::Global;
use crate::client::{connect, print_json};

/// The exit code of `wos run` when wos itself failed.
pub const RUN_FAILED: u8 = 125;

/// Ends the process with `code`, after what was printed is flushed. Not an
/// error message: the job's own exit code.
#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
pub struct JobExit(pub u8);

/// A failure of `wos run`/`wos wait` itself (exit code 125).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunFailure(pub String);

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Node to run on (default: the least loaded node that admits the job).
    #[arg(long)]
    pub on: Option<String>,
    /// CPU, in cores (0.5 = half a core).
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Memory limit (e.g. 64M, 2G).
    #[arg(long)]
    pub mem: Option<String>,
    /// Most processes the job may have at once.
    #[arg(long)]
    pub pids: Option<u64>,
    /// CPU time the job may use in all, seconds.
    #[arg(long)]
    pub cpu_seconds: Option<u64>,
    /// Environment variable for the job (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside the sandbox (default /tmp).
    #[arg(long)]
    pub dir: Option<String>,
    /// Network: none (default) or host.
    #[arg(long)]
    pub net: Option<String>,
    /// Print the job id and return at once; stdin is empty.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// A key that makes a retried start never start the job twice
    /// (default: a fresh one per invocation).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// With --detach: print the job record as JSON.
    #[arg(long)]
    pub json: bool,
    /// Program and arguments; a local `.wasm` file runs as WebAssembly.
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM")]
    pub argv: Vec<String>,
}

/// Builds the request from the command line.
fn request(a: &RunArgs) -> anyhow::Result<RunRequest> {
    let mut env = vec![];
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--env {kv:?}: use NAME=VALUE"))?;
        env.push((k.to_string(), v.to_string()));
    }
    let memory_bytes = match &a.mem {
        Some(m) => Some(wos_exec::policy::parse_size(m).map_err(|e| anyhow!("--mem: {e}"))?),
        None => None,
    };
    let cpu_millis = match a.cpu {
        Some(c) if !(c > 0.0 && c <= 1024.0) => bail!("--cpu {c}: give a number of cores above 0"),
        Some(c) => Some((c * 1000.0).round().max(1.0) as u32),
        None => None,
    };
    let mut req = RunRequest {
        node: a.on.clone(),
        argv: a.argv.clone(),
        env,
        dir: a.dir.clone(),
        limits: JobLimits {
            cpu_millis,
            memory_bytes,
            pids: a.pids,
            cpu_seconds: a.cpu_seconds,
        },
        net: a.net.clone(),
        attach: !a.detach,
        idempotency_key: Some(
            a.idempotency_key
                .clone()
                .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>())),
        ),
        kind: JobKind::Native,
        wasm_base64: None,
    };
    if let Some(module) = wasm_module(&a.argv[0])? {
        req.kind = JobKind::Wasm;
        req.wasm_base64 = Some(base64::engine::general_purpose::STANDARD.encode(module));
        req.argv[0] = std::path::Path::new(&a.argv[0])
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| a.argv[0].clone());
    }
    Ok(req)
}

/// The bytes of `program` when it is a local WebAssembly module (by content).
fn wasm_module(program: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let path = std::path::Path::new(program);
    if !path.is_file() {
        return Ok(None);
    }
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {program}"))?;
    use std::io::Read;
    if f.read_exact(&mut magic).is_err() || &magic != b"\0asm" {
        return Ok(None);
    }
    Ok(Some(
        std::fs::read(path).with_context(|| format!("reading {program}"))?,
    ))
}

pub async fn run(g: &Global, a: RunArgs) -> anyhow::Result<()> {
    let req = request(&a)?;
    let client = connect(g)?;
    let spec = serde_json::to_vec(&req)?;
    // A start whose answer was lost is retried with the same idempotency
    // key: the cell starts the job at most once. Nothing of stdin has been
    // read before an answer arrives, so a retry loses nothing.
    let mut attempt = 0;
    let (response, input) = loop {
        attempt += 1;
        match open(&client, &spec).await {
            Ok(ok) => break ok,
            Err(e) if attempt < 3 && e.status.is_none() => {
                tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
            }
            Err(e) => return Err(RunFailure(e.message).into()),
        }
    };
    if !req.attach {
        let info: JobInfo = response
            .json()
            .await
            .map_err(|e| RunFailure(format!("reading the answer: {e}")))?;
        if a.json {
            print_json(&info)?;
        } else {
            println!("{}", info.id);
        }
        return Ok(());
    }
    tokio::spawn(forward_stdin(input.clone()));
    tokio::spawn(forward_signals(input.clone()));
    let code = print_stream(response, Some(input)).await?;
    Err(JobExit(code).into())
}

type Input = mpsc::Sender<Vec<u8>>;

/// Sends the job's description and returns the answer and the channel for
/// what follows (stdin, signals).
async fn open(client: &Client, spec: &[u8]) -> Result<(reqwest::Response, Input), ApiFailure> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    tx.send(encode_frame(FrameKind::Spec, spec))
        .await
        .expect("receiver alive");
    let body = reqwest::Body::wrap_stream(
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|b| Ok::<_, std::io::Error>(bytes::Bytes::from(b))),
    );
    let resp = client
        .request(reqwest::Method::POST, "/v1/jobs")
        .timeout(Duration::from_secs(365 * 24 * 3600))
        .body(body)
        .send()
        .await
        .map_err(|e| client.transport_failure(e))?;
    if !resp.status().is_success() {
        return Err(Client::failure(resp).await);
    }
    Ok((resp, tx))
}

async fn forward_stdin(input: Input) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = input.send(encode_frame(FrameKind::StdinEof, b"")).await;
                return;
            }
            Ok(n) => {
                if input
                    .send(encode_frame(FrameKind::Stdin, &buf[..n]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Ctrl-C, SIGTERM, SIGHUP and SIGQUIT go to the job, not to `wos run`.
async fn forward_signals(input: Input) {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        (SignalKind::interrupt(), "INT"),
        (SignalKind::terminate(), "TERM"),
        (SignalKind::hangup(), "HUP"),
        (SignalKind::quit(), "QUIT"),
    ];
    let (tx, mut rx) = mpsc::channel::<&'static str>(8);
    for (kind, name) in kinds {
        let Ok(mut s) = signal(kind) else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(name).await.is_err() {
                    return;
                }
            }
        });
    }
    while let Some(name) = rx.recv().await {
        if input
            .send(encode_frame(FrameKind::Signal, name.as_bytes()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Prints a job's frames to stdout and stderr until it ends; returns the
/// exit code for `wos run`. `input` is kept open (the request stays
/// open) until the end.
async fn print_stream(response: reqwest::Response, input: Option<Input>) -> anyhow::Result<u8> {
    let mut stream = response.bytes_stream();
    let mut decoder = FrameDecoder::default();
    let silence = Duration::from_millis(SILENCE_LIMIT_MS + 2000);
    let mut job_id = String::from("?");
    loop {
        let chunk = match tokio::time::timeout(silence, stream.next()).await {
            Ok(Some(Ok(c))) => c,
            Ok(Some(Err(e))) => {
                return Err(RunFailure(format!(
                    "lost contact with the cell: {e}; job {job_id} is presumed lost (see `wos ps --all`)"
                ))
                .into());
            }
            Ok(None) => {
                return Err(RunFailure(format!(
                    "the stream ended before job {job_id} did; see `wos ps --all`"
                ))
                .into());
            }
            Err(_) => {
                return Err(RunFailure(format!(
                    "lost contact with the cell: no word for {} s; job {job_id} is presumed lost",
                    silence.as_secs()
                ))
                .into());
            }
        };
        decoder.push(&chunk);
        while let Some((kind, payload)) = decoder.next_frame()? {
            match kind {
                FrameKind::Stdout => write_all(&mut std::io::stdout(), &payload),
                FrameKind::Stderr => write_all(&mut std::io::stderr(), &payload),
                FrameKind::Started => {
                    if let Ok(info) = serde_json::from_slice::<JobInfo>(&payload) {
                        job_id = info.id;
                    }
                }
                FrameKind::Exit => {
                    drop(input);
                    let info: JobInfo = serde_json::from_slice(&payload)?;
                    return exit_code(&info);
                }
                FrameKind::Error => {
                    return Err(RunFailure(String::from_utf8_lossy(&payload).to_string()).into());
                }
                _ => {}
            }
        }
    }
}

fn write_all(out: &mut dyn Write, bytes: &[u8]) {
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// The exit code that stands for how a job ended.
fn exit_code(info: &JobInfo) -> anyhow::Result<u8> {
    match &info.state {
        JobState::Exited { code } => Ok((*code).clamp(0, 255) as u8),
        JobState::Signaled { signal, reason } => {
            if !reason.is_empty() {
                eprintln!("wos: job {} killed by SIG{signal}: {reason}", info.id);
            }
            let n = crate::jobs::signal_number(signal).unwrap_or(0);
            Ok((128 + n).clamp(0, 255) as u8)
        }
        JobState::Failed { reason } => {
            Err(RunFailure(format!("job {} failed: {reason}", info.id)).into())
        }
        JobState::Lost { reason } => {
            Err(RunFailure(format!("job {} was lost: {reason}", info.id)).into())
        }
        JobState::Running => Err(RunFailure(format!("job {} is still running", info.id)).into()),
    }
}

fn signal_number(name: &str) -> Option<i32> {
    nix::sys::signal::Signal::iterator()
        .find(|s| s.as_str().trim_start_matches("SIG") == name)
        .map(|s| s as i32)
}

pub async fn ps(g: &Global, all: bool, json: bool) -> anyhow::Result<()> {
    let jobs: Vec<JobInfo> = connect(g)?.get(&format!("/v1/jobs?all={all}")).await?;
    if json {
        return print_json(&jobs);
    }
    println!(
        "{:<14} {:<10} {:<14} {:<34} {:>8}  COMMAND",
        "ID", "NODE", "OWNER", "STATE", "AGE"
    );
    let now = now_ms();
    for j in jobs {
        let age = humantime::format_duration(Duration::from_secs(
            now.saturating_sub(j.started_ms) / 1000,
        ));
        let mut state = j.state.describe();
        state.truncate(34);
        println!(
            "{:<14} {:<10} {:<14} {:<34} {:>8}  {}",
            j.id,
            j.node,
            j.owner,
            state,
            age.to_string(),
            j.argv.join(" ")
        );
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub async fn logs(g: &Global, id: &str, follow: bool) -> anyhow::Result<()> {
    let client = connect(g)?;
    let resp = client
        .request(
            reqwest::Method::GET,
            &format!("/v1/jobs/{id}/logs?follow={follow}"),
        )
        .timeout(Duration::from_secs(365 * 24 * 3600))
        .send()
        .await
        .map_err(|e| client.transport_failure(e))?;
    if !resp.status().is_success() {
        return Err(Client::failure(resp).await.into());
    }
    if follow {
        print_stream(resp, None).await?;
        return Ok(());
    }
    let bytes = resp.bytes().await?;
    let mut d = FrameDecoder::default();
    d.push(&bytes);
    while let Some((kind, payload)) = d.next_frame()? {
        match kind {
            FrameKind::Stdout => write_all(&mut std::io::stdout(), &payload),
            FrameKind::Stderr => write_all(&mut std::io::stderr(), &payload),
            _ => {}
        }
    }
    Ok(())
}

pub async fn kill(g: &Global, id: &str, signal: &str) -> anyhow::Result<()> {
    let _: JobInfo = connect(g)?
        .post(
            &format!("/v1/jobs/{id}/signal"),
            &SignalRequest {
                signal: signal.to_string(),
            },
        )
        .await?;
    Ok(())
}

pub async fn wait(g: &Global, id: &str) -> anyhow::Result<()> {
    let client = connect(g)?;
    let started = Instant::now();
    loop {
        let info: JobInfo = client.get(&format!("/v1/jobs/{id}?wait=10")).await?;
        if !info.state.is_running() {
            let code = exit_code(&info)?;
            return Err(JobExit(code).into());
        }
        tracing::debug!("still waiting after {:?}", started.elapsed());
    }
}

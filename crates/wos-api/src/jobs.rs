//! Jobs: what `wos run` asks for, what the cell records about a job, and the
//! framing of the byte streams that carry a job's stdin, stdout, stderr and
//! signals over one HTTP/2 request.
//!
//! A frame is one type byte, a big-endian `u32` length, then that many bytes
//! of payload. The request body of `POST /v1/jobs` is a [`FrameKind::Spec`]
//! frame (JSON [`RunRequest`]) followed by stdin and signal frames; the
//! response body is a [`FrameKind::Started`] frame (JSON [`JobInfo`]),
//! output frames, heartbeats, and finally [`FrameKind::Exit`] (JSON
//! [`JobInfo`]) or [`FrameKind::Error`] (a UTF-8 message).

use serde::{Deserialize, Serialize};

/// Largest payload of one frame.
pub const MAX_FRAME: usize = 4 << 20;
/// How often an attached stream carries a heartbeat when nothing else flows.
pub const HEARTBEAT_MS: u64 = 1000;
/// Silence after which a client gives up on an attached stream.
pub const SILENCE_LIMIT_MS: u64 = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Request: the JSON [`RunRequest`]; always the first frame.
    Spec = 1,
    /// Request: bytes for the job's stdin.
    Stdin = 2,
    /// Request: the job's stdin is at its end.
    StdinEof = 3,
    /// Request: deliver a signal, by name (`INT`, `TERM`, ...).
    Signal = 4,
    /// Response: the job started (JSON [`JobInfo`]).
    Started = 10,
    Stdout = 11,
    Stderr = 12,
    /// Response: the job ended (JSON [`JobInfo`] with its final state).
    Exit = 13,
    /// Response: the stream cannot go on (UTF-8 message).
    Error = 14,
    /// Response: nothing to say, but the node is alive.
    Heartbeat = 15,
}

impl FrameKind {
    pub fn from_byte(b: u8) -> Option<FrameKind> {
        use FrameKind::*;
        Some(match b {
            1 => Spec,
            2 => Stdin,
            3 => StdinEof,
            4 => Signal,
            10 => Started,
            11 => Stdout,
            12 => Stderr,
            13 => Exit,
            14 => Error,
            15 => Heartbeat,
            _ => return None,
        })
    }
}

/// Encodes one frame.
pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame type {0}: the peer speaks another version of the job protocol")]
    UnknownKind(u8),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
}

/// Splits a byte stream into frames, whatever the chunking.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<(FrameKind, Vec<u8>)>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let kind = FrameKind::from_byte(self.buf[0]).ok_or(FrameError::UnknownKind(self.buf[0]))?;
        let len = u32::from_be_bytes(self.buf[1..5].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }

    /// Bytes received that do not yet form a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Resource limits of a job. Absent: the node's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLimits {
    /// CPU in thousandths of a core (500 = half a core).
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// CPU time the job may use in all, seconds.
    pub cpu_seconds: Option<u64>,
}

/// Native program or WebAssembly module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    #[default]
    Native,
    Wasm,
}

/// `POST /v1/jobs`: what to run, where, with which limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Node to run on; absent: the cell picks the least loaded node that
    /// admits the job.
    #[serde(default)]
    pub node: Option<String>,
    /// Program and arguments (for a WebAssembly job: the module's name, then
    /// its arguments).
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox (default `/tmp`).
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default)]
    pub limits: JobLimits,
    /// `none` (default) or `host`.
    #[serde(default)]
    pub net: Option<String>,
    /// Stream stdin/stdout/stderr over this request; false: answer with the
    /// job's record at once and run with stdin empty (`--detach`).
    #[serde(default)]
    pub attach: bool,
    /// A retried start with the same key (per principal) never starts the
    /// job twice.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub kind: JobKind,
    /// A WebAssembly module's bytes, base64 (standard alphabet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_base64: Option<String>,
}

/// Where a job is in its life.
///
/// Externally tagged (`"running"`, `{"exited": {"code": 3}}`) because the
/// cell's metadata stores it with postcard, which cannot decode tagged or
/// flattened forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    /// The program exited with this code.
    Exited {
        code: i32,
    },
    /// The program was killed by a signal; `reason` says why when the cell
    /// knows ("memory limit exceeded", "CPU time limit exceeded", "sent by
    /// user:alice").
    Signaled {
        signal: String,
        reason: String,
    },
    /// The job never started (the program could not be run).
    Failed {
        reason: String,
    },
    /// The executing node died or restarted while the job ran.
    Lost {
        reason: String,
    },
}

impl JobState {
    pub fn is_running(&self) -> bool {
        matches!(self, JobState::Running)
    }

    /// A short word for listings.
    pub fn word(&self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Exited { .. } => "exited",
            JobState::Signaled { .. } => "signaled",
            JobState::Failed { .. } => "failed",
            JobState::Lost { .. } => "lost",
        }
    }

    /// A one-line description, e.g. `exited 3`, `killed by SIGKILL: memory
    /// limit exceeded`.
    pub fn describe(&self) -> String {
        match self {
            JobState::Running => "running".into(),
            JobState::Exited { code } => format!("exited {code}"),
            JobState::Signaled { signal, reason } if reason.is_empty() => {
                format!("killed by SIG{signal}")
            }
            JobState::Signaled { signal, reason } => format!("killed by SIG{signal}: {reason}"),
            JobState::Failed { reason } => format!("failed: {reason}"),
            JobState::Lost { reason } => format!("lost: {reason}"),
        }
    }
}

/// What a job used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUsage {
    pub cpu_millis: u64,
    pub peak_memory_bytes: u64,
}

/// A job as the cell records it (`GET /v1/jobs/ID`, `wos ps --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: String,
    /// Principal id of who started it (`user:alice`).
    pub owner: String,
    pub node: String,
    pub kind: JobKind,
    pub argv: Vec<String>,
    /// Limits as applied (the node's defaults filled in).
    pub limits: JobLimits,
    pub started_ms: u64,
    #[serde(default)]
    pub ended_ms: Option<u64>,
    pub state: JobState,
    #[serde(default)]
    pub usage: Option<JobUsage>,
}

/// `POST /v1/jobs/ID/signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// Signal name without `SIG` (`TERM`, `KILL`, `INT`, ...).
    pub signal: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_chunking() {
        let mut wire = encode_frame(FrameKind::Stdout, b"hello");
        wire.extend(encode_frame(FrameKind::Heartbeat, b""));
        wire.extend(encode_frame(FrameKind::Stderr, &[7u8; 1000]));
        for chunk in [1, 2, 5, 7, 4096] {
            let mut d = FrameDecoder::default();
            let mut got = vec![];
            for c in wire.chunks(chunk) {
                d.push(c);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 3);
            assert_eq!(got[0], (FrameKind::Stdout, b"hello".to_vec()));
            assert_eq!(got[1].0, FrameKind::Heartbeat);
            assert_eq!(got[2].1.len(), 1000);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut d = FrameDecoder::default();
        d.push(&[99, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::UnknownKind(99)));
        let mut d = FrameDecoder::default();
        d.push(&[11, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn job_state_in_json() {
        let info = JobInfo {
            id: "j1".into(),
            owner: "user:a".into(),
            node: "n".into(),
            kind: JobKind::Native,
            argv: vec!["true".into()],
            limits: JobLimits::default(),
            started_ms: 1,
            ended_ms: Some(2),
            state: JobState::Exited { code: 3 },
            usage: None,
        };
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(v["state"]["exited"]["code"], 3);
        let back: JobInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back, info);
        let running = JobInfo {
            state: JobState::Running,
            ..info
        };
        assert_eq!(serde_json::to_value(&running).unwrap()["state"], "running");
    }
}

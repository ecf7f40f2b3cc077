//! The CPU time limit (`--cpu-seconds`), by epoch interruption.
//!
//! A native job gets RLIMIT_CPU from the node; a wasm job cannot, because the kernel would kill the
//! runner without a word. Instead a ticker thread bumps the engine's epoch every [`TICK`]; compiled code
//! notices at its next function entry or loop header and calls the store's deadline callback, which
//! reads this process's CPU time and stops the program past the budget. The runner then reports it and
//! dies by SIGXCPU, so the node sees what it sees for a native job.

use std::fmt;
use std::thread;
use std::time::Duration;

use wasmtime::error::Context as _;
use wasmtime::{Engine, Result, Store, UpdateDeadline};

/// How often the epoch advances: the granularity (and the overhead) of the CPU check.
pub const TICK: Duration = Duration::from_millis(10);

/// The error the deadline callback returns once the CPU budget is spent.
#[derive(Debug)]
pub struct CpuLimitExceeded;

impl fmt::Display for CpuLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CPU time limit exceeded")
    }
}

impl std::error::Error for CpuLimitExceeded {}

/// Arms the store's epoch deadline. With a budget, a ticker thread drives the epoch and the callback
/// compares the process's CPU time (which includes compiling a plain `.wasm`, as RLIMIT_CPU would
/// include a native program's start) with it. Without one no ticker runs, so the deadline is never
/// reached, and the callback would only let the program continue.
pub fn arm<T: 'static>(
    store: &mut Store<T>,
    engine: &Engine,
    budget: Option<Duration>,
) -> Result<()> {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| match budget {
        Some(budget) if process_cpu_time() >= budget => Err(CpuLimitExceeded.into()),
        _ => Ok(UpdateDeadline::Continue(1)),
    });
    if budget.is_some() {
        // Without the ticker the limit would silently not apply, so failing to start it is an error.
        start_ticker(engine.clone()).context("cannot start the CPU time limit thread")?;
    }
    Ok(())
}

/// Bumps the epoch every [`TICK`] until the process exits (it is never joined: exit ends it).
fn start_ticker(engine: Engine) -> std::io::Result<()> {
    thread::Builder::new()
        .name("wos-wasm-epoch".into())
        .spawn(move || {
            loop {
                thread::sleep(TICK);
                engine.increment_epoch();
            }
        })?;
    Ok(())
}

/// CPU time used so far by all threads of this process (user + system).
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        // Cannot happen on Linux for this clock; treat it as no time used rather than killing the job.
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = process_cpu_time();
        let mut x = 0u64;
        while process_cpu_time() < before + Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process_cpu_time() >= before + Duration::from_millis(20));
    }
}

//! `wos bench fs`: file system figures through a mounted WebFS directory
//! (`wos mount`), each next to the same work on a local directory in the
//! same run: sequential write and read of one large file, small files
//! (create + write 4 KiB + close) from several threads, `stat` of a cached
//! entry, and `ls -l` of a large directory.
//!
//! It only uses the file system calls any program uses, so it measures
//! what programs get. Reads of the local file are from the disk: its pages
//! are dropped first (`posix_fadvise(DONTNEED)` after an fsync).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

#[derive(Args, Debug)]
pub struct FsBench {
    /// A directory on the mount to work in (a fresh subdirectory is made
    /// and removed).
    #[arg(long)]
    pub dir: PathBuf,
    /// A directory on the local disk for the baseline (default: the
    /// temporary directory).
    #[arg(long)]
    pub local: Option<PathBuf>,
    /// Size of the sequential file, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub mib: u64,
    /// Small files to create (each side).
    #[arg(long, default_value_t = 2000)]
    pub files: usize,
    /// Threads creating small files.
    #[arg(long, default_value_t = 16)]
    pub threads: usize,
    /// Entries of the directory listed (0 skips the figure).
    #[arg(long, default_value_t = 10_000)]
    pub entries: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Default)]
struct FsFigures {
    file_mib: u64,
    write_mb_s: f64,
    local_write_mb_s: f64,
    write_ratio: f64,
    read_mb_s: f64,
    local_read_mb_s: f64,
    read_ratio: f64,
    small_files: usize,
    threads: usize,
    small_files_per_s: f64,
    local_small_files_fsync_per_s: f64,
    local_small_files_per_s: f64,
    stat_cached_us: f64,
    local_stat_us: f64,
    ls_entries: usize,
    ls_cold_ms: f64,
    ls_warm_ms: f64,
    local_ls_ms: f64,
}

/// Removes the bench's directories however the run ends.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = fs::remove_dir_all(d);
        }
    }
}

pub fn run(a: FsBench) -> anyhow::Result<()> {
    if !a.dir.is_dir() {
        bail!(
            "{} is not a directory (give one on a `wos mount`)",
            a.dir.display()
        );
    }
    let tag = format!("wos-bench-{:x}", std::process::id());
    let remote = a.dir.join(&tag);
    let local = a
        .local
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(&tag);
    fs::create_dir(&remote).with_context(|| format!("creating {}", remote.display()))?;
    fs::create_dir(&local).with_context(|| format!("creating {}", local.display()))?;
    let _scratch = Scratch(vec![remote.clone(), local.clone()]);
    let mut f = FsFigures {
        file_mib: a.mib,
        small_files: a.files,
        threads: a.threads.max(1),
        ls_entries: a.entries,
        ..Default::default()
    };
    let say = |what: &str| {
        if !a.json {
            eprintln!("{what}");
        }
    };

    say("sequential write and read ...");
    let bytes = a.mib << 20;
    f.local_write_mb_s = mb_s(bytes, write_file(&local.join("big"), bytes)?);
    f.write_mb_s = mb_s(bytes, write_file(&remote.join("big"), bytes)?);
    f.local_read_mb_s = mb_s(bytes, read_file(&local.join("big"), true)?);
    f.read_mb_s = mb_s(bytes, read_file(&remote.join("big"), false)?);
    fs::remove_file(local.join("big"))?;
    fs::remove_file(remote.join("big"))?;
    f.write_ratio = f.write_mb_s / f.local_write_mb_s;
    f.read_ratio = f.read_mb_s / f.local_read_mb_s;

    say("small files ...");
    f.local_small_files_per_s = small_files(&local.join("s0"), a.files, f.threads, false)?;
    f.local_small_files_fsync_per_s = small_files(&local.join("s1"), a.files, f.threads, true)?;
    f.small_files_per_s = small_files(&remote.join("s"), a.files, f.threads, false)?;

    say("stat ...");
    f.local_stat_us = stat_us(&local.join("s0/f-0"))?;
    f.stat_cached_us = stat_us(&remote.join("s/f-0"))?;

    if a.entries > 0 {
        say("a large directory ...");
        let dir = remote.join("many");
        let ldir = local.join("many");
        small_files(&dir, a.entries, f.threads, false)?;
        small_files(&ldir, a.entries, f.threads, false)?;
        // Past the mount's one-second attribute and listing cache.
        std::thread::sleep(Duration::from_millis(1200));
        f.ls_cold_ms = ls_l(&dir, a.entries)?;
        f.ls_warm_ms = ls_l(&dir, a.entries)?;
        f.local_ls_ms = ls_l(&ldir, a.entries)?;
    }
    print(&f, a.json)
}

fn mb_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
}

/// Writes `bytes` of pseudo-random data (1 MiB writes), fsyncs and closes:
/// on a mount, close is when the file becomes the new version.
fn write_file(path: &Path, bytes: u64) -> anyhow::Result<Duration> {
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let started = Instant::now();
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut left = bytes;
    while left > 0 {
        // Different bytes in every block: chunks must not deduplicate.
        for word in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    drop(file);
    Ok(started.elapsed())
}

/// Reads a whole file in 1 MiB reads; `from_disk`: drop its cached pages
/// first.
fn read_file(path: &Path, from_disk: bool) -> anyhow::Result<Duration> {
    let mut file = File::open(path)?;
    if from_disk {
        // SAFETY: a valid descriptor; advice only.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    while file.read(&mut buf)? > 0 {}
    Ok(started.elapsed())
}

/// Creates `n` files of 4 KiB in `dir` from `threads` threads; files per
/// second.
fn small_files(dir: &Path, n: usize, threads: usize, fsync: bool) -> anyhow::Result<f64> {
    fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (dir, next) = (dir.to_path_buf(), next.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                let block = [b'x'; 4096];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok(());
                    }
                    let mut f = File::create(dir.join(format!("f-{i}")))?;
                    f.write_all(&block)?;
                    if fsync {
                        f.sync_all()?;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Microseconds per `stat` of the same path (after one to warm it).
fn stat_us(path: &Path) -> anyhow::Result<f64> {
    fs::metadata(path)?;
    let n = 10_000;
    let started = Instant::now();
    for _ in 0..n {
        fs::metadata(path)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// Milliseconds for `ls -l`: list the directory and stat every entry.
fn ls_l(dir: &Path, expect: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut n = 0;
    for e in fs::read_dir(dir)? {
        fs::symlink_metadata(e?.path())?;
        n += 1;
    }
    if n != expect {
        bail!("{} lists {n} entries, not {expect}", dir.display());
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

fn print(f: &FsFigures, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(f)?);
        return Ok(());
    }
    println!("| figure | mount | local disk | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| sequential write, {} MiB (fsync + close) | {:.0} MB/s | {:.0} MB/s | {:.0} % |",
        f.file_mib,
        f.write_mb_s,
        f.local_write_mb_s,
        f.write_ratio * 100.0
    );
    println!(
        "| sequential read (local: pages dropped) | {:.0} MB/s | {:.0} MB/s | {:.0} % |",
        f.read_mb_s,
        f.local_read_mb_s,
        f.read_ratio * 100.0
    );
    println!(
        "| create + write 4 KiB + close, {} threads | {:.0}/s | {:.0}/s ({:.0}/s with fsync) | |",
        f.threads, f.small_files_per_s, f.local_small_files_per_s, f.local_small_files_fsync_per_s
    );
    println!(
        "| stat of a cached entry | {:.1} µs | {:.1} µs | |",
        f.stat_cached_us, f.local_stat_us
    );
    if f.ls_entries > 0 {
        println!(
            "| ls -l of {} entries | {:.0} ms cold, {:.0} ms warm | {:.0} ms | |",
            f.ls_entries, f.ls_cold_ms, f.ls_warm_ms, f.local_ls_ms
        );
    }
    Ok(())
}

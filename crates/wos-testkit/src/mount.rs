//! `wos mount` processes for tests that use a cell's files through FUSE.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::{Cell, wait_for};

/// Whether this process may mount with FUSE (root, and `/dev/fuse`).
pub fn can_mount() -> bool {
    nix::unistd::geteuid().is_root() && Path::new("/dev/fuse").exists()
}

/// Whether `dir` is a mount point now.
pub fn mounted(dir: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let dir = dir.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(dir.as_ref()))
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    wait_for(limit, || child.try_wait().ok().flatten())
}

/// A `wos mount` process and its mount point. Dropping it unmounts and stops
/// the process even when the test failed: a FUSE mount left behind breaks
/// whatever touches it later.
pub struct Mount {
    dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Mount {
    /// Mounts the cell's files through node `via` as the cell's admin.
    pub fn start(cell: &Cell, via: usize) -> Mount {
        Mount::start_as(cell, via, &cell.admin, &[])
    }

    /// Mounts through node `via` with `identity`; `extra` are more
    /// arguments of `wos mount` (such as `--allow-other`).
    pub fn start_as(cell: &Cell, via: usize, identity: &Path, extra: &[&str]) -> Mount {
        let dir = tempfile::Builder::new()
            .prefix("wos-mnt-")
            .tempdir()
            .expect("a mount point");
        let path = dir.path().canonicalize().expect("canonical mount point");
        let log = cell.dir.path().join(format!("mount-{via}.log"));
        let out = fs::File::create(&log).expect("mount log");
        let mut args = vec!["mount"];
        args.extend_from_slice(extra);
        let mountpoint = path.to_str().expect("UTF-8 temporary path");
        args.push(mountpoint);
        let child = cell
            .wos_command(via, identity, &args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("mount log"))
            .stderr(out)
            .spawn()
            .expect("wos mount starts");
        let m = Mount {
            dir: Some(dir),
            path,
            child: Some(child),
            log,
        };
        let up = wait_for(Duration::from_secs(20), || mounted(&m.path).then_some(()));
        assert!(
            up.is_some(),
            "the mount on node {via} did not appear: {}",
            m.log_text()
        );
        m
    }

    /// A path below the mount point.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// What `wos mount` wrote so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `umount`; the process must then end by itself, successfully.
    pub fn unmount(mut self) {
        let st = Command::new("umount")
            .arg(&self.path)
            .status()
            .expect("umount runs");
        assert!(st.success(), "umount {}", self.path.display());
        let mut child = self.child.take().expect("the mount process");
        let status = wait_exit(&mut child, Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "wos mount after umount: {status:?}: {}",
            self.log_text()
        );
        assert!(!mounted(&self.path));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if mounted(&self.path) {
            // Lazily: nothing still open under it can keep it.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        if let Some(mut child) = self.child.take()
            && wait_exit(&mut child, Duration::from_secs(5)).is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Never delete a directory that is still a mount point: that would
        // delete the cell's files through it.
        if mounted(&self.path)
            && let Some(d) = self.dir.take()
        {
            let _ = d.keep();
        }
    }
}

//! The sensors a node gossips: CPU load, memory, disk, jobs (Linux /proc).

use std::path::Path;

use wos_api::Sensors;

/// Reads the sensors now. A sensor that cannot be read reads as zero.
pub fn read(data_dir: &Path) -> Sensors {
    let (mem_total, mem_free) = meminfo().unwrap_or((0, 0));
    Sensors {
        cpu_load: loadavg().unwrap_or(0.0),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        mem_free_bytes: mem_free,
        mem_total_bytes: mem_total,
        disk_free_bytes: disk_free(data_dir).unwrap_or(0),
        jobs: 0,
    }
}

fn loadavg() -> Option<f32> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// (total, available) in bytes.
fn meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

fn disk_free(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sensors_read_something_on_linux() {
        let s = super::read(std::path::Path::new("/"));
        assert!(s.mem_total_bytes > 0);
        assert!(s.disk_free_bytes > 0);
        assert!(s.cpus >= 1);
    }
}

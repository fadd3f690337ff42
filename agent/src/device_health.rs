//! How the device itself is doing: CPU temperature, throttling (where the
//! board reports it), memory, disk and uptime, read from sysfs and procfs
//! under a root (`/` on a device, a fake tree in tests) every few seconds.
//!
//! Each reading is optional: a board without a thermal zone or a firmware
//! throttling flag simply has none, and nothing fails for it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lx_protocol::mqtt::DeviceHealth;
use tokio::sync::watch;

/// The first thermal zone: the SoC on a Raspberry Pi and most ARM boards.
const THERMAL: &str = "sys/class/thermal/thermal_zone0/temp";
/// The Raspberry Pi firmware's `get_throttled` bits, as `vcgencmd` shows them.
const THROTTLED: &str = "sys/devices/platform/soc/soc:firmware/get_throttled";

/// The last reading, shared with the status, the lifecycle and `/healthz`.
#[derive(Debug, Clone, Default)]
pub struct HealthReadings(Arc<Mutex<Option<DeviceHealth>>>);

impl HealthReadings {
    pub fn latest(&self) -> Option<DeviceHealth> {
        self.0.lock().ok().and_then(|h| h.clone())
    }

    pub fn set(&self, health: DeviceHealth) {
        if let Ok(mut h) = self.0.lock() {
            *h = Some(health);
        }
    }

    /// The CPU temperature now, if the board has a sensor.
    pub fn temperature_c(&self) -> Option<f64> {
        self.latest().and_then(|h| h.cpu_temperature_c)
    }
}

fn read(root: &Path, relative: &str) -> Option<String> {
    std::fs::read_to_string(root.join(relative)).ok()
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in MiB.
fn memory(meminfo: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb / 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// Throttled now: under-voltage, frequency capped, throttled or at the soft
/// temperature limit (the firmware's four low bits; the high ones say it
/// happened since boot).
fn throttled(text: &str) -> Option<bool> {
    let text = text.trim();
    let value = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => text.parse().ok()?,
    };
    Some(value & 0xF != 0)
}

/// Free space for the agent's files (its queue and keys), in MiB.
// fsblkcnt_t and unsigned long are 32-bit on armv7, 64-bit here.
#[allow(clippy::useless_conversion)]
fn disk_free_mb(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    let free = u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    Some(free / (1024 * 1024))
}

/// One reading of everything under `root`; `data_dir` is where the disk
/// that matters is.
pub fn read_all(root: &Path, data_dir: &Path) -> DeviceHealth {
    let (memory_total_mb, memory_available_mb) =
        read(root, "proc/meminfo").map_or((None, None), |m| memory(&m));
    DeviceHealth {
        cpu_temperature_c: read(root, THERMAL)
            .and_then(|t| t.trim().parse::<f64>().ok())
            .map(|milli| (milli / 100.0).round() / 10.0),
        throttled: read(root, THROTTLED).and_then(|t| throttled(&t)),
        memory_total_mb,
        memory_available_mb,
        disk_free_mb: disk_free_mb(data_dir),
        uptime_seconds: read(root, "proc/uptime")
            .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
            .map(|s| s as u64),
    }
}

/// Reads every `every` into `readings` until `shutdown`.
pub async fn watch_health(
    root: PathBuf,
    data_dir: PathBuf,
    readings: HealthReadings,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (root, dir) = (root.clone(), data_dir.clone());
        if let Ok(health) = tokio::task::spawn_blocking(move || read_all(&root, &dir)).await {
            readings.set(health);
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let at = dir.path().join(path);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::fs::write(at, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_raspberry_pi_tree_reads_as_its_figures() {
        let root = tree(&[
            (THERMAL, "71234\n"),
            (THROTTLED, "0x50005\n"),
            (
                "proc/meminfo",
                "MemTotal:        3884096 kB\nMemFree:          123456 kB\nMemAvailable:    2048000 kB\n",
            ),
            ("proc/uptime", "86461.52 170000.01\n"),
        ]);
        let h = read_all(root.path(), root.path());
        assert_eq!(h.cpu_temperature_c, Some(71.2));
        assert_eq!(
            h.throttled,
            Some(true),
            "0x5: under-voltage and throttled now"
        );
        assert_eq!(h.memory_total_mb, Some(3793));
        assert_eq!(h.memory_available_mb, Some(2000));
        assert_eq!(h.uptime_seconds, Some(86461));
        assert!(h.disk_free_mb.is_some());
    }

    #[test]
    fn past_throttling_is_not_throttling_now_and_a_bare_board_has_no_figures() {
        assert_eq!(throttled("0x50000"), Some(false));
        assert_eq!(throttled("0"), Some(false));
        assert_eq!(throttled("garbage"), None);
        let empty = tree(&[]);
        let h = read_all(empty.path(), empty.path());
        assert_eq!(
            (
                h.cpu_temperature_c,
                h.throttled,
                h.memory_total_mb,
                h.uptime_seconds
            ),
            (None, None, None, None)
        );
    }
}

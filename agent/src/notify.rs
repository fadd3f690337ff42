//! The service manager's notification protocol (sd_notify): READY=1 once
//! the agent runs, WATCHDOG=1 while its runtime keeps answering, STOPPING=1
//! on the way out. Without `NOTIFY_SOCKET` (not under systemd) it does
//! nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, from the service manager's environment.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
    /// How often to ping: half the manager's `WatchdogSec`.
    pub watchdog_every: Option<Duration>,
}

impl Notifier {
    /// `None` when the agent was not started by a service manager that
    /// listens (or its socket cannot be reached).
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let address = address_of(&path)?;
        let socket = UnixDatagram::unbound().ok()?;
        let watchdog_every = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Some(Self {
            socket,
            address,
            watchdog_every,
        })
    }

    pub fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            tracing::warn!(error = %e, state, "service manager notification not sent");
        }
    }
}

fn address_of(path: &std::ffi::OsStr) -> Option<std::os::unix::net::SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    match bytes.first()? {
        b'@' => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..]).ok()
        }
        b'/' => std::os::unix::net::SocketAddr::from_pathname(path).ok(),
        _ => None,
    }
}

/// Half of `WATCHDOG_USEC`, when the watchdog is meant for this process.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// Pings the watchdog until `shutdown`. The pings come from the runtime
/// itself: a hung runtime stops them and the manager restarts the agent.
pub async fn watchdog(
    notifier: std::sync::Arc<Notifier>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(every) = notifier.watchdog_every else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => notifier.send("WATCHDOG=1"),
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_pings_at_half_its_period_and_only_for_its_process() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn notifications_reach_a_listening_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            address: address_of(path.as_os_str()).unwrap(),
            watchdog_every: None,
        };
        notifier.send("READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(address_of(std::ffi::OsStr::new("relative")).is_none());
        assert!(address_of(std::ffi::OsStr::new("@abstract")).is_some());
    }
}

//! The media-flow monitor of one session, sans IO: told when media arrives
//! and polled with `now`, it says when media was lost (nothing for longer
//! than the timeout; the loss dates from the last media seen) and when it
//! resumed. Those two instants bound a NETWORK_ERROR window, so the meter
//! fails exactly the seconds without media.

use lx_protocol::time::UnixMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Nothing since `last_media_ms`.
    Lost {
        last_media_ms: UnixMillis,
    },
    Resumed {
        at_ms: UnixMillis,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMonitor {
    timeout_ms: i64,
    last_media_ms: Option<UnixMillis>,
    lost: bool,
}

impl FlowMonitor {
    pub fn new(timeout_ms: i64) -> Self {
        Self {
            timeout_ms,
            last_media_ms: None,
            lost: false,
        }
    }

    /// Media arrived at `now`.
    pub fn on_media(&mut self, now: UnixMillis) -> Option<Flow> {
        self.last_media_ms = Some(self.last_media_ms.map_or(now, |t| t.max(now)));
        if self.lost {
            self.lost = false;
            return Some(Flow::Resumed { at_ms: now });
        }
        None
    }

    /// Whether media has been missing too long at `now`. Before the first
    /// media there is nothing to lose.
    pub fn poll(&mut self, now: UnixMillis) -> Option<Flow> {
        let last = self.last_media_ms?;
        if !self.lost && now - last > self.timeout_ms {
            self.lost = true;
            return Some(Flow::Lost {
                last_media_ms: last,
            });
        }
        None
    }

    /// Media are known lost since `last_media_ms`, however recent: they
    /// moved here from a replica that is gone.
    pub fn lost_since(&mut self, last_media_ms: UnixMillis) -> Flow {
        self.last_media_ms = Some(last_media_ms);
        self.lost = true;
        Flow::Lost { last_media_ms }
    }

    pub fn is_lost(&self) -> bool {
        self.lost
    }

    pub fn last_media_ms(&self) -> Option<UnixMillis> {
        self.last_media_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_lost_before_the_first_media() {
        let mut m = FlowMonitor::new(2000);
        assert_eq!(m.poll(1_000_000), None);
        assert_eq!(m.on_media(1_000_000), None);
        assert_eq!(
            m.poll(1_002_000),
            None,
            "exactly the timeout is not yet a loss"
        );
    }

    #[test]
    fn a_gap_longer_than_the_timeout_is_lost_from_the_last_media_and_resumes_once() {
        let mut m = FlowMonitor::new(2000);
        m.on_media(1_000_000);
        m.on_media(1_000_033);
        assert_eq!(
            m.poll(1_002_034),
            Some(Flow::Lost {
                last_media_ms: 1_000_033
            })
        );
        assert_eq!(m.poll(1_003_000), None, "reported once");
        assert!(m.is_lost());
        assert_eq!(
            m.on_media(1_010_000),
            Some(Flow::Resumed { at_ms: 1_010_000 })
        );
        assert_eq!(m.on_media(1_010_033), None);
        assert_eq!(m.poll(1_011_000), None);
        assert_eq!(
            m.poll(1_012_034),
            Some(Flow::Lost {
                last_media_ms: 1_010_033
            })
        );
    }

    #[test]
    fn media_stamped_out_of_order_never_moves_the_last_media_back() {
        let mut m = FlowMonitor::new(2000);
        m.on_media(1_005_000);
        m.on_media(1_004_000);
        assert_eq!(m.last_media_ms(), Some(1_005_000));
        assert_eq!(m.poll(1_006_500), None);
    }
}

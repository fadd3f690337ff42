//! The battery's charge as the device last read it: from a power monitor
//! ([`crate::hardware`]) or a drone's flight controller ([`crate::mavlink`]).

use std::sync::{Arc, Mutex};

/// The battery's last reading, shared; `None` while nothing reports one.
#[derive(Debug, Clone, Default)]
pub struct Battery(Arc<Mutex<Option<u8>>>);

impl Battery {
    pub fn percent(&self) -> Option<u8> {
        self.0.lock().map(|b| *b).unwrap_or(None)
    }

    pub fn set(&self, percent: Option<u8>) {
        if let Ok(mut b) = self.0.lock() {
            *b = percent;
        }
    }
}

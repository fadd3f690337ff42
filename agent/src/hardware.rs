//! The device's own hardware beyond the GPS: the battery through an INA219
//! power monitor, and the status LED on a GPIO line (lx-hal's drivers over
//! linux-embedded-hal). Each runs on a thread of its own, since I2C and GPIO
//! calls block; a device without them runs without them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use lx_hal::ina219::{BatteryCurve, Calibration, Ina219};
use lx_hal::led::{Pattern, StatusLed};
use lx_protocol::mqtt::{DeviceState, StatusMessage};
use tokio::sync::watch;

use crate::config::{LedConfig, PowerConfig, PowerMonitor};

use crate::battery::Battery;

/// Stops the hardware threads when dropped.
#[derive(Debug, Default)]
pub struct Hardware {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hardware {
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The LED pattern of a status.
pub fn pattern_of(state: DeviceState) -> Pattern {
    match state {
        DeviceState::NoFix | DeviceState::Offline => Pattern::NoFix,
        DeviceState::Idle => Pattern::Idle,
        DeviceState::Assigned => Pattern::Assigned,
        DeviceState::Live => Pattern::Live,
        DeviceState::Error => Pattern::Error,
    }
}

/// Starts what the config names. Hardware that cannot be opened is logged
/// and left out: the agent serves without its LED rather than not at all.
pub fn start(
    power: &PowerConfig,
    led: &LedConfig,
    battery: Battery,
    status: watch::Receiver<StatusMessage>,
) -> Hardware {
    let mut hw = Hardware::default();
    if power.monitor == PowerMonitor::Ina219 {
        match open_monitor(power) {
            Ok((monitor, curve)) => {
                let stop = Arc::clone(&hw.stop);
                let every = Duration::from_millis(power.read_interval_ms);
                hw.threads.push(std::thread::spawn(move || {
                    read_battery(monitor, &curve, &battery, every, &stop);
                }));
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "power monitor not available; battery unknown")
            }
        }
    }
    if !led.gpio_chip.is_empty() {
        match open_led(led) {
            Ok(pin) => {
                let stop = Arc::clone(&hw.stop);
                let active_low = led.active_low;
                hw.threads.push(std::thread::spawn(move || {
                    blink(StatusLed::new(pin, active_low), &status, &stop);
                }));
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "status LED not available"),
        }
    }
    hw
}

type Monitor = Ina219<lx_hal::linux_embedded_hal::I2cdev>;

fn open_monitor(power: &PowerConfig) -> anyhow::Result<(Monitor, BatteryCurve)> {
    let curve = BatteryCurve::new(power.curve.iter().map(|p| (p[0], p[1] as u8)).collect())
        .map_err(|e| anyhow::anyhow!("power.curve: {e}"))?;
    let bus = lx_hal::linux_embedded_hal::I2cdev::new(&power.i2c_bus)
        .with_context(|| format!("opening power.i2c_bus {}", power.i2c_bus.display()))?;
    let calibration = Calibration {
        shunt_milliohm: power.shunt_milliohm,
        current_lsb_microamp: power.current_lsb_microamp,
    };
    let monitor = Ina219::new(bus, power.address, calibration)
        .map_err(|e| anyhow::anyhow!("setting up the INA219 at {:#04x}: {e:?}", power.address))?;
    Ok((monitor, curve))
}

fn read_battery(
    mut monitor: Monitor,
    curve: &BatteryCurve,
    battery: &Battery,
    every: Duration,
    stop: &AtomicBool,
) {
    let mut failing = false;
    while !stop.load(Ordering::SeqCst) {
        match monitor.bus_millivolts() {
            Ok(mv) => {
                let percent = curve.percent(mv);
                battery.set(Some(percent));
                if failing {
                    tracing::info!(millivolts = mv, percent, "power monitor reads again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = ?e, "power monitor read failed; battery unknown");
                }
                failing = true;
                battery.set(None);
            }
        }
        sleep_unless_stopped(every, stop);
    }
}

fn open_led(led: &LedConfig) -> anyhow::Result<lx_hal::linux_embedded_hal::CdevPin> {
    use lx_hal::linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let mut chip = Chip::new(&led.gpio_chip)
        .with_context(|| format!("opening led.gpio_chip {}", led.gpio_chip))?;
    let line = chip
        .get_line(led.line)
        .with_context(|| format!("line {} of {}", led.line, led.gpio_chip))?;
    let handle = line
        .request(LineRequestFlags::OUTPUT, 0, "lx-agent")
        .with_context(|| {
            format!(
                "requesting line {} of {} as an output",
                led.line, led.gpio_chip
            )
        })?;
    lx_hal::linux_embedded_hal::CdevPin::new(handle).context("the LED's GPIO line")
}

fn blink(
    mut led: StatusLed<lx_hal::linux_embedded_hal::CdevPin>,
    status: &watch::Receiver<StatusMessage>,
    stop: &AtomicBool,
) {
    let t0 = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let pattern = pattern_of(status.borrow().state);
        let t = t0.elapsed().as_millis() as u64;
        if let Err(e) = led.show(pattern, t) {
            tracing::warn!(error = ?e, "status LED write failed; LED stopped");
            return;
        }
        sleep_unless_stopped(Duration::from_millis(50), stop);
    }
    let _ = led.release();
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(50);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::SeqCst) {
        let nap = left.min(step);
        std::thread::sleep(nap);
        left -= nap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_pattern_and_live_is_steady() {
        assert_eq!(pattern_of(DeviceState::Live), Pattern::Live);
        assert_eq!(pattern_of(DeviceState::Assigned), Pattern::Assigned);
        assert_eq!(pattern_of(DeviceState::NoFix), Pattern::NoFix);
        assert_eq!(pattern_of(DeviceState::Error), Pattern::Error);
        assert_eq!(pattern_of(DeviceState::Idle), Pattern::Idle);
    }

    #[test]
    fn a_battery_without_a_monitor_is_unknown() {
        let b = Battery::default();
        assert_eq!(b.percent(), None);
        b.set(Some(42));
        assert_eq!(b.clone().percent(), Some(42));
    }
}

//! The status LED: one GPIO line, a blink pattern per state of the device.
//!
//! [`level`] is pure (a pattern and a time give on or off); [`StatusLed`]
//! drives any embedded-hal 1.0 output pin with it, touching the pin only
//! when the level changes. On Linux the pin is a GPIO character-device line
//! (`linux-embedded-hal`'s `CdevPin`).

use embedded_hal::digital::OutputPin;

/// What the LED says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// No position to sign: a short blip each second.
    NoFix,
    /// Ready for offers: one second on, one off.
    Idle,
    /// A session assigned, not yet live: fast, 2 Hz.
    Assigned,
    /// Publishing a live session: steady on.
    Live,
    /// Needs a person: two short blips, then a pause.
    Error,
}

impl Pattern {
    /// The pattern's cycle: (length, on-intervals within it), milliseconds.
    fn cycle(self) -> (u64, &'static [(u64, u64)]) {
        match self {
            Self::NoFix => (1000, &[(0, 100)]),
            Self::Idle => (2000, &[(0, 1000)]),
            Self::Assigned => (500, &[(0, 250)]),
            Self::Live => (1000, &[(0, 1000)]),
            Self::Error => (1000, &[(0, 100), (200, 300)]),
        }
    }
}

/// Whether the LED is lit at `t_ms` (any monotonic milliseconds).
pub fn level(pattern: Pattern, t_ms: u64) -> bool {
    let (length, on) = pattern.cycle();
    let t = t_ms % length;
    on.iter().any(|&(from, to)| (from..to).contains(&t))
}

/// The LED on `pin`; `active_low` for boards that light it by pulling low.
#[derive(Debug)]
pub struct StatusLed<P> {
    pin: P,
    active_low: bool,
    lit: Option<bool>,
}

impl<P: OutputPin> StatusLed<P> {
    pub fn new(pin: P, active_low: bool) -> Self {
        Self {
            pin,
            active_low,
            lit: None,
        }
    }

    /// Shows `pattern` as of `t_ms`; sets the pin only on a change.
    pub fn show(&mut self, pattern: Pattern, t_ms: u64) -> Result<(), P::Error> {
        let lit = level(pattern, t_ms);
        if self.lit == Some(lit) {
            return Ok(());
        }
        if lit != self.active_low {
            self.pin.set_high()?;
        } else {
            self.pin.set_low()?;
        }
        self.lit = Some(lit);
        Ok(())
    }

    /// Turns it off (on shutdown) and gives the pin back.
    pub fn release(mut self) -> Result<P, P::Error> {
        if self.active_low {
            self.pin.set_high()?;
        } else {
            self.pin.set_low()?;
        }
        Ok(self.pin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    #[test]
    fn each_state_blinks_its_own_way() {
        let lit_ms = |p| (0..10_000u64).filter(|&t| level(p, t)).count();
        assert_eq!(lit_ms(Pattern::Live), 10_000);
        assert_eq!(lit_ms(Pattern::Idle), 5_000);
        assert_eq!(lit_ms(Pattern::Assigned), 5_000);
        assert_eq!(lit_ms(Pattern::NoFix), 1_000);
        assert_eq!(lit_ms(Pattern::Error), 2_000);
        // Assigned is fast, idle slow: same duty, different period.
        let edges = |p| {
            (1..10_000u64)
                .filter(|&t| level(p, t) != level(p, t - 1))
                .count()
        };
        assert_eq!(edges(Pattern::Assigned), 39);
        assert_eq!(edges(Pattern::Idle), 9);
        assert_eq!(edges(Pattern::Error), 39);
    }

    #[test]
    fn the_pin_is_written_only_when_the_level_changes() {
        let mut pin = Mock::new(&[
            Transaction::set(State::High),
            Transaction::set(State::Low),
            Transaction::set(State::High),
            Transaction::set(State::Low),
        ]);
        let mut led = StatusLed::new(pin.clone(), false);
        led.show(Pattern::Assigned, 0).unwrap();
        led.show(Pattern::Assigned, 100).unwrap();
        led.show(Pattern::Assigned, 300).unwrap();
        led.show(Pattern::Live, 300).unwrap();
        led.show(Pattern::Live, 900).unwrap();
        led.release().unwrap();
        pin.done();
    }

    #[test]
    fn an_active_low_led_is_lit_by_pulling_low() {
        let mut pin = Mock::new(&[Transaction::set(State::Low), Transaction::set(State::High)]);
        let mut led = StatusLed::new(pin.clone(), true);
        led.show(Pattern::Live, 0).unwrap();
        led.release().unwrap();
        pin.done();
    }
}

//! The INA219 power monitor over I2C: bus voltage, current through the
//! shunt, and the battery's charge from a configured voltage curve.
//!
//! Generic over any embedded-hal 1.0 I2C bus (on Linux, `/dev/i2c-N`
//! through `linux-embedded-hal`'s `I2cdev`). Integers throughout: millivolts,
//! milliamps, percent.

use embedded_hal::i2c::I2c;

/// The INA219's registers.
mod reg {
    pub(super) const CONFIG: u8 = 0x00;
    pub(super) const BUS_VOLTAGE: u8 = 0x02;
    pub(super) const CURRENT: u8 = 0x04;
    pub(super) const CALIBRATION: u8 = 0x05;
}

/// 32 V bus range, ±320 mV shunt range, 12-bit samples, shunt and bus
/// measured continuously: the datasheet's power-on default, written
/// explicitly so a monitor left in another mode by someone else works.
const CONFIG_32V_320MV_CONTINUOUS: u16 = 0x399F;

/// The default address (A0 and A1 to ground).
pub const DEFAULT_ADDRESS: u8 = 0x40;

/// How the shunt and the current register's scale are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calibration {
    /// The shunt resistor, milliohms (0.1 Ω on most breakout boards: 100).
    pub shunt_milliohm: u32,
    /// What one count of the current register is worth, microamps.
    pub current_lsb_microamp: u32,
}

impl Calibration {
    /// The calibration register: trunc(0.04096 / (current_LSB × R_shunt)).
    pub fn register(self) -> Option<u16> {
        let denominator = u64::from(self.current_lsb_microamp) * u64::from(self.shunt_milliohm);
        if denominator == 0 {
            return None;
        }
        // Bit 0 of the register is not used: the value is kept even.
        u16::try_from(40_960_000 / denominator)
            .ok()
            .filter(|&c| c > 1)
            .map(|c| c & !1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ina219Error<E> {
    Bus(E),
    /// The calibration cannot be expressed (a zero, or out of range).
    BadCalibration(Calibration),
    /// The conversion overflowed: the current is beyond the shunt's range.
    Overflow,
}

/// One INA219 on `bus` at `address`.
#[derive(Debug)]
pub struct Ina219<I> {
    bus: I,
    address: u8,
    calibration: Calibration,
}

impl<I: I2c> Ina219<I> {
    /// Writes the configuration and the calibration.
    pub fn new(
        bus: I,
        address: u8,
        calibration: Calibration,
    ) -> Result<Self, Ina219Error<I::Error>> {
        let register = calibration
            .register()
            .ok_or(Ina219Error::BadCalibration(calibration))?;
        let mut monitor = Self {
            bus,
            address,
            calibration,
        };
        monitor.write(reg::CONFIG, CONFIG_32V_320MV_CONTINUOUS)?;
        monitor.write(reg::CALIBRATION, register)?;
        Ok(monitor)
    }

    fn write(&mut self, register: u8, value: u16) -> Result<(), Ina219Error<I::Error>> {
        let [hi, lo] = value.to_be_bytes();
        self.bus
            .write(self.address, &[register, hi, lo])
            .map_err(Ina219Error::Bus)
    }

    fn read(&mut self, register: u8) -> Result<u16, Ina219Error<I::Error>> {
        let mut out = [0u8; 2];
        self.bus
            .write_read(self.address, &[register], &mut out)
            .map_err(Ina219Error::Bus)?;
        Ok(u16::from_be_bytes(out))
    }

    /// The bus voltage (the battery's, on the load side), millivolts.
    pub fn bus_millivolts(&mut self) -> Result<u32, Ina219Error<I::Error>> {
        let raw = self.read(reg::BUS_VOLTAGE)?;
        if raw & 0x1 != 0 {
            return Err(Ina219Error::Overflow);
        }
        // Bits 15..3, 4 mV each.
        Ok(u32::from(raw >> 3) * 4)
    }

    /// The current through the shunt, milliamps (negative: charging).
    pub fn current_milliamps(&mut self) -> Result<i32, Ina219Error<I::Error>> {
        let raw = self.read(reg::CURRENT)? as i16;
        let microamps = i64::from(raw) * i64::from(self.calibration.current_lsb_microamp);
        Ok((microamps / 1000) as i32)
    }

    pub fn release(self) -> I {
        self.bus
    }
}

/// A battery's charge against its resting voltage: points of (millivolts,
/// percent), linear between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatteryCurve {
    points: Vec<(u32, u8)>,
}

impl BatteryCurve {
    /// At least two points, voltages rising and percentages not falling,
    /// within 0 to 100.
    pub fn new(mut points: Vec<(u32, u8)>) -> Result<Self, String> {
        points.sort_by_key(|p| p.0);
        if points.len() < 2 {
            return Err("a battery curve needs at least two (millivolts, percent) points".into());
        }
        for w in points.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(format!("the battery curve has {} mV twice", w[0].0));
            }
            if w[1].1 < w[0].1 {
                return Err(format!(
                    "the battery curve falls from {}% at {} mV to {}% at {} mV",
                    w[0].1, w[0].0, w[1].1, w[1].0
                ));
            }
        }
        if points.iter().any(|p| p.1 > 100) {
            return Err("battery percentages must be 0 to 100".into());
        }
        Ok(Self { points })
    }

    /// The charge at `millivolts`, clamped to the curve's ends.
    pub fn percent(&self, millivolts: u32) -> u8 {
        let (first, last) = (self.points[0], self.points[self.points.len() - 1]);
        if millivolts <= first.0 {
            return first.1;
        }
        if millivolts >= last.0 {
            return last.1;
        }
        let i = self.points.partition_point(|p| p.0 <= millivolts);
        let (lo, hi) = (self.points[i - 1], self.points[i]);
        let span = u64::from(hi.0 - lo.0);
        let rise = u64::from(hi.1 - lo.1) * u64::from(millivolts - lo.0);
        lo.1 + (rise / span) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    const BOARD: Calibration = Calibration {
        shunt_milliohm: 100,
        current_lsb_microamp: 100,
    };

    fn setup() -> Vec<Transaction> {
        vec![
            Transaction::write(0x40, vec![0x00, 0x39, 0x9F]),
            // 0.04096 / (100 µA × 0.1 Ω) = 4096.
            Transaction::write(0x40, vec![0x05, 0x10, 0x00]),
        ]
    }

    #[test]
    fn it_configures_then_reads_volts_and_amps() {
        let mut expected = setup();
        // 12.46 V: 3115 × 4 mV, shifted left by 3, conversion-ready bit set.
        let bus = (3115u16 << 3) | 0b10;
        expected.push(Transaction::write_read(
            0x40,
            vec![0x02],
            bus.to_be_bytes().to_vec(),
        ));
        // 1.2345 A: 12345 counts of 100 µA.
        expected.push(Transaction::write_read(
            0x40,
            vec![0x04],
            12345u16.to_be_bytes().to_vec(),
        ));
        // Charging: -0.5 A.
        expected.push(Transaction::write_read(
            0x40,
            vec![0x04],
            (-5000i16).to_be_bytes().to_vec(),
        ));
        let mut bus_mock = Mock::new(&expected);
        let mut monitor = Ina219::new(bus_mock.clone(), DEFAULT_ADDRESS, BOARD).unwrap();
        assert_eq!(monitor.bus_millivolts().unwrap(), 12_460);
        assert_eq!(monitor.current_milliamps().unwrap(), 1234);
        assert_eq!(monitor.current_milliamps().unwrap(), -500);
        monitor.release();
        bus_mock.done();
    }

    #[test]
    fn an_overflowed_conversion_is_an_error_not_a_voltage() {
        let mut expected = setup();
        expected.push(Transaction::write_read(0x40, vec![0x02], vec![0xFF, 0xFF]));
        let mut bus_mock = Mock::new(&expected);
        let mut monitor = Ina219::new(bus_mock.clone(), DEFAULT_ADDRESS, BOARD).unwrap();
        assert_eq!(monitor.bus_millivolts(), Err(Ina219Error::Overflow));
        monitor.release();
        bus_mock.done();
    }

    #[test]
    fn a_calibration_that_cannot_be_written_touches_no_register() {
        let mut bus_mock = Mock::new(&[]);
        let zero = Calibration {
            shunt_milliohm: 0,
            current_lsb_microamp: 100,
        };
        assert!(matches!(
            Ina219::new(bus_mock.clone(), DEFAULT_ADDRESS, zero),
            Err(Ina219Error::BadCalibration(_))
        ));
        bus_mock.done();
        assert_eq!(
            Calibration {
                shunt_milliohm: 100,
                current_lsb_microamp: 1
            }
            .register(),
            None,
            "409600 does not fit the register"
        );
    }

    #[test]
    fn the_curve_interpolates_and_clamps() {
        // A 3S lithium-ion pack at rest.
        let curve =
            BatteryCurve::new(vec![(9_900, 0), (11_100, 20), (11_700, 60), (12_600, 100)]).unwrap();
        assert_eq!(curve.percent(9_000), 0);
        assert_eq!(curve.percent(9_900), 0);
        assert_eq!(curve.percent(10_500), 10);
        assert_eq!(curve.percent(11_400), 40);
        assert_eq!(curve.percent(12_150), 80);
        assert_eq!(curve.percent(13_000), 100);
        assert!(BatteryCurve::new(vec![(1, 0)]).is_err());
        assert!(BatteryCurve::new(vec![(1, 50), (2, 40)]).is_err());
        assert!(BatteryCurve::new(vec![(1, 0), (1, 40)]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn the_charge_never_falls_as_the_voltage_rises(a in 0u32..20_000, b in 0u32..20_000) {
            let curve = BatteryCurve::new(vec![(9_900, 0), (11_100, 20), (11_700, 60), (12_600, 100)]).unwrap();
            let (lo, hi) = (a.min(b), a.max(b));
            proptest::prop_assert!(curve.percent(lo) <= curve.percent(hi));
        }
    }
}

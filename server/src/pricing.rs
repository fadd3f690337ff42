//! Pricing, pure: `rate = base × supply × demand × corridor`, every factor in
//! basis points, the rate in integer micro-USDC per second.
//!
//! - supply = clamp(1 / suppliers in range, 0.7, 3.0) (none in range: 3.0)
//! - demand = clamp(1 + open sessions nearby / suppliers in range, 1.0, 3.0)
//!   (none in range: 1.0 when nothing is open, else 3.0)
//! - corridor = the multiplier of the first configured box holding the point.

use lx_protocol::geo::Point;

use crate::config::Corridor;

pub const ONE_BPS: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceInputs {
    pub base_rate_micro_usdc: u64,
    pub suppliers_in_range: u32,
    pub open_sessions_nearby: u32,
    pub corridor_bps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub rate_micro_usdc: u64,
    pub supply_bps: u32,
    pub demand_bps: u32,
    pub corridor_bps: u32,
}

pub fn supply_bps(suppliers_in_range: u32) -> u32 {
    if suppliers_in_range == 0 {
        return 30_000;
    }
    (ONE_BPS / suppliers_in_range).clamp(7_000, 30_000)
}

pub fn demand_bps(open: u32, available: u32) -> u32 {
    if available == 0 {
        return if open == 0 { ONE_BPS } else { 30_000 };
    }
    let extra = u64::from(open) * u64::from(ONE_BPS) / u64::from(available);
    u32::try_from(u64::from(ONE_BPS) + extra)
        .unwrap_or(u32::MAX)
        .clamp(ONE_BPS, 30_000)
}

pub fn corridor_bps(point: Point, corridors: &[Corridor]) -> u32 {
    corridors
        .iter()
        .find(|c| {
            (c.min_lat..=c.max_lat).contains(&point.lat)
                && (c.min_lng..=c.max_lng).contains(&point.lng)
        })
        .map_or(ONE_BPS, |c| c.multiplier_bps)
}

pub fn price(inputs: PriceInputs) -> Price {
    let supply = supply_bps(inputs.suppliers_in_range);
    let demand = demand_bps(inputs.open_sessions_nearby, inputs.suppliers_in_range);
    let scale = u128::from(ONE_BPS).pow(3);
    let rate = u128::from(inputs.base_rate_micro_usdc)
        * u128::from(supply)
        * u128::from(demand)
        * u128::from(inputs.corridor_bps)
        / scale;
    Price {
        rate_micro_usdc: u64::try_from(rate).unwrap_or(u64::MAX).max(1),
        supply_bps: supply,
        demand_bps: demand,
        corridor_bps: inputs.corridor_bps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_inputs(suppliers: u32, open: u32) -> PriceInputs {
        PriceInputs {
            base_rate_micro_usdc: 1000,
            suppliers_in_range: suppliers,
            open_sessions_nearby: open,
            corridor_bps: ONE_BPS,
        }
    }

    #[test]
    fn one_idle_supplier_prices_at_the_base_rate() {
        assert_eq!(price(build_inputs(1, 0)).rate_micro_usdc, 1000);
    }

    #[test]
    fn plenty_of_supply_discounts_down_to_the_floor() {
        assert_eq!(price(build_inputs(2, 0)).supply_bps, 7_000);
        assert_eq!(price(build_inputs(50, 0)).rate_micro_usdc, 700);
    }

    #[test]
    fn demand_raises_the_rate_up_to_three_times() {
        assert_eq!(price(build_inputs(1, 1)).demand_bps, 20_000);
        assert_eq!(price(build_inputs(1, 1)).rate_micro_usdc, 2000);
        assert_eq!(price(build_inputs(1, 9)).demand_bps, 30_000);
        assert_eq!(price(build_inputs(4, 2)).demand_bps, 15_000);
    }

    #[test]
    fn nobody_in_range_is_the_dearest() {
        assert_eq!(price(build_inputs(0, 0)).rate_micro_usdc, 3000);
        assert_eq!(price(build_inputs(0, 3)).rate_micro_usdc, 9000);
    }

    #[test]
    fn the_first_matching_corridor_applies() {
        let corridors = vec![
            Corridor {
                name: "a".into(),
                min_lat: 0.0,
                max_lat: 10.0,
                min_lng: -80.0,
                max_lng: -70.0,
                multiplier_bps: 12_000,
            },
            Corridor {
                name: "b".into(),
                min_lat: 0.0,
                max_lat: 90.0,
                min_lng: -180.0,
                max_lng: 180.0,
                multiplier_bps: 5_000,
            },
        ];
        assert_eq!(corridor_bps(Point::new(4.7, -74.0), &corridors), 12_000);
        assert_eq!(corridor_bps(Point::new(50.0, 10.0), &corridors), 5_000);
        assert_eq!(corridor_bps(Point::new(-50.0, 10.0), &corridors), ONE_BPS);
    }
}

//! Money as integers with an explicit unit, never floating point.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// A price in wei per unit, as the rational `per_unit / pixels_per_unit`
/// (the wire `PriceInfo`). `pixels_per_unit` is always at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WeiPrice {
    per_unit: i64,
    pixels_per_unit: i64,
}

/// A price that cannot be a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// `pixelsPerUnit` must be positive.
    #[error("pixels per unit must be positive, got {0}")]
    NonPositiveDenominator(i64),
    /// Prices are never negative.
    #[error("price per unit must not be negative, got {0}")]
    Negative(i64),
}

impl WeiPrice {
    /// Zero wei per unit (offchain).
    pub const FREE: Self = Self {
        per_unit: 0,
        pixels_per_unit: 1,
    };

    /// Parses a wire price.
    pub fn new(per_unit: i64, pixels_per_unit: i64) -> Result<Self, PriceError> {
        if pixels_per_unit <= 0 {
            return Err(PriceError::NonPositiveDenominator(pixels_per_unit));
        }
        if per_unit < 0 {
            return Err(PriceError::Negative(per_unit));
        }
        Ok(Self {
            per_unit,
            pixels_per_unit,
        })
    }

    /// Numerator, wei.
    pub fn per_unit(self) -> i64 {
        self.per_unit
    }

    /// Denominator, units.
    pub fn pixels_per_unit(self) -> i64 {
        self.pixels_per_unit
    }

    /// Cost of `units` in wei, rounded up, saturating at `u128::MAX`.
    pub fn cost_wei(self, units: u64) -> u128 {
        let numerator = u128::from(units).saturating_mul(self.per_unit as u128);
        numerator.div_ceil(self.pixels_per_unit as u128)
    }
}

impl PartialOrd for WeiPrice {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WeiPrice {
    /// Compares the rationals exactly by cross-multiplying in 128 bits.
    fn cmp(&self, other: &Self) -> Ordering {
        let left = i128::from(self.per_unit) * i128::from(other.pixels_per_unit);
        let right = i128::from(other.per_unit) * i128::from(self.pixels_per_unit);
        left.cmp(&right)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rationals_compare_exactly() {
        let a = WeiPrice::new(2469, 200).unwrap();
        let b = WeiPrice::new(12345, 1000).unwrap();
        assert_eq!(a.cmp(&b), Ordering::Equal);
        assert!(WeiPrice::new(1, 3).unwrap() < WeiPrice::new(1, 2).unwrap());
        assert!(WeiPrice::new(1, 0).is_err());
        assert!(WeiPrice::new(-1, 1).is_err());
    }

    #[test]
    fn cost_rounds_up_and_saturates() {
        assert_eq!(WeiPrice::new(1, 3).unwrap().cost_wei(10), 4);
        assert_eq!(
            WeiPrice::new(i64::MAX, 1).unwrap().cost_wei(u64::MAX),
            u128::from(u64::MAX) * (i64::MAX as u128)
        );
    }
}

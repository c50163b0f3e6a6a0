//! Token amounts in integer base units, with decimal parsing and formatting for humans.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of the native token (or of Data Credits) in integer base units. Arithmetic is
/// checked: an overflow is an error, never a wrap.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Amount(pub u128);

/// Why an amount could not be parsed or computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("invalid amount {text:?}: {reason}")]
    Parse { text: String, reason: &'static str },
    #[error("amount overflow")]
    Overflow,
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// `self * numerator / denominator` without intermediate overflow for the ranges we use
    /// (u128 amounts times parts-per-million or basis-point fractions); rounds down.
    pub fn mul_div(self, numerator: u128, denominator: u128) -> Option<Amount> {
        if denominator == 0 {
            return None;
        }
        // Split to avoid overflowing u128 when `self` is large: a*n/d = (a/d)*n + (a%d)*n/d.
        let q = self.0 / denominator;
        let r = self.0 % denominator;
        let high = q.checked_mul(numerator)?;
        let low = r.checked_mul(numerator)? / denominator;
        high.checked_add(low).map(Amount)
    }

    /// Parses a whole-token decimal such as `12.5` into base units with `decimals` places.
    pub fn parse_decimal(text: &str, decimals: u8) -> Result<Amount, AmountError> {
        let err = |reason| AmountError::Parse {
            text: text.to_string(),
            reason,
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        if t.len() > 80 {
            return Err(err("too long"));
        }
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(err("no digits"));
        }
        if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(err("only digits and one '.' are allowed"));
        }
        if frac.len() > decimals as usize {
            return Err(err("more decimal places than the token has"));
        }
        let scale = 10u128
            .checked_pow(u32::from(decimals))
            .ok_or(AmountError::Overflow)?;
        let whole_units: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| AmountError::Overflow)?
        };
        let mut frac_units: u128 = 0;
        if !frac.is_empty() {
            let padded = format!("{frac:0<width$}", width = decimals as usize);
            frac_units = padded.parse().map_err(|_| AmountError::Overflow)?;
        }
        whole_units
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac_units))
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }

    /// Formats base units as a whole-token decimal, trimming trailing zeros (`12.5`, `3`).
    pub fn to_decimal(&self, decimals: u8) -> String {
        let Some(scale) = 10u128.checked_pow(u32::from(decimals)) else {
            return self.0.to_string();
        };
        let whole = self.0 / scale;
        let frac = self.0 % scale;
        if frac == 0 {
            return whole.to_string();
        }
        let frac_text = format!("{frac:0>width$}", width = decimals as usize);
        format!("{whole}.{}", frac_text.trim_end_matches('0'))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl From<u128> for Amount {
    fn from(v: u128) -> Self {
        Amount(v)
    }
}

// Amounts are strings of base units in JSON: u128 does not fit a JSON number safely.
impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Number(u64),
        }
        match Repr::deserialize(d)? {
            Repr::Text(s) => s
                .parse::<u128>()
                .map(Amount)
                .map_err(|_| serde::de::Error::custom(format!("invalid amount {s:?}"))),
            Repr::Number(n) => Ok(Amount(u128::from(n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_decimal_cases() {
        assert_eq!(Amount::parse_decimal("12.5", 6), Ok(Amount(12_500_000)));
        assert_eq!(Amount::parse_decimal("0.000001", 6), Ok(Amount(1)));
        assert_eq!(Amount::parse_decimal("3", 0), Ok(Amount(3)));
        assert_eq!(Amount::parse_decimal(".5", 1), Ok(Amount(5)));
        assert!(Amount::parse_decimal("0.0000001", 6).is_err());
        assert!(Amount::parse_decimal("-1", 6).is_err());
        assert!(Amount::parse_decimal("1e5", 6).is_err());
        assert!(Amount::parse_decimal("", 6).is_err());
        assert!(Amount::parse_decimal(".", 6).is_err());
        assert_eq!(
            Amount::parse_decimal("999999999999999999999999999999999999999", 6),
            Err(AmountError::Overflow)
        );
    }

    #[test]
    fn mul_div_large() {
        let a = Amount(u128::MAX / 2);
        assert_eq!(a.mul_div(1, 2), Some(Amount(u128::MAX / 4)));
        assert_eq!(Amount(10).mul_div(1, 0), None);
        assert_eq!(Amount(1000).mul_div(250_000, 1_000_000), Some(Amount(250)));
    }

    proptest! {
        #[test]
        fn decimal_round_trip(v in any::<u64>(), decimals in 0u8..18) {
            let a = Amount(u128::from(v));
            let text = a.to_decimal(decimals);
            prop_assert_eq!(Amount::parse_decimal(&text, decimals), Ok(a));
        }

        #[test]
        fn json_round_trip(v in any::<u128>()) {
            let a = Amount(v);
            let json = serde_json::to_string(&a).expect("json");
            let back: Amount = serde_json::from_str(&json).expect("back");
            prop_assert_eq!(a, back);
        }
    }
}

/// Serde adapter writing a `u128` as a decimal string, since JSON numbers (and serde's
/// buffered enum decoding) cannot carry the full range. Use with `#[serde(with = "...")]`.
pub mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = <String as Deserialize>::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("invalid integer {text:?}")))
    }
}

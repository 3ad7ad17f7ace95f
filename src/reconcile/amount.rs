//! Exact decimal amounts: an integer count of units at the scale the amount was written with
//! (`12.30` is 1230 at scale 2). Never a float: a sum of a million lines is exact to the last
//! minor unit, and `1.10` equals `1.1` without rounding. No ISO 4217 table lives here on
//! purpose: an amount keeps the exponent its source wrote while lines are matched (values are
//! compared, never scales); the matcher writes the results in their currency's minor units
//! ([`Amount::with_scale`]) when that loses no digit.

use std::cmp::Ordering;
use std::fmt;

/// The most decimals an amount may carry (10^18 still fits an i64 unit count of 9).
pub const MAX_SCALE: u8 = 18;

/// An exact decimal amount.
#[derive(Debug, Clone, Copy, Default)]
pub struct Amount {
    units: i128,
    scale: u8,
}

/// Text that is not a plain decimal amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not `[-+]digits[.digits]`.
    #[error("\"{0}\" is not a decimal amount (write it as -1234.56, without exponent or grouping)")]
    Syntax(String),
    /// More decimals than [`MAX_SCALE`] or more digits than an amount holds.
    #[error("\"{0}\" has too many digits for an exact amount (at most 18 decimals and 30 digits)")]
    TooLong(String),
    /// A sum left the range of exact arithmetic.
    #[error("an amount overflowed exact arithmetic")]
    Overflow,
}

impl Amount {
    /// Zero at scale 0.
    pub const ZERO: Amount = Amount { units: 0, scale: 0 };

    /// An amount of `units` at `scale` (value = units / 10^scale).
    pub fn new(units: i128, scale: u8) -> Self {
        Self { units, scale }
    }

    /// The unit count.
    pub fn units(self) -> i128 {
        self.units
    }

    /// The number of decimals.
    pub fn scale(self) -> u8 {
        self.scale
    }

    /// Parses `-1234.56`, `+7`, `0.005`. Leading and trailing blanks are refused: a ledger
    /// export with padded amounts is a format problem to fix at its source, not to guess at.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let bytes = text.as_bytes();
        let (negative, digits) = match bytes.first() {
            Some(b'-') => (true, &bytes[1..]),
            Some(b'+') => (false, &bytes[1..]),
            _ => (false, bytes),
        };
        if digits.is_empty() {
            return Err(AmountError::Syntax(text.to_owned()));
        }
        let mut units: i128 = 0;
        let mut scale: u8 = 0;
        let mut seen_point = false;
        let mut seen_digit = false;
        let mut count = 0usize;
        for &byte in digits {
            match byte {
                b'0'..=b'9' => {
                    seen_digit = true;
                    count += 1;
                    if count > 30 {
                        return Err(AmountError::TooLong(text.to_owned()));
                    }
                    units = units * 10 + i128::from(byte - b'0');
                    if seen_point {
                        scale += 1;
                        if scale > MAX_SCALE {
                            return Err(AmountError::TooLong(text.to_owned()));
                        }
                    }
                }
                b'.' if !seen_point => seen_point = true,
                _ => return Err(AmountError::Syntax(text.to_owned())),
            }
        }
        if !seen_digit {
            return Err(AmountError::Syntax(text.to_owned()));
        }
        Ok(Self {
            units: if negative { -units } else { units },
            scale,
        })
    }

    /// This amount at a larger `scale` (same value).
    fn at_scale(self, scale: u8) -> Result<i128, AmountError> {
        let factor = 10i128
            .checked_pow(u32::from(scale.saturating_sub(self.scale)))
            .ok_or(AmountError::Overflow)?;
        self.units.checked_mul(factor).ok_or(AmountError::Overflow)
    }

    /// The exact sum, at the larger of the two scales.
    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountError> {
        let scale = self.scale.max(other.scale);
        let units = self
            .at_scale(scale)?
            .checked_add(other.at_scale(scale)?)
            .ok_or(AmountError::Overflow)?;
        Ok(Amount { units, scale })
    }

    /// The exact difference `self - other`, at the larger of the two scales.
    pub fn checked_sub(self, other: Amount) -> Result<Amount, AmountError> {
        self.checked_add(other.negated())
    }

    /// The opposite amount.
    pub fn negated(self) -> Amount {
        Amount {
            units: -self.units,
            scale: self.scale,
        }
    }

    /// The absolute value.
    pub fn abs(self) -> Amount {
        Amount {
            units: self.units.abs(),
            scale: self.scale,
        }
    }

    /// The same value written with `scale` decimals (`12.3000` and `12.3` at 2 are `12.30`),
    /// or `None` when that would drop a digit that is not zero (`12.345` at 2): never rounded.
    pub fn with_scale(self, scale: u8) -> Option<Amount> {
        if scale >= self.scale {
            let units = self.at_scale(scale).ok()?;
            return Some(Amount { units, scale });
        }
        let factor = 10i128.checked_pow(u32::from(self.scale - scale))?;
        (self.units % factor == 0).then(|| Amount {
            units: self.units / factor,
            scale,
        })
    }

    /// Whether the amount is zero.
    pub fn is_zero(self) -> bool {
        self.units == 0
    }

    /// Compares values exactly (`1.10` equals `1.1`); an overflow compares by sign first.
    pub fn cmp_value(self, other: Amount) -> Ordering {
        let scale = self.scale.max(other.scale);
        match (self.at_scale(scale), other.at_scale(scale)) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => self.units.signum().cmp(&other.units.signum()),
        }
    }

    /// Whether both are the same value.
    pub fn same_value(self, other: Amount) -> bool {
        self.cmp_value(other) == Ordering::Equal
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.units < 0 { "-" } else { "" };
        let digits = self.units.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = if digits.len() <= scale {
            format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> Amount {
        Amount::parse(text).unwrap()
    }

    #[test]
    fn parses_and_prints_at_the_written_scale() {
        assert_eq!(a("-1234.56").to_string(), "-1234.56");
        assert_eq!(a("0.005").to_string(), "0.005");
        assert_eq!(a("7").to_string(), "7");
        assert_eq!(a("+0.10").to_string(), "0.10");
        assert_eq!(a("-0.01").to_string(), "-0.01");
    }

    #[test]
    fn compares_values_exactly_across_scales() {
        assert!(a("1.10").same_value(a("1.1")));
        assert!(!a("1.10").same_value(a("1.101")));
        let sum = a("0.1").checked_add(a("0.2")).unwrap();
        assert!(sum.same_value(a("0.3")));
        assert_eq!(a("5").checked_sub(a("0.125")).unwrap().to_string(), "4.875");
    }

    #[test]
    fn rescales_only_without_losing_a_digit() {
        let at = |text: &str, scale| a(text).with_scale(scale).map(|x| x.to_string());
        assert_eq!(at("-12.3000", 2).as_deref(), Some("-12.30"));
        assert_eq!(at("850.0000", 0).as_deref(), Some("850"));
        assert_eq!(at("12.3", 2).as_deref(), Some("12.30"));
        assert_eq!(at("7", 3).as_deref(), Some("7.000"));
        assert_eq!(at("0.0000", 2).as_deref(), Some("0.00"));
        assert_eq!(at("12.345", 2), None);
        assert_eq!(at("-0.0050", 2), None);
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for bad in ["", "-", "1e3", "1,5", " 1", "1.2.3", ".", "abc", "1_000"] {
            assert!(Amount::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            Amount::parse("0.0000000000000000001"),
            Err(AmountError::TooLong(_))
        ));
    }
}

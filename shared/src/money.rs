//! Exact money: `rust_decimal`, a fixed number of decimal places per currency, never a float.
//!
//! [`Amount`] is what a request may move: strictly positive, within the currency's scale. It
//! cannot be built any other way, so an amount with too many decimals or a negative amount does
//! not exist past the edge of the system. Balances ([`rust_decimal::Decimal`]) may be zero, and
//! system accounts may be negative.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The currencies the ledger keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    /// The app's coins; bought through Revio at one coin per rand, two decimal places.
    Coin,
}

impl Currency {
    /// Number of decimal places an amount in this currency may have.
    pub const fn scale(self) -> u32 {
        match self {
            Currency::Coin => 2,
        }
    }

    /// ISO-like code as stored and sent (`COIN`).
    pub const fn code(self) -> &'static str {
        match self {
            Currency::Coin => "COIN",
        }
    }

    /// Parses a currency code.
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "COIN" => Some(Currency::Coin),
            _ => None,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a value is not an acceptable amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a decimal number.
    #[error("amount must be a decimal number written as a string, such as \"25.00\"")]
    NotANumber,
    /// Zero or below.
    #[error("amount must be greater than zero")]
    NotPositive,
    /// More decimal places than the currency has.
    #[error("amount has more than {0} decimal places")]
    TooManyDecimals(u32),
    /// Larger than anything the ledger accepts.
    #[error("amount is too large")]
    TooLarge,
}

/// The largest single amount the ledger will move (far above any product limit).
const MAX_AMOUNT: i64 = 1_000_000_000;

/// A strictly positive amount of money in a currency, at that currency's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

impl Amount {
    /// Parses a decimal string such as `"25.00"`.
    ///
    /// # Errors
    /// An [`AmountError`] for non-numbers, non-positive values, excess decimals or huge values.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, AmountError> {
        let text = text.trim();
        if text.is_empty() || text.contains(['e', 'E']) {
            return Err(AmountError::NotANumber);
        }
        let value: Decimal = text.parse().map_err(|_| AmountError::NotANumber)?;
        Self::new(value, currency)
    }

    /// Checks a decimal against the currency's rules.
    ///
    /// # Errors
    /// See [`Amount::parse`].
    pub fn new(value: Decimal, currency: Currency) -> Result<Self, AmountError> {
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        let normalized = value.normalize();
        if normalized.scale() > currency.scale() {
            return Err(AmountError::TooManyDecimals(currency.scale()));
        }
        if value > Decimal::from(MAX_AMOUNT) {
            return Err(AmountError::TooLarge);
        }
        let mut v = normalized;
        v.rescale(currency.scale());
        Ok(Self(v))
    }

    /// The amount in minor units (cents), as payment providers price.
    pub fn minor_units(self, currency: Currency) -> i64 {
        // The scale was checked at construction, so this is an exact integer.
        use rust_decimal::prelude::ToPrimitive;
        (self.0 * Decimal::from(10_i64.pow(currency.scale()))).to_i64().unwrap_or(i64::MAX)
    }

    /// Builds an amount from minor units (cents).
    ///
    /// # Errors
    /// [`AmountError::NotPositive`] for zero or negative values.
    pub fn from_minor_units(units: i64, currency: Currency) -> Result<Self, AmountError> {
        Self::new(Decimal::new(units, currency.scale()), currency)
    }

    /// The decimal value.
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Formats a balance at the currency's scale, as sent in JSON (`"0.00"`).
pub fn format(value: Decimal, currency: Currency) -> String {
    let mut v = value;
    v.rescale(currency.scale());
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_is_kept_at_the_currency_scale() {
        assert_eq!(Amount::parse("25", Currency::Coin).unwrap().to_string(), "25.00");
        assert_eq!(Amount::parse("0.10", Currency::Coin).unwrap().to_string(), "0.10");
    }

    #[test]
    fn an_amount_with_too_many_decimals_is_rejected() {
        assert_eq!(Amount::parse("1.001", Currency::Coin), Err(AmountError::TooManyDecimals(2)));
    }

    #[test]
    fn trailing_zeros_beyond_the_scale_are_not_extra_precision() {
        assert_eq!(Amount::parse("1.500", Currency::Coin).unwrap().to_string(), "1.50");
    }

    #[test]
    fn zero_and_negative_amounts_are_rejected() {
        assert_eq!(Amount::parse("0", Currency::Coin), Err(AmountError::NotPositive));
        assert_eq!(Amount::parse("-5", Currency::Coin), Err(AmountError::NotPositive));
    }

    #[test]
    fn text_that_is_not_a_plain_decimal_is_rejected() {
        for bad in ["", "abc", "1e3", "NaN", "1,00", "0x10"] {
            assert_eq!(Amount::parse(bad, Currency::Coin), Err(AmountError::NotANumber), "{bad}");
        }
    }

    #[test]
    fn absurdly_large_amounts_are_rejected() {
        assert_eq!(Amount::parse("1000000000.01", Currency::Coin), Err(AmountError::TooLarge));
    }

    #[test]
    fn minor_units_round_trip() {
        let a = Amount::parse("123.45", Currency::Coin).unwrap();
        assert_eq!(a.minor_units(Currency::Coin), 12345);
        assert_eq!(Amount::from_minor_units(12345, Currency::Coin).unwrap(), a);
    }

    #[test]
    fn balances_are_formatted_at_scale() {
        assert_eq!(format(Decimal::ZERO, Currency::Coin), "0.00");
        assert_eq!(format(Decimal::new(-150, 2), Currency::Coin), "-1.50");
    }
}

//! Exact money: `rust_decimal`, a fixed number of decimal places per currency, never a float.
//!
//! [`Amount`] is what a request may move: strictly positive, within the currency's scale. It
//! cannot be built any other way, so an amount with too many decimals or a negative amount does
//! not exist past the edge of the system. Text is parsed strictly ([`Amount::parse`]): exactly
//! `^(0|[1-9][0-9]*)(\.[0-9]{1,places})?$`, never trimmed, never rounded. Balances
//! ([`rust_decimal::Decimal`]) may be zero, and system accounts may be negative.

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
    /// Not a plain decimal number written as a string (see [`Amount::parse`]).
    #[error(
        "amount must be a string of digits with an optional decimal point, no sign, spaces or separators, such as \"25.00\""
    )]
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

impl AmountError {
    /// The stable error code an HTTP answer carries for this error: `too_many_decimals` for
    /// excess decimal places, `invalid_amount` for everything else (not a number, zero or
    /// negative, too large).
    pub fn code(&self) -> &'static str {
        match self {
            AmountError::TooManyDecimals(_) => "too_many_decimals",
            AmountError::NotANumber | AmountError::NotPositive | AmountError::TooLarge => "invalid_amount",
        }
    }
}

/// The largest single amount the ledger will move (far above any product limit).
const MAX_AMOUNT: i64 = 1_000_000_000;
/// Digits of [`MAX_AMOUNT`]'s integer part.
const MAX_AMOUNT_DIGITS: usize = 10;

/// A strictly positive amount of money in a currency, at that currency's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

impl Amount {
    /// Parses a decimal string such as `"25.00"`, strictly: ASCII digits with no leading zero
    /// (except a lone `0` before the point), then optionally a point and one to
    /// [`Currency::scale`] digits — `^(0|[1-9][0-9]*)(\.[0-9]{1,scale})?$`. Nothing else is an
    /// amount: no sign, exponent, separator, whitespace or non-ASCII digit, and never a rounding.
    ///
    /// Trailing zeros count as written places: `"10.000"` is [`AmountError::TooManyDecimals`]
    /// for a two-place currency, because the client wrote three places and we do not guess which
    /// of them it meant.
    ///
    /// # Errors
    /// [`AmountError::NotANumber`] for anything not of that shape, [`AmountError::NotPositive`]
    /// for zero (and for a well-formed amount written with a leading `-`),
    /// [`AmountError::TooManyDecimals`] for more places than the currency has, and
    /// [`AmountError::TooLarge`] above the ledger's largest amount.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, AmountError> {
        // A minus sign in front of an otherwise valid amount: say what is wrong with it.
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (unsigned, None),
        };
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (whole.len() > 1 && whole.starts_with('0')) || fraction.is_some_and(|f| !digits(f)) {
            return Err(AmountError::NotANumber);
        }
        let places = fraction.map_or(0, str::len);
        if places > currency.scale() as usize {
            return Err(AmountError::TooManyDecimals(currency.scale()));
        }
        if negative {
            return Err(AmountError::NotPositive);
        }
        // More integer digits than the largest amount has: too large, before a Decimal (28
        // significant digits) could round or overflow.
        if whole.len() > MAX_AMOUNT_DIGITS {
            return Err(AmountError::TooLarge);
        }
        // At most MAX_AMOUNT_DIGITS + scale ASCII digits: exact in a Decimal.
        let value: Decimal = unsigned.parse().map_err(|_| AmountError::NotANumber)?;
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

    fn parse(text: &str) -> Result<Amount, AmountError> {
        Amount::parse(text, Currency::Coin)
    }

    #[test]
    fn an_amount_is_kept_at_the_currency_scale() {
        assert_eq!(parse("25").unwrap().to_string(), "25.00");
        assert_eq!(parse("0.10").unwrap().to_string(), "0.10");
        assert_eq!(parse("0.5").unwrap().to_string(), "0.50");
        assert_eq!(parse("10.1").unwrap().to_string(), "10.10");
        assert_eq!(parse("1000000000").unwrap().to_string(), "1000000000.00");
    }

    #[test]
    fn an_amount_with_too_many_decimals_is_rejected() {
        assert_eq!(parse("1.001"), Err(AmountError::TooManyDecimals(2)));
    }

    #[test]
    fn trailing_zeros_beyond_the_scale_count_as_decimal_places() {
        for text in ["1.500", "10.000", "0.000", "5.0000000000000000000000000000000"] {
            assert_eq!(parse(text), Err(AmountError::TooManyDecimals(2)), "{text}");
        }
    }

    #[test]
    fn excess_precision_is_refused_never_rounded() {
        for text in ["9.9999999999999999999999999999", "9.995", "0.001", "0.0000000000000000000000000001"] {
            assert_eq!(parse(text), Err(AmountError::TooManyDecimals(2)), "{text}");
        }
    }

    #[test]
    fn zero_and_negative_amounts_are_rejected() {
        for text in ["0", "0.0", "0.00", "-5", "-0", "-0.00", "-10.50"] {
            assert_eq!(parse(text), Err(AmountError::NotPositive), "{text}");
        }
    }

    #[test]
    fn text_that_is_not_a_plain_decimal_is_rejected() {
        for bad in ["", "abc", "1e3", "1E3", "NaN", "nan", "Infinity", "-Infinity", "inf", "1,00", "0x10", "1/2"] {
            assert_eq!(parse(bad), Err(AmountError::NotANumber), "{bad}");
        }
    }

    #[test]
    fn a_sign_separator_or_surrounding_whitespace_is_rejected() {
        for bad in [
            "+10",
            "+0.50",
            "1_000.00",
            "1,000.00",
            "1 000.00",
            "1'000.00",
            " 10.00",
            "10.00 ",
            " 10.00\n",
            "\t10",
            "10.00\r\n",
            "\u{a0}10.00",
            "10.\u{200b}00",
            "--5",
            "- 5",
            "5-",
        ] {
            assert_eq!(parse(bad), Err(AmountError::NotANumber), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_integer_or_fraction_part_is_rejected() {
        for bad in [".5", "5.", ".", "-.5", "1..0", "1.2.3", "10.0.0"] {
            assert_eq!(parse(bad), Err(AmountError::NotANumber), "{bad}");
        }
    }

    #[test]
    fn leading_zeros_beyond_one_are_rejected() {
        for bad in ["00.50", "01", "007", "00", "000.00", "-01"] {
            assert_eq!(parse(bad), Err(AmountError::NotANumber), "{bad}");
        }
        assert!(parse("0.50").is_ok());
        assert!(parse("10").is_ok());
        assert!(parse("100.05").is_ok());
    }

    #[test]
    fn digits_other_than_ascii_are_rejected() {
        // Arabic-Indic, full-width, Devanagari, superscript, mathematical bold, a Roman numeral.
        for bad in [
            "\u{661}\u{660}",
            "\u{ff11}\u{ff10}",
            "\u{ff11}\u{ff10}.\u{ff10}\u{ff10}",
            "\u{967}\u{966}",
            "\u{b9}\u{b2}",
            "\u{1d7cf}",
            "\u{2169}",
        ] {
            assert_eq!(parse(bad), Err(AmountError::NotANumber), "{bad}");
        }
        // A full-width full stop or the Arabic decimal separator is not a decimal point.
        assert_eq!(parse("10\u{ff0e}00"), Err(AmountError::NotANumber));
        assert_eq!(parse("10\u{66b}00"), Err(AmountError::NotANumber));
    }

    #[test]
    fn absurdly_large_amounts_are_rejected() {
        assert_eq!(parse("1000000000.01"), Err(AmountError::TooLarge));
        assert_eq!(parse("99999999999"), Err(AmountError::TooLarge));
        // Longer than a Decimal can hold: refused as too large, neither rounded nor overflowed.
        let huge = "9".repeat(40);
        assert_eq!(parse(&huge), Err(AmountError::TooLarge));
        assert_eq!(parse(&format!("{huge}.99")), Err(AmountError::TooLarge));
        assert_eq!(parse(&"1".repeat(100_000)), Err(AmountError::TooLarge));
    }

    #[test]
    fn the_digit_bound_matches_the_largest_amount() {
        assert_eq!(MAX_AMOUNT.to_string().len(), MAX_AMOUNT_DIGITS);
    }

    #[test]
    fn a_very_long_fraction_has_too_many_decimals() {
        assert_eq!(parse(&format!("1.{}", "0".repeat(100_000))), Err(AmountError::TooManyDecimals(2)));
    }

    #[test]
    fn each_error_has_the_code_the_api_answers_with() {
        assert_eq!(AmountError::NotANumber.code(), "invalid_amount");
        assert_eq!(AmountError::NotPositive.code(), "invalid_amount");
        assert_eq!(AmountError::TooLarge.code(), "invalid_amount");
        assert_eq!(AmountError::TooManyDecimals(2).code(), "too_many_decimals");
    }

    #[test]
    fn a_json_number_is_not_an_amount() {
        // What `CreateDepositInput` does: the amount is a String field, so serde refuses numbers.
        #[derive(Debug, serde::Deserialize)]
        struct Input {
            #[allow(dead_code)]
            amount: String,
        }
        for body in [r#"{"amount": 10}"#, r#"{"amount": 10.5}"#, r#"{"amount": 1e3}"#, r#"{"amount": null}"#] {
            assert!(serde_json::from_str::<Input>(body).is_err(), "{body}");
        }
    }

    #[test]
    fn minor_units_round_trip() {
        let a = parse("123.45").unwrap();
        assert_eq!(a.minor_units(Currency::Coin), 12345);
        assert_eq!(Amount::from_minor_units(12345, Currency::Coin).unwrap(), a);
    }

    #[test]
    fn balances_are_formatted_at_scale() {
        assert_eq!(format(Decimal::ZERO, Currency::Coin), "0.00");
        assert_eq!(format(Decimal::new(-150, 2), Currency::Coin), "-1.50");
    }
}

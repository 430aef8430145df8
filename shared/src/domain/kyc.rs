//! KYC: what a person submits to prove who they are, parsed so that an invalid value cannot
//! exist, and the identity of a verification attempt.

use chrono::{Datelike, NaiveDate};
use std::fmt;

/// Why a KYC field was refused. Each maps to a stable API code; none repeats the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KycFieldError {
    #[error("pan must be five letters, four digits and a letter, the fourth letter P (a person), e.g. ABCPV1234Q")]
    InvalidPan,
    #[error("full_name must be 2 to 100 letters, spaces, dots, apostrophes or hyphens")]
    InvalidName,
    #[error("date_of_birth must be a date written YYYY-MM-DD")]
    InvalidDateOfBirth,
    #[error("the person must be at least {0} years old")]
    Underage(u32),
    #[error("consent must be true: we may not check your PAN without it")]
    ConsentRequired,
}

/// An Indian Permanent Account Number of a person: `AAAPA9999A`, the fourth letter `P`.
///
/// Personal data: `Debug` and `Display` print only the masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

impl Pan {
    /// Parses a PAN, forgiving surrounding spaces and lower case.
    ///
    /// # Errors
    /// [`KycFieldError::InvalidPan`] for anything else, including a PAN of a company or trust
    /// (fourth letter other than `P`).
    pub fn parse(text: &str) -> Result<Self, KycFieldError> {
        let pan = text.trim().to_ascii_uppercase();
        let b = pan.as_bytes();
        let ok = b.len() == 10
            && b[..5].iter().all(u8::is_ascii_uppercase)
            && b[5..9].iter().all(u8::is_ascii_digit)
            && b[9].is_ascii_uppercase()
            && b[3] == b'P';
        if ok {
            Ok(Self(pan))
        } else {
            Err(KycFieldError::InvalidPan)
        }
    }

    /// The PAN itself, for the one place that needs it (the provider call, encryption).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `ABCxxxxx1Q`: the first three and the last two characters.
    pub fn masked(&self) -> String {
        format!("{}xxxxx{}", &self.0[..3], &self.0[8..])
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A person's name as on their PAN card. Personal data: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    /// Parses a name: 2–100 characters, letters (any script), spaces, `.`, `'`, `-`; inner
    /// runs of spaces are collapsed.
    ///
    /// # Errors
    /// [`KycFieldError::InvalidName`].
    pub fn parse(text: &str) -> Result<Self, KycFieldError> {
        let name = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let count = name.chars().count();
        let ok = (2..=100).contains(&count)
            && name.chars().any(char::is_alphabetic)
            && name.chars().all(|c| c.is_alphabetic() || matches!(c, ' ' | '.' | '\'' | '-'));
        if ok {
            Ok(Self(name))
        } else {
            Err(KycFieldError::InvalidName)
        }
    }

    /// The name, for the provider call and encryption.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FullName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FullName(<redacted>)")
    }
}

/// The youngest age at which a person may hold a wallet.
pub const MINIMUM_AGE: u32 = 18;

/// A date of birth of an adult. Personal data: never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DateOfBirth(NaiveDate);

impl DateOfBirth {
    /// Parses `YYYY-MM-DD` and checks that the person is an adult on `today` and not
    /// implausibly old (130 years).
    ///
    /// # Errors
    /// [`KycFieldError::InvalidDateOfBirth`] or [`KycFieldError::Underage`].
    pub fn parse(text: &str, today: NaiveDate) -> Result<Self, KycFieldError> {
        let text = text.trim();
        if text.len() != 10 {
            return Err(KycFieldError::InvalidDateOfBirth);
        }
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| KycFieldError::InvalidDateOfBirth)?;
        let age = today.years_since(date).ok_or(KycFieldError::InvalidDateOfBirth)?;
        if date.year() < today.year() - 130 {
            return Err(KycFieldError::InvalidDateOfBirth);
        }
        if age < MINIMUM_AGE {
            return Err(KycFieldError::Underage(MINIMUM_AGE));
        }
        Ok(Self(date))
    }

    /// `YYYY-MM-DD`.
    pub fn iso(&self) -> String {
        self.0.format("%Y-%m-%d").to_string()
    }
}

impl fmt::Debug for DateOfBirth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DateOfBirth(<redacted>)")
    }
}

/// A complete, valid submission.
#[derive(Debug, Clone)]
pub struct KycSubmission {
    pub pan: Pan,
    pub full_name: FullName,
    pub date_of_birth: DateOfBirth,
}

impl KycSubmission {
    /// Parses the fields of `POST /v1/kyc`; consent must be given.
    ///
    /// # Errors
    /// The first [`KycFieldError`] found, consent first.
    pub fn parse(
        pan: &str,
        full_name: &str,
        date_of_birth: &str,
        consent: bool,
        today: NaiveDate,
    ) -> Result<Self, KycFieldError> {
        if !consent {
            return Err(KycFieldError::ConsentRequired);
        }
        Ok(Self {
            pan: Pan::parse(pan)?,
            full_name: FullName::parse(full_name)?,
            date_of_birth: DateOfBirth::parse(date_of_birth, today)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
    }

    #[test]
    fn a_personal_pan_is_accepted_in_any_case_and_masked() {
        let pan = Pan::parse(" abcpv1111q ").unwrap();
        assert_eq!(pan.expose(), "ABCPV1111Q");
        assert_eq!(pan.masked(), "ABCxxxxx1Q");
        assert_eq!(format!("{pan} {pan:?}"), "ABCxxxxx1Q Pan(ABCxxxxx1Q)");
    }

    #[test]
    fn malformed_and_non_personal_pans_are_refused() {
        for bad in [
            "",
            "ABCPV1111",
            "ABCPV11111",
            "ABCCV1111Q",
            "ABCFV1111Q",
            "1BCPV1111Q",
            "ABCPV111AQ",
            "ABCPV11112",
            "ABCPV1111Q1",
            "ÄBCPV1111Q",
        ] {
            assert_eq!(Pan::parse(bad), Err(KycFieldError::InvalidPan), "{bad}");
        }
    }

    #[test]
    fn names_are_normalised_and_bounded() {
        assert_eq!(FullName::parse("  Ada   Lovelace ").unwrap().expose(), "Ada Lovelace");
        assert!(FullName::parse("Ravi O'Neil-Kumar Jr.").is_ok());
        assert!(FullName::parse("रवि कुमार").is_ok());
        for bad in ["", "A", "Robert'); DROP TABLE--", "<script>", "12345", &"a".repeat(101)] {
            assert_eq!(FullName::parse(bad), Err(KycFieldError::InvalidName), "{bad}");
        }
    }

    #[test]
    fn only_adults_with_a_real_date_of_birth_pass() {
        assert!(DateOfBirth::parse("2008-12-02", today()).is_ok());
        assert_eq!(DateOfBirth::parse("2008-12-03", today()), Err(KycFieldError::Underage(18)));
        for bad in ["2000-02-30", "02-01-2000", "2000/01/02", "1850-01-01", "20000-01-01", "2000-1-2"] {
            assert_eq!(DateOfBirth::parse(bad, today()), Err(KycFieldError::InvalidDateOfBirth), "{bad}");
        }
    }

    #[test]
    fn a_submission_needs_consent() {
        let e = KycSubmission::parse("ABCPV1111Q", "Ada Lovelace", "1990-01-31", false, today()).unwrap_err();
        assert_eq!(e, KycFieldError::ConsentRequired);
        assert!(KycSubmission::parse("ABCPV1111Q", "Ada Lovelace", "1990-01-31", true, today()).is_ok());
    }

    #[test]
    fn no_personal_value_prints() {
        let s = KycSubmission::parse("ABCPV1111Q", "Ada Lovelace", "1990-01-31", true, today()).unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("ABCPV1111Q") && !debug.contains("Ada") && !debug.contains("1990"), "{debug}");
    }
}

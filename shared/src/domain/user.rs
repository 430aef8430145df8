//! Users: e-mail, password policy, roles, KYC status and referral codes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a sign-up field was refused. Each maps to a stable API code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The e-mail address is not usable.
    #[error("email is not a valid address")]
    InvalidEmail,
    /// The password breaks the policy; the text says which rule.
    #[error("password {0}")]
    WeakPassword(&'static str),
    /// The referral code is not of the right form.
    #[error("referral_code is not a valid code")]
    InvalidReferralCode,
}

/// A normalised e-mail address: trimmed and lower-cased, so uniqueness is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses and normalises an address.
    ///
    /// # Errors
    /// [`FieldError::InvalidEmail`] for anything that is not `local@domain.tld` within RFC 5321's
    /// length limits, or that contains spaces or control characters.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let normalized = text.trim().to_lowercase();
        let Some((local, domain)) = normalized.rsplit_once('@') else {
            return Err(FieldError::InvalidEmail);
        };
        let ok = !local.is_empty()
            && local.len() <= 64
            && normalized.len() <= 254
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !normalized.chars().any(|c| c.is_whitespace() || c.is_control())
            && !local.contains('@');
        if ok {
            Ok(Self(normalized))
        } else {
            Err(FieldError::InvalidEmail)
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address as shown to someone else (a referrer): `a***@example.com`.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that satisfies the policy. It never prints itself.
pub struct Password(String);

/// Shortest accepted password (NIST SP 800-63B asks for at least 8; we ask for more).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest accepted password (bounds hashing work per request).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Passwords too common to accept whatever their length.
const COMMON_PASSWORDS: &[&str] = &[
    "password123",
    "password1234",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "iloveyou123",
    "passw0rd123",
    "qwerty12345",
    "1q2w3e4r5t",
    "abcdefghij",
    "letmein1234",
    "welcome123",
    "administrator",
    "0123456789",
    "9876543210",
    "password12",
    "qwerty1234",
    "football123",
];

impl Password {
    /// Checks a new password against the policy.
    ///
    /// # Errors
    /// [`FieldError::WeakPassword`] when it is too short, too long, one repeated character, a
    /// well-known password, or contains the e-mail's local part.
    pub fn parse_new(text: &str, email: &Email) -> Result<Self, FieldError> {
        let chars = text.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(FieldError::WeakPassword("must be at least 10 characters long"));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(FieldError::WeakPassword("must be at most 128 characters long"));
        }
        let first = text.chars().next();
        if text.chars().all(|c| Some(c) == first) {
            return Err(FieldError::WeakPassword("must not be one repeated character"));
        }
        let lower = text.to_lowercase();
        if COMMON_PASSWORDS.contains(&lower.as_str()) {
            return Err(FieldError::WeakPassword("is too common"));
        }
        let local = email.as_str().split('@').next().unwrap_or("");
        if local.len() >= 4 && lower.contains(local) {
            return Err(FieldError::WeakPassword("must not contain your e-mail address"));
        }
        Ok(Self(text.to_owned()))
    }

    /// Wraps a password typed at sign-in (no policy: it is only compared).
    pub fn for_login(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// The secret text, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What a user may do. Granted only by an operator, never by a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every signed-up person.
    User,
    /// Operators: webhook logs, adjustments.
    Admin,
}

impl Role {
    /// The role's name as stored and in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored role name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Where a user stands with identity verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KycStatus {
    NotStarted,
    Pending,
    Verified,
    Rejected,
}

impl KycStatus {
    /// The stored and sent name (`NOT_STARTED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KycStatus::NotStarted => "NOT_STARTED",
            KycStatus::Pending => "PENDING",
            KycStatus::Verified => "VERIFIED",
            KycStatus::Rejected => "REJECTED",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "NOT_STARTED" => Some(KycStatus::NotStarted),
            "PENDING" => Some(KycStatus::Pending),
            "VERIFIED" => Some(KycStatus::Verified),
            "REJECTED" => Some(KycStatus::Rejected),
            _ => None,
        }
    }
}

/// A referral code: 8 characters from an alphabet without look-alikes (no I, L, O, U, 0, 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferralCode(String);

const REFERRAL_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
const REFERRAL_LEN: usize = 8;

impl ReferralCode {
    /// A new random code (30^8 ≈ 6.6e11 possibilities; uniqueness is enforced on write).
    pub fn generate() -> Self {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let code =
            (0..REFERRAL_LEN).map(|_| REFERRAL_ALPHABET[rng.gen_range(0..REFERRAL_ALPHABET.len())] as char).collect();
        Self(code)
    }

    /// Parses a code typed by a person: case and dashes/spaces are forgiven.
    ///
    /// # Errors
    /// [`FieldError::InvalidReferralCode`] when it is not 8 characters of the alphabet.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let code: String = text.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_uppercase()).collect();
        if code.len() == REFERRAL_LEN && code.bytes().all(|b| REFERRAL_ALPHABET.contains(&b)) {
            Ok(Self(code))
        } else {
            Err(FieldError::InvalidReferralCode)
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("ada@example.com").unwrap()
    }

    #[test]
    fn a_masked_email_shows_the_first_letter_and_the_domain() {
        assert_eq!(Email::parse("Ada.Lovelace@Example.com").unwrap().masked(), "a***@example.com");
    }

    #[test]
    fn emails_are_normalised_to_lower_case() {
        assert_eq!(Email::parse("  Ada.Lovelace@Example.COM ").unwrap().as_str(), "ada.lovelace@example.com");
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@example..com",
        ] {
            assert_eq!(Email::parse(bad), Err(FieldError::InvalidEmail), "{bad}");
        }
    }

    #[test]
    fn short_common_and_repeated_passwords_are_rejected() {
        assert!(Password::parse_new("short1!", &email()).is_err());
        assert!(Password::parse_new("Password123", &email()).is_err());
        assert!(Password::parse_new("aaaaaaaaaaaa", &email()).is_err());
        assert!(Password::parse_new("my-ada-secret-x", &email()).is_ok());
        assert!(Password::parse_new(&"x1".repeat(65), &email()).is_err());
    }

    #[test]
    fn a_password_containing_the_email_name_is_rejected() {
        let e = Email::parse("margaret@example.com").unwrap();
        assert!(Password::parse_new("margaret-1999!", &e).is_err());
    }

    #[test]
    fn a_password_never_prints_itself() {
        let p = Password::for_login("hunter2-secret");
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn generated_referral_codes_parse_and_typed_ones_are_forgiven() {
        let c = ReferralCode::generate();
        assert_eq!(ReferralCode::parse(c.as_str()).unwrap(), c);
        assert_eq!(ReferralCode::parse("abcd-2345").unwrap().as_str(), "ABCD2345");
        assert!(ReferralCode::parse("ABCD0123").is_err());
        assert!(ReferralCode::parse("ABC").is_err());
    }
}

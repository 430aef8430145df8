//! Identifiers: a short type prefix and a ULID (`usr_01J…`), sortable by creation time.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new, unique id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, ulid::Ulid::new()))
            }

            /// The id derived from `material`: the same material always gives the same id, so
            /// a repeated operation meets the records of the first attempt. Its ULID is the first
            /// 128 bits of SHA-256 over the material, so (unlike a generated id) it carries no
            /// creation time.
            pub fn derived_from(material: &str) -> Self {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(material.as_bytes());
                let mut bytes = [0_u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                Self(format!("{}{}", $prefix, ulid::Ulid::from_bytes(bytes)))
            }

            /// The id derived from this one and a label (the reversal of a deposit, ...).
            pub fn derive(&self, label: &str) -> Self {
                Self::derived_from(&format!("{}#{label}", self.0))
            }

            /// Parses an id sent by a client or read from storage.
            ///
            /// # Errors
            /// `InvalidId` when the text does not have this kind's prefix and a ULID.
            pub fn parse(text: &str) -> Result<Self, InvalidId> {
                let rest = text.strip_prefix($prefix).ok_or(InvalidId)?;
                ulid::Ulid::from_string(rest).map_err(|_| InvalidId)?;
                Ok(Self(text.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

/// The text is not an id of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid identifier")]
pub struct InvalidId;

prefixed_id!(
    /// A user.
    UserId, "usr_"
);
prefixed_id!(
    /// A ledger transaction (one movement of money).
    TransactionId, "txn_"
);
prefixed_id!(
    /// A sign-in session: one family of rotating refresh tokens.
    SessionId, "ses_"
);
prefixed_id!(
    /// One KYC verification attempt (`client_ref` at the provider).
    KycId, "kyc_"
);
prefixed_id!(
    /// A bank account a user may withdraw to.
    BankAccountId, "bac_"
);
prefixed_id!(
    /// A game service's credential (its client id): `svc_` and a ULID.
    ServiceId, "svc_"
);

prefixed_id!(
    /// A call between two users (in the app over WebRTC, or over the phone network).
    CallId, "call_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_id_parses_back() {
        let id = UserId::generate();
        assert_eq!(UserId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn an_id_of_another_kind_is_rejected() {
        let id = TransactionId::generate();
        assert_eq!(UserId::parse(id.as_str()), Err(InvalidId));
        assert_eq!(UserId::parse("usr_not-a-ulid"), Err(InvalidId));
    }
}

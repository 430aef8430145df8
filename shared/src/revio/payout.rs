//! Revio's payouts (EFT to a bank account), as sent and as read back.
//!
//! A payout carries our withdrawal's transaction id as its `reference`; Revio keeps one payout
//! per reference, so a repeated submission meets the first. Statuses: `pending` until the bank
//! answers, then `paid`, `unpaid` or `rejected`; a `paid` payout can later become `returned`
//! when the bank sends the money back.

use super::{json_error_kind, RevioError};
use crate::secrets::SecretString;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where the money goes. The account number is a secret here: never printed.
#[derive(Clone)]
pub struct Recipient {
    pub account_holder: String,
    pub account_number: SecretString,
    pub branch_code: String,
    pub account_type: String,
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipient")
            .field("branch_code", &self.branch_code)
            .field("account_type", &self.account_type)
            .finish()
    }
}

/// A payout to ask Revio for.
#[derive(Debug, Clone)]
pub struct NewPayout {
    /// Our withdrawal's transaction id.
    pub reference: String,
    /// Minor units (cents), strictly positive.
    pub amount_minor: i64,
    /// ISO 4217 code (`ZAR`).
    pub currency: String,
    pub recipient: Recipient,
    /// Where Revio POSTs the payout's webhooks.
    pub callback_url: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct CreatePayoutBody<'a> {
    brand_id: &'a str,
    reference: &'a str,
    amount: i64,
    currency: &'a str,
    recipient: RecipientBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_url: Option<&'a str>,
}

#[derive(Serialize)]
struct RecipientBody<'a> {
    account_holder: &'a str,
    account_number: &'a str,
    branch_code: &'a str,
    account_type: &'a str,
}

impl<'a> CreatePayoutBody<'a> {
    pub(crate) fn new(brand_id: &'a str, p: &'a NewPayout) -> Self {
        Self {
            brand_id,
            reference: &p.reference,
            amount: p.amount_minor,
            currency: &p.currency,
            recipient: RecipientBody {
                account_holder: &p.recipient.account_holder,
                account_number: p.recipient.account_number.expose(),
                branch_code: &p.recipient.branch_code,
                account_type: &p.recipient.account_type,
            },
            callback_url: p.callback_url.as_deref(),
        }
    }
}

/// Where a payout stands at Revio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutStatus {
    Pending,
    Paid,
    Unpaid,
    Rejected,
    /// Paid, then sent back by the bank.
    Returned,
    Other(String),
}

impl PayoutStatus {
    fn parse(text: &str) -> Self {
        match text {
            "pending" => Self::Pending,
            "paid" => Self::Paid,
            "unpaid" => Self::Unpaid,
            "rejected" => Self::Rejected,
            "returned" => Self::Returned,
            other => Self::Other(other.chars().take(32).collect()),
        }
    }
}

/// A payout as Revio reports it (only what Purse acts on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub id: String,
    pub status: PayoutStatus,
    pub reference: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub failure_reason: Option<String>,
}

#[derive(Deserialize)]
struct Wire {
    id: Option<serde_json::Value>,
    status: Option<serde_json::Value>,
    reference: Option<serde_json::Value>,
    amount: Option<serde_json::Value>,
    currency: Option<serde_json::Value>,
    failure_reason: Option<serde_json::Value>,
}

fn text(v: Option<&serde_json::Value>) -> Option<String> {
    v.and_then(|v| v.as_str()).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

impl Payout {
    /// Reads a payout JSON object.
    ///
    /// # Errors
    /// [`RevioError::Malformed`] when `id`, `status`, `amount` or `currency` is missing.
    pub fn from_value(value: serde_json::Value) -> Result<Self, RevioError> {
        let wire: Wire = serde_json::from_value(value)
            .map_err(|e| RevioError::Malformed(format!("payout is not a JSON object ({})", json_error_kind(&e))))?;
        let missing = |field: &str| RevioError::Malformed(format!("payout has no valid `{field}`"));
        Ok(Self {
            id: text(wire.id.as_ref()).ok_or_else(|| missing("id"))?,
            status: text(wire.status.as_ref()).map(|s| PayoutStatus::parse(&s)).ok_or_else(|| missing("status"))?,
            reference: text(wire.reference.as_ref()),
            amount_minor: wire.amount.as_ref().and_then(serde_json::Value::as_i64).ok_or_else(|| missing("amount"))?,
            currency: text(wire.currency.as_ref())
                .map(|c| c.to_ascii_uppercase())
                .ok_or_else(|| missing("currency"))?,
            failure_reason: text(wire.failure_reason.as_ref()).map(|r| r.chars().take(64).collect()),
        })
    }

    /// Reads a payout from an answer body.
    ///
    /// # Errors
    /// [`RevioError::Malformed`].
    pub fn from_json(body: &[u8]) -> Result<Self, RevioError> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| RevioError::Malformed(format!("payout is not JSON ({})", json_error_kind(&e))))?;
        Self::from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_payout_is_read_with_its_status_and_reason() {
        let p = Payout::from_value(json!({"id": "p1", "status": "returned", "reference": "txn_1", "amount": 2500, "currency": "zar", "failure_reason": "returned_by_bank", "recipient": {"account_number_masked": "xxxxx0001"}})).unwrap();
        assert_eq!((p.status, p.amount_minor, p.currency.as_str()), (PayoutStatus::Returned, 2500, "ZAR"));
        assert!(Payout::from_value(json!({"id": "p1", "status": "paid"})).is_err());
    }

    #[test]
    fn a_recipient_never_prints_its_account_number() {
        let r = Recipient {
            account_holder: "Ada".into(),
            account_number: SecretString::new("110000001".into()),
            branch_code: "250655".into(),
            account_type: "cheque".into(),
        };
        assert!(!format!("{r:?}").contains("110000001"));
    }
}

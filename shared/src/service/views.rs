//! JSON shapes of ledger movements as the API sends them: exact decimals as strings.

use crate::domain::ids::UserId;
use crate::ledger::{AccountId, Transaction};
use serde::Serialize;

/// One movement as its owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct TransactionView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub amount: String,
    pub currency: &'static str,
    /// `credit` when money comes into the owner's wallet, `debit` when it leaves, `none` when
    /// the movement is the owner's but did not touch their wallet (an uncovered reversal).
    pub direction: &'static str,
    pub description: String,
    pub reference: Option<String>,
    pub failure_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
    /// A withdrawal's payout: `SUBMITTING`, `SUBMITTED`, or `STUCK` (an operator is looking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_status: Option<String>,
    /// The bank account a withdrawal pays to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_account_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

impl TransactionView {
    /// The view of `tx` for its owner.
    pub fn of(tx: &Transaction, owner: &UserId) -> Self {
        let wallet = AccountId::wallet(owner);
        // A split movement (a call's payout) shows the owner their own leg.
        // (None of it, when their leg was zero and left out: the whole went elsewhere.)
        let own_leg = (!tx.legs.is_empty()).then(|| {
            tx.legs
                .iter()
                .find(|(account, _)| account == wallet.as_str())
                .map_or(rust_decimal::Decimal::ZERO, |(_, a)| *a)
        });
        // `none`: a movement of the owner's that did not touch their wallet (the part of a
        // reversal the wallet could not cover, owed instead).
        let direction = if own_leg.is_some_and(|a| !a.is_zero()) || tx.credit_account == wallet.as_str() {
            "credit"
        } else if tx.debit_account == wallet.as_str() {
            "debit"
        } else {
            "none"
        };
        Self {
            id: tx.id.to_string(),
            kind: tx.kind.as_str(),
            status: tx.status.as_str(),
            amount: crate::money::format(own_leg.unwrap_or_else(|| tx.amount.value()), tx.currency),
            currency: tx.currency.code(),
            direction,
            description: tx.description.clone(),
            reference: tx.reference.clone(),
            failure_reason: tx.failure_reason.clone(),
            checkout_url: (tx.status == crate::ledger::TransactionStatus::Pending)
                .then(|| tx.checkout_url.clone())
                .flatten(),
            payout_status: tx.payout_state.clone(),
            bank_account_id: tx.bank_account_id.clone(),
            created_at: tx.created_at.clone(),
            updated_at: tx.updated_at.clone(),
            completed_at: tx.completed_at.clone(),
        }
    }
}

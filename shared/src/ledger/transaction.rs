//! Ledger transactions: one movement of money from a debit account to a credit account.

use super::AccountId;
use crate::domain::ids::{TransactionId, UserId};
use crate::money::{Amount, Currency};
use serde::{Deserialize, Serialize};

/// What a movement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionType {
    Deposit,
    Withdrawal,
    GameFee,
    Reward,
    ReferralReward,
    CallCharge,
    /// A callee's share of a call, paid out of the call's escrow when it ends (the platform's
    /// share is a second leg of the same movement).
    CallEarning,
    Adjustment,
    /// Money Revio took back after a deposit (refund, chargeback), or its later recovery.
    Reversal,
    /// A paid-out withdrawal the bank returned: the amount credited back to the wallet.
    WithdrawalReversal,
}

impl TransactionType {
    /// Every type, for parsing and documentation.
    pub const ALL: [TransactionType; 10] = [
        TransactionType::Deposit,
        TransactionType::Withdrawal,
        TransactionType::GameFee,
        TransactionType::Reward,
        TransactionType::ReferralReward,
        TransactionType::CallCharge,
        TransactionType::CallEarning,
        TransactionType::Adjustment,
        TransactionType::Reversal,
        TransactionType::WithdrawalReversal,
    ];

    /// The stored and sent name (`DEPOSIT`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionType::Deposit => "DEPOSIT",
            TransactionType::Withdrawal => "WITHDRAWAL",
            TransactionType::GameFee => "GAME_FEE",
            TransactionType::Reward => "REWARD",
            TransactionType::ReferralReward => "REFERRAL_REWARD",
            TransactionType::CallCharge => "CALL_CHARGE",
            TransactionType::CallEarning => "CALL_EARNING",
            TransactionType::Adjustment => "ADJUSTMENT",
            TransactionType::Reversal => "REVERSAL",
            TransactionType::WithdrawalReversal => "WITHDRAWAL_REVERSAL",
        }
    }

    /// Parses a stored or requested name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Where a movement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionStatus {
    /// Recorded; money not moved yet (a hold may reserve it).
    Pending,
    /// Money moved.
    Completed,
    /// Will never move; any hold released.
    Failed,
}

impl TransactionStatus {
    /// The stored and sent name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Pending => "PENDING",
            TransactionStatus::Completed => "COMPLETED",
            TransactionStatus::Failed => "FAILED",
        }
    }

    /// Parses a stored or requested name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "PENDING" => Some(TransactionStatus::Pending),
            "COMPLETED" => Some(TransactionStatus::Completed),
            "FAILED" => Some(TransactionStatus::Failed),
            _ => None,
        }
    }
}

/// One side of a movement whose concrete account is chosen when money moves (system accounts
/// are sharded, so the shard is picked at posting time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// A specific account (a wallet).
    Account(AccountId),
    /// Any shard of a system account.
    System(super::SystemAccount),
}

impl Side {
    /// The concrete account to post to.
    pub fn resolve(&self) -> AccountId {
        match self {
            Side::Account(a) => a.clone(),
            Side::System(s) => AccountId::system_any_shard(*s),
        }
    }

    /// How the side is stored before posting (`system:<name>` for "any shard").
    pub fn stored(&self) -> String {
        match self {
            Side::Account(a) => a.to_string(),
            Side::System(s) => format!("system:{}", s.name()),
        }
    }

    /// Parses the stored form.
    pub fn from_stored(text: &str) -> Self {
        super::SystemAccount::ALL
            .into_iter()
            .find(|s| text == format!("system:{}", s.name()))
            .map(Side::System)
            .unwrap_or_else(|| Side::Account(AccountId::from_stored(text)))
    }
}

/// A movement to record.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    pub id: TransactionId,
    /// Whose history it appears in.
    pub user_id: UserId,
    pub kind: TransactionType,
    pub amount: Amount,
    pub currency: Currency,
    pub debit: Side,
    pub credit: Side,
    pub description: String,
    /// An outside reference (a Revio purchase id, a call id, ...).
    pub reference: Option<String>,
}

/// A stored movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: TransactionId,
    pub user_id: UserId,
    pub kind: TransactionType,
    pub status: TransactionStatus,
    pub amount: Amount,
    pub currency: Currency,
    /// The debit side as stored (`system:revio_clearing` until posted, then the shard).
    pub debit_account: String,
    pub credit_account: String,
    /// Whether the amount is reserved on the debit account while PENDING.
    pub held: bool,
    pub description: String,
    pub reference: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// Provider data kept with the movement (e.g. the checkout URL of a deposit).
    pub checkout_url: Option<String>,
    /// The counter ([`super::Quota`]) this movement was counted against, given back if it fails.
    pub quota_key: Option<String>,
    /// The movement that reversed this one (a refunded or charged-back deposit).
    pub reversed_by: Option<TransactionId>,
    /// Why it was reversed (`refunded`, `chargeback`).
    pub reversal_reason: Option<String>,
    /// A withdrawal's payout at Revio: `SUBMITTING`, `SUBMITTED`, `STUCK` (retries exhausted,
    /// an operator must look), absent before the worker took it.
    pub payout_state: Option<String>,
    /// The bank account a withdrawal pays to.
    pub bank_account_id: Option<String>,
    /// A split movement's credit legs (account as stored, amount), summing to `amount`; empty
    /// for a plain two-sided movement, whose one credit is `credit_account`.
    pub legs: Vec<(String, rust_decimal::Decimal)>,
}

impl Transaction {
    /// Where a COMPLETED movement's money went: its legs, or its one credit account.
    pub fn credits(&self) -> Vec<(String, rust_decimal::Decimal)> {
        if self.legs.is_empty() {
            vec![(self.credit_account.clone(), self.amount.value())]
        } else {
            self.legs.clone()
        }
    }
}

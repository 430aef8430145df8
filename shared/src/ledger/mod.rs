//! The double-entry ledger.
//!
//! Every movement of money is a transfer from one account to another. User wallets and system
//! accounts together always sum to zero, and every balance equals the sum of the transfers that
//! touched it. An account keeps three numbers: `balance` (what it owns), `held` (reserved for a
//! pending debit) and `available = balance - held`, which is what a debit's condition checks in
//! the same DynamoDB write as the debit itself.

pub mod audit;
pub mod store;
pub mod transaction;

pub use store::{
    CreditCounter, Escrow, HeldPosting, LedgerError, Leg, NewHold, NewSplit, Quota, Recovery, Reversed, Settled,
};
pub use transaction::{NewTransaction, Side, Transaction, TransactionStatus, TransactionType};

use crate::domain::ids::UserId;
use rust_decimal::Decimal;
use serde::Serialize;
use std::fmt;

/// How many shards each system account is split into, so that no single item takes every
/// transfer's write (DynamoDB allows ~1,000 writes/s per partition; a transactional write counts
/// twice).
pub const SYSTEM_ACCOUNT_SHARDS: u16 = 32;

/// The accounts the platform itself owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemAccount {
    /// Money Revio has collected for us; negative as users are credited.
    RevioClearing,
    /// Source of referral and promotional rewards.
    RewardsPool,
    /// Fees and call charges earned.
    PlatformRevenue,
    /// Manual corrections by operators.
    Adjustments,
    /// What users owe after a reversal (refund, chargeback) their wallet could not cover.
    Receivables,
}

impl SystemAccount {
    /// Every system account.
    pub const ALL: [SystemAccount; 5] = [
        SystemAccount::RevioClearing,
        SystemAccount::RewardsPool,
        SystemAccount::PlatformRevenue,
        SystemAccount::Adjustments,
        SystemAccount::Receivables,
    ];

    /// Stable name used in account ids.
    pub fn name(self) -> &'static str {
        match self {
            SystemAccount::RevioClearing => "revio_clearing",
            SystemAccount::RewardsPool => "rewards_pool",
            SystemAccount::PlatformRevenue => "platform_revenue",
            SystemAccount::Adjustments => "adjustments",
            SystemAccount::Receivables => "receivables",
        }
    }
}

/// The id of a ledger account: `wallet:<user_id>` or `system:<name>:<shard>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AccountId(String);

impl AccountId {
    /// The wallet of a user.
    pub fn wallet(user: &UserId) -> Self {
        Self(format!("wallet:{user}"))
    }

    /// One shard of a system account.
    pub fn system(account: SystemAccount, shard: u16) -> Self {
        Self(format!("system:{}:{:02}", account.name(), shard % SYSTEM_ACCOUNT_SHARDS))
    }

    /// The escrow of a call: what its caller has paid and its parties have not been paid yet.
    /// The call's own item is this account (see [`store::post_held`]).
    pub fn call(call: &crate::domain::ids::CallId) -> Self {
        Self(format!("call:{call}"))
    }

    /// Whether this is a call's escrow.
    pub fn is_call(&self) -> bool {
        self.0.starts_with("call:")
    }

    /// A random shard of a system account, spreading writes.
    pub fn system_any_shard(account: SystemAccount) -> Self {
        use rand::Rng;
        Self::system(account, rand::thread_rng().gen_range(0..SYSTEM_ACCOUNT_SHARDS))
    }

    /// Wraps a stored id.
    pub fn from_stored(id: &str) -> Self {
        Self(id.to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a user's wallet.
    pub fn is_wallet(&self) -> bool {
        self.0.starts_with("wallet:")
    }

    /// The user whose wallet this is; `None` for a system account.
    pub fn wallet_owner(&self) -> Option<UserId> {
        self.0.strip_prefix("wallet:").and_then(|u| UserId::parse(u).ok())
    }

    /// Whether this is one shard of a system account (`system:<name>:<nn>`).
    pub fn is_system(&self) -> bool {
        SystemAccount::ALL.iter().any(|a| {
            self.0
                .strip_prefix("system:")
                .and_then(|rest| rest.strip_prefix(a.name()))
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|shard| shard.parse::<u16>().is_ok_and(|n| n < SYSTEM_ACCOUNT_SHARDS))
        })
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ledger account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub currency: crate::money::Currency,
    pub balance: Decimal,
    pub held: Decimal,
    pub available: Decimal,
    pub updated_at: String,
}

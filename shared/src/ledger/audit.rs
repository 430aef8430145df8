//! The ledger audit: proves invariant 2 over the whole ledger, or lists every difference.
//!
//! For every account, `balance` must equal the sum of COMPLETED movements into it minus those
//! out of it, `held` must equal the PENDING movements holding money on it, and
//! `available = balance - held`. A split movement (a call's payout: the callee's share and the
//! platform's) credits each of its legs, and its legs must sum to its amount. A call's item is
//! an account too, its escrow, which must hold exactly what its minutes paid in minus its
//! payout. All balances together must sum to zero. The audit reads the whole table (a paginated
//! Scan): it is an operator's tool, never on a request path.

use super::store::{account_from_item, transaction_from_item};
use super::{Account, TransactionStatus};
use crate::store::item::{Item, ItemExt};
use crate::store::{StoreError, Table};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// What the audit found.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    pub accounts: usize,
    pub transactions: usize,
    /// Sum of every account's balance (must be zero).
    pub total: Decimal,
    /// Every difference, in words; empty when the ledger is right.
    pub differences: Vec<String>,
}

impl AuditReport {
    /// Whether the ledger is right.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

#[derive(Default)]
struct Expected {
    balance: Decimal,
    held: Decimal,
}

/// Audits the whole ledger.
///
/// # Errors
/// [`StoreError`] when the table cannot be read or an item is corrupt.
pub async fn run(table: &Table) -> Result<AuditReport, StoreError> {
    let mut accounts: Vec<Account> = Vec::new();
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let mut report = AuditReport::default();
    let mut start: Option<Item> = None;
    loop {
        let out = table
            .client
            .scan()
            .table_name(&table.name)
            .consistent_read(true)
            .filter_expression("entity IN (:account, :transaction, :call)")
            .expression_attribute_values(":account", crate::store::item::s("account"))
            .expression_attribute_values(":call", crate::store::item::s("call"))
            .expression_attribute_values(":transaction", crate::store::item::s("transaction"))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        for item in out.items() {
            match item.opt_str("entity") {
                // A call is also an account: its escrow (`call:<id>`).
                Some("account" | "call") => accounts.push(account_from_item(item)?),
                Some("transaction") => {
                    let tx = transaction_from_item(item)?;
                    report.transactions += 1;
                    let amount = tx.amount.value();
                    match tx.status {
                        TransactionStatus::Completed => {
                            expected.entry(tx.debit_account.clone()).or_default().balance -= amount;
                            let credits = tx.credits();
                            let credited: Decimal = credits.iter().map(|(_, a)| *a).sum();
                            if credited != amount {
                                report
                                    .differences
                                    .push(format!("{}: its legs credit {credited} but it moved {amount}", tx.id));
                            }
                            for (account, value) in credits {
                                expected.entry(account).or_default().balance += value;
                            }
                        }
                        TransactionStatus::Pending if tx.held => {
                            expected.entry(tx.debit_account.clone()).or_default().held += amount;
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }

    report.accounts = accounts.len();
    for account in &accounts {
        let want = expected.remove(account.id.as_str()).unwrap_or_default();
        report.total += account.balance;
        if account.balance != want.balance {
            report.differences.push(format!(
                "{}: balance {} but its completed movements sum to {}",
                account.id, account.balance, want.balance
            ));
        }
        if account.held != want.held {
            report
                .differences
                .push(format!("{}: held {} but its pending holds sum to {}", account.id, account.held, want.held));
        }
        if account.available != account.balance - account.held {
            report.differences.push(format!(
                "{}: available {} is not balance {} minus held {}",
                account.id, account.available, account.balance, account.held
            ));
        }
    }
    for (account, want) in expected {
        if !want.balance.is_zero() || !want.held.is_zero() {
            report.differences.push(format!("{account}: movements reference an account that does not exist"));
        }
    }
    if !report.total.is_zero() {
        report.differences.push(format!("all balances sum to {} instead of zero", report.total));
    }
    Ok(report)
}

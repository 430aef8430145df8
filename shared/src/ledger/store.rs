//! DynamoDB layout of ledger accounts.

use super::{Account, AccountId};
use crate::domain::ids::UserId;
use crate::money::Currency;
use crate::store::item::{key, n, s, Item, ItemExt};
use crate::store::{StoreError, Table};

/// The key of an account item.
pub fn account_key(id: &AccountId) -> Item {
    key(format!("ACCOUNT#{id}"), "ACCOUNT")
}

/// A new, empty account item.
pub fn new_account_item(id: &AccountId, currency: Currency, owner: Option<&UserId>, now: &str) -> Item {
    let mut item = account_key(id);
    item.insert("entity".into(), s("account"));
    item.insert("account_id".into(), s(id.as_str()));
    item.insert("currency".into(), s(currency.code()));
    item.insert("balance".into(), n(0));
    item.insert("held".into(), n(0));
    item.insert("available".into(), n(0));
    item.insert("created_at".into(), s(now));
    item.insert("updated_at".into(), s(now));
    if let Some(owner) = owner {
        item.insert("owner_id".into(), s(owner.as_str()));
    }
    item
}

/// Reads an account item.
///
/// # Errors
/// [`StoreError::Corrupt`] when an attribute is missing.
pub fn account_from_item(item: &Item) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::from_stored(item.str("account_id")?),
        currency: Currency::parse(item.str("currency")?)
            .ok_or_else(|| StoreError::Corrupt("account currency".into()))?,
        balance: item.decimal("balance")?,
        held: item.decimal("held")?,
        available: item.decimal("available")?,
        updated_at: item.str("updated_at")?.to_owned(),
    })
}

/// One account, read consistently.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get_account(table: &Table, id: &AccountId) -> Result<Option<Account>, StoreError> {
    crate::store::get_item(table, account_key(id)).await?.as_ref().map(account_from_item).transpose()
}

// ------------------------------------------------------------------------------------------
// Transactions
// ------------------------------------------------------------------------------------------

use super::transaction::{NewTransaction, Side, Transaction, TransactionStatus, TransactionType};
use crate::domain::ids::TransactionId;
use crate::money::Amount;
use crate::store::{cancellation_reasons, get_item, now_rfc3339, put_new};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

/// Shards of the index of PENDING movements that reconciliation walks.
pub const PENDING_INDEX_SHARDS: u32 = 8;

/// Why a ledger write did not happen. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The debit account's available balance does not cover the amount.
    #[error("insufficient available balance")]
    InsufficientFunds,
    /// No such transaction.
    #[error("transaction not found")]
    NotFound,
    /// The transaction is no longer PENDING (it is this status).
    #[error("transaction is already {}", .0.as_str())]
    AlreadyFinal(TransactionStatus),
    /// A transaction with this id already exists.
    #[error("transaction already exists")]
    Duplicate,
    /// A wallet named by the movement does not exist.
    #[error("account does not exist")]
    AccountMissing,
    /// A concurrent write touched the same items; safe to retry.
    #[error("write conflict; retry")]
    Conflict,
    /// A limit checked in the same write (such as a daily deposit cap) would be exceeded.
    #[error("limit exceeded")]
    LimitExceeded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key of a transaction item.
pub fn transaction_key(id: &TransactionId) -> Item {
    key(format!("TXN#{id}"), "TXN")
}

/// The history index key of a user's transactions (`gsi1pk`).
pub fn history_partition(user: &UserId) -> String {
    format!("USER#{user}#TXN")
}

/// The index partition listing PENDING movements of a type, sharded by id.
pub fn pending_partition(kind: TransactionType, id: &TransactionId) -> String {
    let shard =
        id.as_str().bytes().fold(0_u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % PENDING_INDEX_SHARDS;
    pending_partition_shard(kind, shard)
}

/// One shard of the PENDING index for a type.
pub fn pending_partition_shard(kind: TransactionType, shard: u32) -> String {
    format!("PENDING#{}#{shard}", kind.as_str())
}

fn transaction_item(new: &NewTransaction, status: TransactionStatus, held: bool, now: &str) -> Item {
    let mut item = transaction_key(&new.id);
    item.insert("entity".into(), s("transaction"));
    item.insert("transaction_id".into(), s(new.id.as_str()));
    item.insert("user_id".into(), s(new.user_id.as_str()));
    item.insert("type".into(), s(new.kind.as_str()));
    item.insert("status".into(), s(status.as_str()));
    item.insert("amount".into(), n(new.amount.value()));
    item.insert("currency".into(), s(new.currency.code()));
    item.insert("debit_account".into(), s(new.debit.stored()));
    item.insert("credit_account".into(), s(new.credit.stored()));
    item.insert("held".into(), AttributeValue::Bool(held));
    item.insert("description".into(), s(&new.description));
    if let Some(r) = &new.reference {
        item.insert("reference".into(), s(r));
    }
    item.insert("created_at".into(), s(now));
    item.insert("updated_at".into(), s(now));
    item.insert("gsi1pk".into(), s(history_partition(&new.user_id)));
    item.insert("gsi1sk".into(), s(format!("{now}#{}", new.id)));
    if status == TransactionStatus::Pending {
        item.insert("gsi2pk".into(), s(pending_partition(new.kind, &new.id)));
        item.insert("gsi2sk".into(), s(format!("{now}#{}", new.id)));
    }
    item
}

/// Reads a transaction item.
///
/// # Errors
/// [`StoreError::Corrupt`] when an attribute is missing or invalid.
pub fn transaction_from_item(item: &Item) -> Result<Transaction, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("transaction item: {what}"));
    let currency = Currency::parse(item.str("currency")?).ok_or_else(|| corrupt("currency"))?;
    Ok(Transaction {
        id: TransactionId::parse(item.str("transaction_id")?).map_err(|_| corrupt("transaction_id"))?,
        user_id: UserId::parse(item.str("user_id")?).map_err(|_| corrupt("user_id"))?,
        kind: TransactionType::parse(item.str("type")?).ok_or_else(|| corrupt("type"))?,
        status: TransactionStatus::parse(item.str("status")?).ok_or_else(|| corrupt("status"))?,
        amount: Amount::new(item.decimal("amount")?, currency).map_err(|_| corrupt("amount"))?,
        currency,
        debit_account: item.str("debit_account")?.to_owned(),
        credit_account: item.str("credit_account")?.to_owned(),
        held: item.flag("held"),
        description: item.opt_str("description").unwrap_or_default().to_owned(),
        reference: item.opt_str("reference").map(str::to_owned),
        failure_reason: item.opt_str("failure_reason").map(str::to_owned),
        created_at: item.str("created_at")?.to_owned(),
        updated_at: item.str("updated_at")?.to_owned(),
        completed_at: item.opt_str("completed_at").map(str::to_owned),
        checkout_url: item.opt_str("checkout_url").map(str::to_owned),
    })
}

/// One transaction, read consistently.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get_transaction(table: &Table, id: &TransactionId) -> Result<Option<Transaction>, StoreError> {
    get_item(table, transaction_key(id)).await?.as_ref().map(transaction_from_item).transpose()
}

/// How a posting changes one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Movement {
    /// Credit: balance and available grow.
    Credit,
    /// Debit of available money: the condition `available >= amount` is part of the write.
    Debit,
    /// Debit of money held earlier for this movement: balance and held shrink.
    DebitHeld,
    /// Reserve: available shrinks, held grows, under `available >= amount`.
    Hold,
    /// Release a reservation: held shrinks, available grows.
    Release,
}

/// The update of one account. Wallets must exist and may never go below zero available;
/// system account shards are created on first use and may go negative (they mirror the outside
/// world: Revio clearing is negative by what Revio holds for us).
fn account_update(
    table: &Table,
    account: &AccountId,
    movement: Movement,
    amount: Amount,
    currency: Currency,
    now: &str,
) -> Result<TransactWriteItem, StoreError> {
    let (set, condition) = match movement {
        Movement::Credit => ("balance = balance + :a, available = available + :a", None),
        Movement::Debit => ("balance = balance - :a, available = available - :a", Some("available >= :a")),
        Movement::DebitHeld => ("balance = balance - :a, held = held - :a", Some("held >= :a")),
        Movement::Hold => ("held = held + :a, available = available - :a", Some("available >= :a")),
        Movement::Release => ("held = held - :a, available = available + :a", Some("held >= :a")),
    };
    let mut update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(account_key(account)))
        .expression_attribute_values(":a", n(amount.value()))
        .expression_attribute_values(":now", s(now));
    if account.is_wallet() {
        let cond = match condition {
            Some(c) => format!("attribute_exists(pk) AND currency = :cur AND {c}"),
            None => "attribute_exists(pk) AND currency = :cur".to_owned(),
        };
        update = update
            .update_expression(format!("SET {set}, updated_at = :now"))
            .condition_expression(cond)
            .expression_attribute_values(":cur", s(currency.code()));
    } else {
        // System shards: created on first use, never conditioned on balance.
        let sign = match movement {
            Movement::Credit => "+",
            _ => "-",
        };
        update = update
            .update_expression(format!(
                "SET balance = if_not_exists(balance, :zero) {sign} :a, available = if_not_exists(available, :zero) {sign} :a, \
                 held = if_not_exists(held, :zero), account_id = if_not_exists(account_id, :id), \
                 currency = if_not_exists(currency, :cur), entity = if_not_exists(entity, :entity), \
                 created_at = if_not_exists(created_at, :now), updated_at = :now"
            ))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":id", s(account.as_str()))
            .expression_attribute_values(":cur", s(currency.code()))
            .expression_attribute_values(":entity", s("account"));
    }
    Ok(TransactWriteItem::builder().update(update.build().map_err(StoreError::dynamo)?).build())
}

async fn write(table: &Table, items: Vec<TransactWriteItem>) -> Result<(), Vec<String>> {
    match table.client.transact_write_items().set_transact_items(Some(items)).send().await {
        Ok(_) => Ok(()),
        Err(e) => match cancellation_reasons(&e) {
            Some(reasons) => Err(reasons),
            None => Err(vec![format!("error: {}", StoreError::dynamo(e))]),
        },
    }
}

/// Maps a cancelled write to the error of the first item that refused it.
fn refusal(reasons: &[String], meaning: &[LedgerError]) -> LedgerError {
    if let Some(err) = reasons.iter().find(|r| r.starts_with("error: ")) {
        return LedgerError::Store(StoreError::Dynamo(err.clone()));
    }
    for (i, r) in reasons.iter().enumerate() {
        if r == "ConditionalCheckFailed" {
            return match meaning.get(i) {
                Some(LedgerError::InsufficientFunds) => LedgerError::InsufficientFunds,
                Some(LedgerError::Duplicate) => LedgerError::Duplicate,
                Some(LedgerError::AccountMissing) => LedgerError::AccountMissing,
                Some(LedgerError::NotFound) => LedgerError::NotFound,
                Some(LedgerError::LimitExceeded) => LedgerError::LimitExceeded,
                _ => LedgerError::Store(StoreError::Dynamo(format!("condition failed at item {i}"))),
            };
        }
    }
    if reasons.iter().any(|r| r == "TransactionConflict") {
        return LedgerError::Conflict;
    }
    LedgerError::Store(StoreError::Dynamo(format!("transaction cancelled: {reasons:?}")))
}

/// Records a PENDING movement without moving money (a deposit awaiting payment), together with
/// `extra` items (such as a daily-limit counter) in the same write.
///
/// # Errors
/// [`LedgerError::Duplicate`] when the id exists; `extra_meaning` names what a failed
/// condition on each extra item means.
pub async fn record_pending(
    table: &Table,
    new: &NewTransaction,
    extra: Vec<TransactWriteItem>,
    extra_meaning: Vec<LedgerError>,
) -> Result<Transaction, LedgerError> {
    let now = now_rfc3339();
    let item = transaction_item(new, TransactionStatus::Pending, false, &now);
    let tx = transaction_from_item(&item)?;
    let mut items = vec![put_new(table, item)?];
    items.extend(extra);
    let mut meaning = vec![LedgerError::Duplicate];
    meaning.extend(extra_meaning);
    write(table, items).await.map_err(|r| refusal(&r, &meaning))?;
    Ok(tx)
}

/// Records a PENDING movement and reserves its amount on the debit wallet, in one write whose
/// condition is that the wallet's available balance covers it.
///
/// # Errors
/// [`LedgerError::InsufficientFunds`], [`LedgerError::AccountMissing`], [`LedgerError::Duplicate`].
pub async fn hold(table: &Table, new: &NewTransaction) -> Result<Transaction, LedgerError> {
    let Side::Account(debit) = &new.debit else {
        return Err(LedgerError::Store(StoreError::Corrupt("only a wallet can hold money".into())));
    };
    let now = now_rfc3339();
    let item = transaction_item(new, TransactionStatus::Pending, true, &now);
    let tx = transaction_from_item(&item)?;
    let items =
        vec![put_new(table, item)?, account_update(table, debit, Movement::Hold, new.amount, new.currency, &now)?];
    write(table, items).await.map_err(|r| refusal(&r, &[LedgerError::Duplicate, LedgerError::InsufficientFunds]))?;
    Ok(tx)
}

/// Moves money at once: a COMPLETED movement, the debit (conditioned on available funds for a
/// wallet) and the credit, in one write.
///
/// # Errors
/// [`LedgerError::InsufficientFunds`], [`LedgerError::AccountMissing`], [`LedgerError::Duplicate`].
pub async fn transfer(table: &Table, new: &NewTransaction) -> Result<Transaction, LedgerError> {
    let now = now_rfc3339();
    let debit = new.debit.resolve();
    let credit = new.credit.resolve();
    let mut resolved = new.clone();
    resolved.debit = Side::Account(debit.clone());
    resolved.credit = Side::Account(credit.clone());
    let mut item = transaction_item(&resolved, TransactionStatus::Completed, false, &now);
    item.insert("completed_at".into(), s(&now));
    let tx = transaction_from_item(&item)?;
    let items = vec![
        put_new(table, item)?,
        account_update(table, &debit, Movement::Debit, new.amount, new.currency, &now)?,
        account_update(table, &credit, Movement::Credit, new.amount, new.currency, &now)?,
    ];
    write(table, items).await.map_err(|r| {
        refusal(&r, &[LedgerError::Duplicate, LedgerError::InsufficientFunds, LedgerError::AccountMissing])
    })?;
    Ok(tx)
}

/// The outcome of settling a PENDING movement.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The movement after the call.
    pub transaction: Transaction,
    /// `true` when this call changed it; `false` when it was already in the requested state
    /// (a retry or a duplicate event), in which case nothing was written.
    pub changed: bool,
}

/// Posts a PENDING movement: PENDING → COMPLETED, the debit and the credit, in one write
/// (3 items, 6 write units). Posting an already COMPLETED movement changes nothing and says so;
/// a FAILED one is refused.
///
/// # Errors
/// [`LedgerError::AlreadyFinal`] for a FAILED movement, [`LedgerError::NotFound`],
/// [`LedgerError::InsufficientFunds`] (unheld wallet debit), [`LedgerError::Conflict`].
pub async fn post(table: &Table, id: &TransactionId) -> Result<Settled, LedgerError> {
    let tx = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?;
    match tx.status {
        TransactionStatus::Completed => return Ok(Settled { transaction: tx, changed: false }),
        TransactionStatus::Failed => return Err(LedgerError::AlreadyFinal(TransactionStatus::Failed)),
        TransactionStatus::Pending => {}
    }
    let now = now_rfc3339();
    let debit = Side::from_stored(&tx.debit_account).resolve();
    let credit = Side::from_stored(&tx.credit_account).resolve();
    let mark = Update::builder()
        .table_name(&table.name)
        .set_key(Some(transaction_key(id)))
        .update_expression(
            "SET #status = :completed, debit_account = :debit, credit_account = :credit, completed_at = :now, updated_at = :now \
             REMOVE gsi2pk, gsi2sk",
        )
        .condition_expression("#status = :pending")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":completed", s(TransactionStatus::Completed.as_str()))
        .expression_attribute_values(":pending", s(TransactionStatus::Pending.as_str()))
        .expression_attribute_values(":debit", s(debit.as_str()))
        .expression_attribute_values(":credit", s(credit.as_str()))
        .expression_attribute_values(":now", s(&now))
        .build()
        .map_err(StoreError::dynamo)?;
    let debit_movement = if tx.held { Movement::DebitHeld } else { Movement::Debit };
    let items = vec![
        TransactWriteItem::builder().update(mark).build(),
        account_update(table, &debit, debit_movement, tx.amount, tx.currency, &now)?,
        account_update(table, &credit, Movement::Credit, tx.amount, tx.currency, &now)?,
    ];
    match write(table, items).await {
        Ok(()) => {
            let mut done = tx;
            done.status = TransactionStatus::Completed;
            done.debit_account = debit.to_string();
            done.credit_account = credit.to_string();
            done.completed_at = Some(now.clone());
            done.updated_at = now;
            Ok(Settled { transaction: done, changed: true })
        }
        Err(reasons) if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") => {
            // Someone settled it first: report what it became.
            let now_tx = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?;
            match now_tx.status {
                TransactionStatus::Completed => Ok(Settled { transaction: now_tx, changed: false }),
                other => Err(LedgerError::AlreadyFinal(other)),
            }
        }
        Err(reasons) => Err(refusal(
            &reasons,
            &[LedgerError::NotFound, LedgerError::InsufficientFunds, LedgerError::AccountMissing],
        )),
    }
}

/// Fails a PENDING movement with a reason, releasing its hold in the same write. Failing an
/// already FAILED movement changes nothing; a COMPLETED one is refused.
///
/// # Errors
/// [`LedgerError::AlreadyFinal`] for a COMPLETED movement, [`LedgerError::NotFound`].
pub async fn fail(table: &Table, id: &TransactionId, reason: &str) -> Result<Settled, LedgerError> {
    let tx = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?;
    match tx.status {
        TransactionStatus::Failed => return Ok(Settled { transaction: tx, changed: false }),
        TransactionStatus::Completed => return Err(LedgerError::AlreadyFinal(TransactionStatus::Completed)),
        TransactionStatus::Pending => {}
    }
    let now = now_rfc3339();
    let mark = Update::builder()
        .table_name(&table.name)
        .set_key(Some(transaction_key(id)))
        .update_expression("SET #status = :failed, failure_reason = :reason, updated_at = :now REMOVE gsi2pk, gsi2sk")
        .condition_expression("#status = :pending")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":failed", s(TransactionStatus::Failed.as_str()))
        .expression_attribute_values(":pending", s(TransactionStatus::Pending.as_str()))
        .expression_attribute_values(":reason", s(reason))
        .expression_attribute_values(":now", s(&now))
        .build()
        .map_err(StoreError::dynamo)?;
    let mut items = vec![TransactWriteItem::builder().update(mark).build()];
    if tx.held {
        let debit = AccountId::from_stored(&tx.debit_account);
        items.push(account_update(table, &debit, Movement::Release, tx.amount, tx.currency, &now)?);
    }
    match write(table, items).await {
        Ok(()) => {
            let mut done = tx;
            done.status = TransactionStatus::Failed;
            done.failure_reason = Some(reason.to_owned());
            done.updated_at = now;
            Ok(Settled { transaction: done, changed: true })
        }
        Err(reasons) if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") => {
            let now_tx = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?;
            match now_tx.status {
                TransactionStatus::Failed => Ok(Settled { transaction: now_tx, changed: false }),
                other => Err(LedgerError::AlreadyFinal(other)),
            }
        }
        Err(reasons) => Err(refusal(&reasons, &[LedgerError::NotFound, LedgerError::AccountMissing])),
    }
}

/// Sets provider details on a PENDING movement (a deposit's Revio purchase id and checkout URL)
/// and claims the reference so the provider's id leads back to the movement.
///
/// # Errors
/// [`LedgerError::AlreadyFinal`] when it is no longer PENDING, [`LedgerError::Duplicate`] when
/// the reference already belongs to another movement.
pub async fn attach_reference(
    table: &Table,
    id: &TransactionId,
    provider: &str,
    reference: &str,
    checkout_url: Option<&str>,
) -> Result<(), LedgerError> {
    let now = now_rfc3339();
    let mut set = "SET #reference = :ref, updated_at = :now".to_owned();
    let mut update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(transaction_key(id)))
        .condition_expression("#status = :pending")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#reference", "reference")
        .expression_attribute_values(":pending", s(TransactionStatus::Pending.as_str()))
        .expression_attribute_values(":ref", s(reference))
        .expression_attribute_values(":now", s(&now));
    if let Some(url) = checkout_url {
        set.push_str(", checkout_url = :url");
        update = update.expression_attribute_values(":url", s(url));
    }
    let update = update.update_expression(set).build().map_err(StoreError::dynamo)?;
    let mut claim = key(format!("REF#{provider}#{reference}"), "REF");
    claim.insert("transaction_id".into(), s(id.as_str()));
    let items = vec![TransactWriteItem::builder().update(update).build(), put_new(table, claim)?];
    match write(table, items).await {
        Ok(()) => Ok(()),
        Err(reasons) if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") => {
            let status = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?.status;
            Err(LedgerError::AlreadyFinal(status))
        }
        Err(reasons) => Err(refusal(&reasons, &[LedgerError::NotFound, LedgerError::Duplicate])),
    }
}

/// The movement a provider's reference was attached to.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn transaction_by_reference(
    table: &Table,
    provider: &str,
    reference: &str,
) -> Result<Option<TransactionId>, StoreError> {
    match get_item(table, key(format!("REF#{provider}#{reference}"), "REF")).await? {
        Some(item) => Ok(TransactionId::parse(item.str("transaction_id")?).ok()),
        None => Ok(None),
    }
}

//! DynamoDB layout of ledger accounts.

use super::{Account, AccountId, SystemAccount};
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
use crate::store::{get_item, now_epoch, now_rfc3339, put_new, transact, TransactError};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use rust_decimal::Decimal;

/// Shards of the index of PENDING movements that reconciliation walks.
pub const PENDING_INDEX_SHARDS: u32 = 8;

/// The sparse index partition listing wallets restricted by a reversal shortfall.
pub const RESTRICTED_PARTITION: &str = "RESTRICTED#WALLETS";

/// Why a ledger write did not happen. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The debit account's available balance does not cover the amount.
    #[error("insufficient available balance")]
    InsufficientFunds,
    /// The debit wallet is restricted: a reversal left a shortfall it has not covered yet.
    #[error("the wallet is restricted until a reversal shortfall is covered")]
    WalletRestricted,
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
    /// A limit checked in the same write (such as a daily deposit cap) would be exceeded.
    #[error("limit exceeded")]
    LimitExceeded,
    /// A condition of an extra item written with the movement failed.
    #[error("a condition of the write failed")]
    ConditionFailed,
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

/// A counter a movement is counted against in the same write, such as a user's deposits of
/// one day: `used + amount <= limit` is the write's condition, and failing the movement later
/// gives its amount back, again in the same write as the failure. The counter's key is kept on
/// the movement, so the give-back hits the counter that was charged, whatever the date is then.
#[derive(Debug, Clone)]
pub struct Quota {
    /// The counter item's `pk` (its `sk` is [`Quota::SK`]).
    pub key: String,
    /// The most the counter may reach.
    pub limit: Decimal,
    /// When the counter item may be forgotten (epoch seconds).
    pub expires_at: i64,
}

impl Quota {
    /// The sort key of every counter item.
    pub const SK: &'static str = "QUOTA";

    /// A user's withdrawals on one UTC day (`YYYY-MM-DD`), kept three days.
    pub fn daily_withdrawals(user: &UserId, day: &str, limit: Decimal) -> Self {
        Self { key: format!("WDCAP#{user}#{day}"), limit, expires_at: now_epoch() + 3 * 24 * 3600 }
    }

    /// A user's deposits on one UTC day (`YYYY-MM-DD`), kept three days.
    pub fn daily_deposits(user: &UserId, day: &str, limit: Decimal) -> Self {
        Self { key: format!("DEPCAP#{user}#{day}"), limit, expires_at: now_epoch() + 3 * 24 * 3600 }
    }

    /// A user's game fees on one UTC day (`YYYY-MM-DD`), kept three days.
    pub fn daily_game_fees(user: &UserId, day: &str, limit: Decimal) -> Self {
        Self { key: format!("GAMEFEECAP#{user}#{day}"), limit, expires_at: now_epoch() + 3 * 24 * 3600 }
    }

    /// A user's game rewards on one UTC day (`YYYY-MM-DD`), kept three days.
    pub fn daily_game_rewards(user: &UserId, day: &str, limit: Decimal) -> Self {
        Self { key: format!("GAMEREWARDCAP#{user}#{day}"), limit, expires_at: now_epoch() + 3 * 24 * 3600 }
    }

    fn charge(&self, table: &Table, amount: Amount) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&table.name)
            .set_key(Some(key(&self.key, Self::SK)))
            .update_expression("SET used = if_not_exists(used, :zero) + :a, expires_at = :exp")
            .condition_expression("attribute_not_exists(used) OR used <= :room")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":a", n(amount.value()))
            .expression_attribute_values(":room", n(self.limit - amount.value()))
            .expression_attribute_values(":exp", n(self.expires_at))
            .build()
            .map_err(StoreError::dynamo)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Gives `amount` back to the counter `key`. Unconditional: a counter that expired meanwhile
    /// starts again at zero rather than blocking the failure it is written with.
    fn give_back(table: &Table, key_pk: &str, amount: Amount) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&table.name)
            .set_key(Some(key(key_pk, Self::SK)))
            .update_expression("SET used = if_not_exists(used, :a) - :a")
            .expression_attribute_values(":a", n(amount.value()))
            .build()
            .map_err(StoreError::dynamo)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// How much of the counter `key` is used (zero when it does not exist).
    ///
    /// # Errors
    /// [`StoreError`] on storage failure.
    pub async fn used(table: &Table, key_pk: &str) -> Result<Decimal, StoreError> {
        match get_item(table, key(key_pk, Self::SK)).await? {
            Some(item) => item.decimal("used"),
            None => Ok(Decimal::ZERO),
        }
    }
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
        payout_state: item.opt_str("payout_state").map(str::to_owned),
        bank_account_id: item.opt_str("bank_account_id").map(str::to_owned),
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
        quota_key: item.opt_str("quota_key").map(str::to_owned),
        reversed_by: item.opt_str("reversed_by").and_then(|r| TransactionId::parse(r).ok()),
        reversal_reason: item.opt_str("reversal_reason").map(str::to_owned),
        legs: match item.get("legs") {
            None => Vec::new(),
            Some(AttributeValue::L(legs)) => legs
                .iter()
                .map(|leg| match leg {
                    AttributeValue::M(m) => Ok((m.str("account")?.to_owned(), m.decimal("amount")?)),
                    _ => Err(corrupt("legs")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(corrupt("legs")),
        },
    })
}

/// One transaction, read consistently.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get_transaction(table: &Table, id: &TransactionId) -> Result<Option<Transaction>, StoreError> {
    get_item(table, transaction_key(id)).await?.as_ref().map(transaction_from_item).transpose()
}

/// How a posting changes a wallet. Only a wallet holds money or refuses a debit, so only a
/// wallet has these moves: a system account cannot be held against or debited twice by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalletMove {
    /// Credit: balance and available grow.
    Credit,
    /// Debit of available money: the condition `available >= amount` (and that the wallet is
    /// not restricted) is part of the write.
    Debit,
    /// Debit of money held earlier for this movement: balance and held shrink.
    DebitHeld,
    /// Reserve: available shrinks, held grows, under `available >= amount` (not restricted).
    Hold,
    /// Release a reservation: held shrinks, available grows.
    Release,
}

/// How a posting changes a system account shard: balance and available move together; nothing
/// is ever held on one, and nothing refuses (they mirror the outside world, e.g. Revio clearing
/// is negative by what Revio holds for us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SystemMove {
    Credit,
    Debit,
}

/// The update of a user's wallet. The wallet must exist, be in the movement's currency, and
/// (for a debit or a hold) cover the amount and carry no reversal shortfall.
fn wallet_update(
    table: &Table,
    owner: &UserId,
    movement: WalletMove,
    amount: Amount,
    currency: Currency,
    now: &str,
) -> Result<TransactWriteItem, StoreError> {
    const UNRESTRICTED: &str = "attribute_not_exists(shortfall)";
    let (set, condition) = match movement {
        WalletMove::Credit => ("balance = balance + :a, available = available + :a", None),
        WalletMove::Debit => ("balance = balance - :a, available = available - :a", Some(("available >= :a", true))),
        WalletMove::DebitHeld => ("balance = balance - :a, held = held - :a", Some(("held >= :a", false))),
        WalletMove::Hold => ("held = held + :a, available = available - :a", Some(("available >= :a", true))),
        WalletMove::Release => ("held = held - :a, available = available + :a", Some(("held >= :a", false))),
    };
    let cond = match condition {
        Some((c, true)) => format!("attribute_exists(pk) AND currency = :cur AND {c} AND {UNRESTRICTED}"),
        Some((c, false)) => format!("attribute_exists(pk) AND currency = :cur AND {c}"),
        None => "attribute_exists(pk) AND currency = :cur".to_owned(),
    };
    let update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(account_key(&AccountId::wallet(owner))))
        .update_expression(format!("SET {set}, updated_at = :now"))
        .condition_expression(cond)
        .expression_attribute_values(":a", n(amount.value()))
        .expression_attribute_values(":now", s(now))
        .expression_attribute_values(":cur", s(currency.code()))
        .build()
        .map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The update of one system account shard, created on first use.
fn system_update(
    table: &Table,
    shard: &AccountId,
    movement: SystemMove,
    amount: Decimal,
    currency: Currency,
    now: &str,
) -> Result<TransactWriteItem, StoreError> {
    let sign = match movement {
        SystemMove::Credit => "+",
        SystemMove::Debit => "-",
    };
    let update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(account_key(shard)))
        .update_expression(format!(
            "SET balance = if_not_exists(balance, :zero) {sign} :a, available = if_not_exists(available, :zero) {sign} :a, \
             held = if_not_exists(held, :zero), account_id = if_not_exists(account_id, :id), \
             currency = if_not_exists(currency, :cur), entity = if_not_exists(entity, :entity), \
             created_at = if_not_exists(created_at, :now), updated_at = :now"
        ))
        .expression_attribute_values(":a", n(amount))
        .expression_attribute_values(":now", s(now))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":id", s(shard.as_str()))
        .expression_attribute_values(":cur", s(currency.code()))
        .expression_attribute_values(":entity", s("account"))
        .build()
        .map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// A plain debit or credit of any account: a wallet's debit is conditioned on its available
/// balance, a system shard's never is.
fn leg(
    table: &Table,
    account: &AccountId,
    debit: bool,
    amount: Amount,
    currency: Currency,
    now: &str,
) -> Result<TransactWriteItem, StoreError> {
    match account.wallet_owner() {
        Some(owner) => {
            let movement = if debit { WalletMove::Debit } else { WalletMove::Credit };
            wallet_update(table, &owner, movement, amount, currency, now)
        }
        None if account.is_system() => {
            let movement = if debit { SystemMove::Debit } else { SystemMove::Credit };
            system_update(table, account, movement, amount.value(), currency, now)
        }
        None => Err(StoreError::Corrupt(format!("not an account id: {account}"))),
    }
}

/// The owner of the wallet a held movement reserved money on.
fn held_wallet(tx: &Transaction) -> Result<UserId, StoreError> {
    AccountId::from_stored(&tx.debit_account)
        .wallet_owner()
        .ok_or_else(|| StoreError::Corrupt(format!("held movement {} debits a non-wallet", tx.id)))
}

/// Maps a refused write to the error its first refusing item stands for.
fn refusal(err: TransactError, meaning: &[LedgerError]) -> LedgerError {
    let at = err.refused_at();
    match err {
        TransactError::Store(e) => LedgerError::Store(e),
        TransactError::Refused(reasons) => match at.and_then(|i| meaning.get(i)) {
            Some(LedgerError::InsufficientFunds) => LedgerError::InsufficientFunds,
            Some(LedgerError::Duplicate) => LedgerError::Duplicate,
            Some(LedgerError::AccountMissing) => LedgerError::AccountMissing,
            Some(LedgerError::NotFound) => LedgerError::NotFound,
            Some(LedgerError::LimitExceeded) => LedgerError::LimitExceeded,
            Some(LedgerError::ConditionFailed) => LedgerError::ConditionFailed,
            _ => LedgerError::Store(StoreError::Dynamo(format!("transaction cancelled: {reasons:?}"))),
        },
    }
}

/// Tells a short wallet from a restricted one, after a debit of `owner`'s wallet was refused.
async fn explain_short(table: &Table, owner: &UserId, err: LedgerError) -> LedgerError {
    if !matches!(err, LedgerError::InsufficientFunds) {
        return err;
    }
    match get_item(table, account_key(&AccountId::wallet(owner))).await {
        Ok(Some(item)) if item.contains_key("shortfall") => LedgerError::WalletRestricted,
        Ok(Some(_)) => LedgerError::InsufficientFunds,
        Ok(None) => LedgerError::AccountMissing,
        Err(e) => LedgerError::Store(e),
    }
}

/// Records a PENDING movement without moving money (a deposit awaiting payment), counted
/// against `quota` in the same write when one is given.
///
/// # Errors
/// [`LedgerError::Duplicate`] when the id exists (nothing written: a repeat of a request that
/// already recorded it meets its record), [`LedgerError::LimitExceeded`] when the quota is
/// spent.
pub async fn record_pending(
    table: &Table,
    new: &NewTransaction,
    quota: Option<&Quota>,
) -> Result<Transaction, LedgerError> {
    let now = now_rfc3339();
    let mut item = transaction_item(new, TransactionStatus::Pending, false, &now);
    if let Some(q) = quota {
        item.insert("quota_key".into(), s(&q.key));
    }
    let tx = transaction_from_item(&item)?;
    let mut items = vec![put_new(table, item)?];
    if let Some(q) = quota {
        items.push(q.charge(table, new.amount)?);
    }
    transact(table, items).await.map_err(|e| refusal(e, &[LedgerError::Duplicate, LedgerError::LimitExceeded]))?;
    Ok(tx)
}

/// A movement whose amount is first reserved on its user's wallet (a withdrawal, a call), then
/// posted or released. The debit side is the user's wallet by construction: nothing else can
/// hold money.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub id: TransactionId,
    /// Whose wallet the amount is reserved on, and whose history it appears in.
    pub user_id: UserId,
    pub kind: TransactionType,
    pub amount: Amount,
    pub currency: Currency,
    pub credit: Side,
    pub description: String,
    pub reference: Option<String>,
}

/// Records a PENDING movement and reserves its amount on the user's wallet, in one write whose
/// condition is that the wallet's available balance covers it and the wallet is not restricted.
///
/// # Errors
/// [`LedgerError::InsufficientFunds`], [`LedgerError::WalletRestricted`],
/// [`LedgerError::AccountMissing`], [`LedgerError::Duplicate`].
pub async fn hold(table: &Table, new: &NewHold) -> Result<Transaction, LedgerError> {
    hold_with(table, new, None, Vec::new()).await
}

/// [`hold`], counted against `quota` in the same write when one is given, with `attributes`
/// kept on the movement (such as the bank account a withdrawal pays to).
///
/// # Errors
/// As [`hold`], and [`LedgerError::LimitExceeded`] when the quota is spent.
pub async fn hold_with(
    table: &Table,
    new: &NewHold,
    quota: Option<&Quota>,
    attributes: Vec<(&str, AttributeValue)>,
) -> Result<Transaction, LedgerError> {
    hold_inner(table, new, quota, attributes, Vec::new()).await
}

/// [`hold`], with `extra` items written in the same transaction (such as the call whose first
/// minute this holds turning ACTIVE); their failed condition is [`LedgerError::ConditionFailed`].
///
/// # Errors
/// As [`hold`], and [`LedgerError::ConditionFailed`].
pub async fn hold_and(table: &Table, new: &NewHold, extra: Vec<TransactWriteItem>) -> Result<Transaction, LedgerError> {
    hold_inner(table, new, None, Vec::new(), extra).await
}

async fn hold_inner(
    table: &Table,
    new: &NewHold,
    quota: Option<&Quota>,
    attributes: Vec<(&str, AttributeValue)>,
    extra: Vec<TransactWriteItem>,
) -> Result<Transaction, LedgerError> {
    let now = now_rfc3339();
    let mut item = hold_item(new, &now);
    for (name, value) in attributes {
        item.insert(name.to_owned(), value);
    }
    if let Some(q) = quota {
        item.insert("quota_key".into(), s(&q.key));
    }
    let tx = transaction_from_item(&item)?;
    let mut items = vec![
        put_new(table, item)?,
        wallet_update(table, &new.user_id, WalletMove::Hold, new.amount, new.currency, &now)?,
    ];
    let mut meaning = vec![LedgerError::Duplicate, LedgerError::InsufficientFunds];
    if let Some(q) = quota {
        items.push(q.charge(table, new.amount)?);
        meaning.push(LedgerError::LimitExceeded);
    }
    meaning.extend(extra.iter().map(|_| LedgerError::ConditionFailed));
    items.extend(extra);
    match transact(table, items).await {
        Ok(()) => Ok(tx),
        Err(e) => Err(explain_short(table, &new.user_id, refusal(e, &meaning)).await),
    }
}

/// Moves money at once: a COMPLETED movement, the debit (conditioned on available funds for a
/// wallet) and the credit, in one write.
///
/// # Errors
/// [`LedgerError::InsufficientFunds`], [`LedgerError::WalletRestricted`],
/// [`LedgerError::AccountMissing`], [`LedgerError::Duplicate`].
pub async fn transfer(table: &Table, new: &NewTransaction) -> Result<Transaction, LedgerError> {
    transfer_with(table, new, Vec::new()).await
}

/// [`transfer`], with `extra` items written in the same transaction (their failed condition is
/// [`LedgerError::ConditionFailed`]).
///
/// # Errors
/// As [`transfer`], and [`LedgerError::ConditionFailed`].
pub async fn transfer_with(
    table: &Table,
    new: &NewTransaction,
    extra: Vec<TransactWriteItem>,
) -> Result<Transaction, LedgerError> {
    transfer_counted(table, new, extra, None).await
}

/// A count and a running sum kept on the credited wallet by the movements of one kind (for
/// example the referral rewards a referrer has earned), with a cap on the count checked in the
/// same write as the credit: no extra item, so the movement stays within its write budget.
#[derive(Debug, Clone)]
pub struct CreditCounter {
    /// Attribute holding how many movements were counted.
    pub count_attribute: &'static str,
    /// Attribute holding the sum of their amounts.
    pub sum_attribute: &'static str,
    /// The credit is refused ([`LedgerError::LimitExceeded`]) once the count has reached this.
    pub limit: u32,
}

/// [`transfer_with`], also counting the movement on the credited wallet under `counter`'s cap.
///
/// # Errors
/// As [`transfer_with`], and [`LedgerError::LimitExceeded`] when the cap is reached.
pub async fn transfer_counted(
    table: &Table,
    new: &NewTransaction,
    extra: Vec<TransactWriteItem>,
    counter: Option<&CreditCounter>,
) -> Result<Transaction, LedgerError> {
    transfer_inner(table, new, extra, counter, Vec::new(), None).await
}

/// [`transfer`], with `attributes` kept on the movement item itself (such as who made a manual
/// adjustment and why) and, when `listed_in` is given, the movement listed in the sparse index
/// `gsi2` under the partition `listed_in(created_at)` (so a partition by month is the month of
/// the movement's own `created_at`), sorted by `<created_at>#<id>` like every movement index.
/// Still one write of the movement and its two legs (3 items, 6 write units).
///
/// The attributes must not be ones the ledger itself writes (`pk`, `status`, `amount`, ...);
/// such a name is refused as [`StoreError::Corrupt`] before anything is written.
///
/// # Errors
/// As [`transfer`].
pub async fn transfer_with_attributes(
    table: &Table,
    new: &NewTransaction,
    attributes: Vec<(&str, AttributeValue)>,
    listed_in: Option<fn(&str) -> String>,
) -> Result<Transaction, LedgerError> {
    transfer_inner(table, new, Vec::new(), None, attributes, listed_in).await
}

/// [`transfer_with_attributes`] (without an index listing), also counted against `quota` in the
/// same write: the movement, its two legs and the counter, 4 items, 8 write units. The movement
/// keeps the counter's key (`quota_key`).
///
/// # Errors
/// As [`transfer`], and [`LedgerError::LimitExceeded`] when the quota would be exceeded.
pub async fn transfer_within_quota(
    table: &Table,
    new: &NewTransaction,
    quota: &Quota,
    mut attributes: Vec<(&str, AttributeValue)>,
) -> Result<Transaction, LedgerError> {
    attributes.push(("quota_key", s(&quota.key)));
    let charge = vec![quota.charge(table, new.amount)?];
    match transfer_inner(table, new, charge, None, attributes, None).await {
        Err(LedgerError::ConditionFailed) => Err(LedgerError::LimitExceeded),
        other => other,
    }
}

async fn transfer_inner(
    table: &Table,
    new: &NewTransaction,
    extra: Vec<TransactWriteItem>,
    counter: Option<&CreditCounter>,
    attributes: Vec<(&str, AttributeValue)>,
    listed_in: Option<fn(&str) -> String>,
) -> Result<Transaction, LedgerError> {
    let now = now_rfc3339();
    let debit = new.debit.resolve();
    let credit = new.credit.resolve();
    let mut resolved = new.clone();
    resolved.debit = Side::Account(debit.clone());
    resolved.credit = Side::Account(credit.clone());
    let mut item = transaction_item(&resolved, TransactionStatus::Completed, false, &now);
    item.insert("completed_at".into(), s(&now));
    for (name, value) in attributes {
        if item.contains_key(name) || name.starts_with("gsi") {
            return Err(StoreError::Corrupt(format!("movement attribute {name} is the ledger's own")).into());
        }
        item.insert(name.to_owned(), value);
    }
    if let Some(partition) = listed_in {
        item.insert("gsi2pk".into(), s(partition(&now)));
        item.insert("gsi2sk".into(), s(format!("{now}#{}", new.id)));
    }
    let tx = transaction_from_item(&item)?;
    let credit_leg = match (counter, credit.wallet_owner()) {
        (Some(c), Some(owner)) => counted_credit(table, &owner, new.amount, new.currency, c, &now)?,
        (Some(_), None) => return Err(StoreError::Corrupt("a counted credit must go to a wallet".into()).into()),
        (None, _) => leg(table, &credit, false, new.amount, new.currency, &now)?,
    };
    let mut items = vec![put_new(table, item)?, leg(table, &debit, true, new.amount, new.currency, &now)?, credit_leg];
    let credit_refusal = if counter.is_some() { LedgerError::LimitExceeded } else { LedgerError::AccountMissing };
    let mut meaning = vec![LedgerError::Duplicate, LedgerError::InsufficientFunds, credit_refusal];
    meaning.extend(extra.iter().map(|_| LedgerError::ConditionFailed));
    items.extend(extra);
    match transact(table, items).await {
        Ok(()) => Ok(tx),
        Err(e) => {
            let err = refusal(e, &meaning);
            match debit.wallet_owner() {
                Some(owner) => Err(explain_short(table, &owner, err).await),
                None => Err(err),
            }
        }
    }
}

/// The credit of a wallet that also counts the movement under `counter`'s cap.
fn counted_credit(
    table: &Table,
    owner: &UserId,
    amount: Amount,
    currency: Currency,
    counter: &CreditCounter,
    now: &str,
) -> Result<TransactWriteItem, StoreError> {
    let update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(account_key(&AccountId::wallet(owner))))
        .update_expression(
            "SET balance = balance + :a, available = available + :a, updated_at = :now ADD #count :one, #sum :a",
        )
        .condition_expression(
            "attribute_exists(pk) AND currency = :cur AND (attribute_not_exists(#count) OR #count < :limit)",
        )
        .expression_attribute_names("#count", counter.count_attribute)
        .expression_attribute_names("#sum", counter.sum_attribute)
        .expression_attribute_values(":a", n(amount.value()))
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":limit", n(counter.limit))
        .expression_attribute_values(":now", s(now))
        .expression_attribute_values(":cur", s(currency.code()))
        .build()
        .map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
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
/// [`LedgerError::InsufficientFunds`] (unheld wallet debit).
pub async fn post(table: &Table, id: &TransactionId) -> Result<Settled, LedgerError> {
    post_with(table, id, |_| Vec::new()).await
}

/// [`post`], writing the items `extra` builds from the PENDING movement in the same
/// transaction (an outbox record of what the posting means elsewhere, such as a referral's
/// first deposit). They are written only when this call posts; their conditions must not fail.
///
/// # Errors
/// As [`post`].
pub async fn post_with(
    table: &Table,
    id: &TransactionId,
    extra: impl FnOnce(&Transaction) -> Vec<TransactWriteItem>,
) -> Result<Settled, LedgerError> {
    let tx = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?;
    post_loaded(table, tx, extra).await
}

/// [`post_with`] for a movement the caller has just read (saving a read): the write is
/// conditioned on the movement still being PENDING, so a read that is out of date is caught
/// there, and what the movement became is read then.
///
/// # Errors
/// As [`post`].
pub async fn post_loaded(
    table: &Table,
    tx: Transaction,
    extra: impl FnOnce(&Transaction) -> Vec<TransactWriteItem>,
) -> Result<Settled, LedgerError> {
    let id = &tx.id.clone();
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
    let debit_leg = if tx.held {
        wallet_update(table, &held_wallet(&tx)?, WalletMove::DebitHeld, tx.amount, tx.currency, &now)?
    } else {
        leg(table, &debit, true, tx.amount, tx.currency, &now)?
    };
    let mut items = vec![
        TransactWriteItem::builder().update(mark).build(),
        debit_leg,
        leg(table, &credit, false, tx.amount, tx.currency, &now)?,
    ];
    items.extend(extra(&tx));
    match transact(table, items).await {
        Ok(()) => {
            let mut done = tx;
            done.status = TransactionStatus::Completed;
            done.debit_account = debit.to_string();
            done.credit_account = credit.to_string();
            done.completed_at = Some(now.clone());
            done.updated_at = now;
            Ok(Settled { transaction: done, changed: true })
        }
        // Someone posted it first: report what it became.
        Err(e) if e.refused_at() == Some(0) => posted_meanwhile(table, id).await,
        Err(e) => {
            let err = refusal(e, &[LedgerError::NotFound, LedgerError::InsufficientFunds, LedgerError::AccountMissing]);
            match debit.wallet_owner() {
                Some(owner) if !tx.held => Err(explain_short(table, &owner, err).await),
                _ => Err(err),
            }
        }
    }
}

/// What a movement whose posting lost the race became: COMPLETED (`changed: false`), or
/// refused as [`LedgerError::AlreadyFinal`].
async fn posted_meanwhile(table: &Table, id: &TransactionId) -> Result<Settled, LedgerError> {
    let now_tx = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?;
    match now_tx.status {
        TransactionStatus::Completed => Ok(Settled { transaction: now_tx, changed: false }),
        other => Err(LedgerError::AlreadyFinal(other)),
    }
}

/// Fails a PENDING movement with a reason, in one write that also releases its hold and gives
/// back what it counted against a [`Quota`]. Failing an already FAILED movement changes nothing;
/// a COMPLETED one is refused.
///
/// # Errors
/// [`LedgerError::AlreadyFinal`] for a COMPLETED movement, [`LedgerError::NotFound`].
pub async fn fail(table: &Table, id: &TransactionId, reason: &str) -> Result<Settled, LedgerError> {
    fail_when(table, id, reason, None).await
}

/// [`fail`], only while `condition` (an extra condition on the movement's item, such as "its
/// payout was not submitted") also holds.
///
/// # Errors
/// As [`fail`], and [`LedgerError::ConditionFailed`] when the movement is PENDING but
/// `condition` does not hold.
pub async fn fail_when(
    table: &Table,
    id: &TransactionId,
    reason: &str,
    condition: Option<&str>,
) -> Result<Settled, LedgerError> {
    fail_inner(table, id, reason, condition, Vec::new()).await
}

/// [`fail`], with `extra` items written in the same transaction (such as the call that ends
/// with this minute released); their failed condition is [`LedgerError::ConditionFailed`].
///
/// # Errors
/// As [`fail`], and [`LedgerError::ConditionFailed`].
pub async fn fail_and(
    table: &Table,
    id: &TransactionId,
    reason: &str,
    extra: Vec<TransactWriteItem>,
) -> Result<Settled, LedgerError> {
    fail_inner(table, id, reason, None, extra).await
}

async fn fail_inner(
    table: &Table,
    id: &TransactionId,
    reason: &str,
    condition: Option<&str>,
    extra: Vec<TransactWriteItem>,
) -> Result<Settled, LedgerError> {
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
        .condition_expression(match condition {
            Some(extra) => format!("#status = :pending AND ({extra})"),
            None => "#status = :pending".to_owned(),
        })
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":failed", s(TransactionStatus::Failed.as_str()))
        .expression_attribute_values(":pending", s(TransactionStatus::Pending.as_str()))
        .expression_attribute_values(":reason", s(reason))
        .expression_attribute_values(":now", s(&now))
        .build()
        .map_err(StoreError::dynamo)?;
    let mut items = vec![TransactWriteItem::builder().update(mark).build()];
    if tx.held {
        items.push(wallet_update(table, &held_wallet(&tx)?, WalletMove::Release, tx.amount, tx.currency, &now)?);
    }
    if let Some(quota) = &tx.quota_key {
        items.push(Quota::give_back(table, quota, tx.amount)?);
    }
    let mut meaning: Vec<LedgerError> =
        (0..items.len()).map(|i| if i == 0 { LedgerError::NotFound } else { LedgerError::AccountMissing }).collect();
    meaning.extend(extra.iter().map(|_| LedgerError::ConditionFailed));
    items.extend(extra);
    match transact(table, items).await {
        Ok(()) => {
            let mut done = tx;
            done.status = TransactionStatus::Failed;
            done.failure_reason = Some(reason.to_owned());
            done.updated_at = now;
            Ok(Settled { transaction: done, changed: true })
        }
        Err(e) if e.refused_at() == Some(0) => {
            let now_tx = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?;
            match now_tx.status {
                TransactionStatus::Failed => Ok(Settled { transaction: now_tx, changed: false }),
                TransactionStatus::Pending => Err(LedgerError::ConditionFailed),
                other => Err(LedgerError::AlreadyFinal(other)),
            }
        }
        Err(e) => Err(refusal(e, &meaning)),
    }
}

/// What reversing a deposit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversed {
    /// The reversal movement (wallet → Revio clearing, or receivables → clearing when the
    /// wallet held nothing).
    pub reversal: TransactionId,
    /// How much the wallet could not cover: it is owed, and the wallet is restricted until a
    /// later credit covers it ([`recover_shortfall`]).
    pub shortfall: Decimal,
    /// `false` when the deposit had been reversed before (nothing written now).
    pub changed: bool,
}

/// Reverses a COMPLETED deposit whose payment Revio took back (`reason`: `refunded`,
/// `chargeback`), exactly once.
///
/// In one write: the deposit is marked reversed (conditioned on not being reversed already),
/// the wallet gives back what it has available of the amount (`x`), the remainder (`s`) is
/// booked to the receivables account and added to the wallet's `shortfall` — which restricts
/// the wallet (no debit, no hold) until [`recover_shortfall`] clears it — and Revio clearing is
/// credited the whole amount. The movements' ids derive from the deposit's, so a repeat meets
/// them. The available amount is read first; the write's conditions re-check it, and a change
/// meanwhile repeats the attempt with the new figure.
///
/// # Errors
/// [`LedgerError::AlreadyFinal`] when the deposit is not COMPLETED, [`LedgerError::NotFound`].
pub async fn reverse_deposit(table: &Table, id: &TransactionId, reason: &str) -> Result<Reversed, LedgerError> {
    for _ in 0..5 {
        let deposit = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?;
        if let Some(previous) = &deposit.reversed_by {
            let owed = |t: &Transaction| !t.debit_account.starts_with("wallet:");
            let shortfall = match get_transaction(table, previous).await? {
                // The wallet covered nothing: the first movement is the shortfall.
                Some(t) if owed(&t) => t.amount.value(),
                _ => match get_transaction(table, &previous.derive("shortfall")).await? {
                    Some(t) => t.amount.value(),
                    None => Decimal::ZERO,
                },
            };
            return Ok(Reversed { reversal: previous.clone(), shortfall, changed: false });
        }
        if deposit.status != TransactionStatus::Completed {
            return Err(LedgerError::AlreadyFinal(deposit.status));
        }
        let wallet = AccountId::from_stored(&deposit.credit_account);
        let owner = wallet.wallet_owner().ok_or_else(|| StoreError::Corrupt("deposit credits a non-wallet".into()))?;
        let account = get_account(table, &wallet).await?.ok_or(LedgerError::AccountMissing)?;
        let amount = deposit.amount.value();
        let covered = account.available.max(Decimal::ZERO).min(amount);
        let shortfall = amount - covered;
        let now = now_rfc3339();
        let reversal_id = deposit.id.derive("reversal");
        let clearing = AccountId::system_any_shard(SystemAccount::RevioClearing);
        let describe = |what: &str| format!("{what} of deposit {} ({reason})", deposit.id);

        let mark = Update::builder()
            .table_name(&table.name)
            .set_key(Some(transaction_key(id)))
            .update_expression("SET reversed_by = :r, reversal_reason = :why, updated_at = :now")
            .condition_expression("#status = :completed AND attribute_not_exists(reversed_by)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", s(TransactionStatus::Completed.as_str()))
            .expression_attribute_values(":r", s(reversal_id.as_str()))
            .expression_attribute_values(":why", s(reason))
            .expression_attribute_values(":now", s(&now))
            .build()
            .map_err(StoreError::dynamo)?;
        let mut items = vec![TransactWriteItem::builder().update(mark).build()];
        let mut meaning = vec![LedgerError::ConditionFailed];
        let movement = |id: TransactionId, debit: AccountId, value: Decimal, what: &str| -> Result<Item, LedgerError> {
            let new = NewTransaction {
                id,
                user_id: owner.clone(),
                kind: TransactionType::Reversal,
                amount: Amount::new(value, deposit.currency)
                    .map_err(|_| StoreError::Corrupt("reversal amount".into()))?,
                currency: deposit.currency,
                debit: Side::Account(debit),
                credit: Side::Account(clearing.clone()),
                description: describe(what),
                reference: Some(deposit.id.to_string()),
            };
            let mut item = transaction_item(&new, TransactionStatus::Completed, false, &now);
            item.insert("completed_at".into(), s(&now));
            item.insert("reverses".into(), s(deposit.id.as_str()));
            Ok(item)
        };
        // The wallet's part (when it has any), else the whole amount is owed.
        let (first_debit, first_value) =
            if covered > Decimal::ZERO { (wallet.clone(), covered) } else { (receivables_shard(&owner), shortfall) };
        items.push(put_new(table, movement(reversal_id.clone(), first_debit, first_value, "Reversal")?)?);
        meaning.push(LedgerError::Duplicate);
        if covered > Decimal::ZERO && shortfall > Decimal::ZERO {
            items.push(put_new(
                table,
                movement(reversal_id.derive("shortfall"), receivables_shard(&owner), shortfall, "Uncovered reversal")?,
            )?);
            meaning.push(LedgerError::Duplicate);
        }
        // The wallet: give back `covered` (conditioned on having it), add the shortfall.
        let mut set = vec!["updated_at = :now"];
        let mut wallet_cond = "attribute_exists(pk) AND currency = :cur".to_owned();
        let mut update = Update::builder()
            .table_name(&table.name)
            .set_key(Some(account_key(&wallet)))
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(":cur", s(deposit.currency.code()));
        if covered > Decimal::ZERO {
            set.push("balance = balance - :x, available = available - :x");
            wallet_cond.push_str(" AND available >= :x");
            update = update.expression_attribute_values(":x", n(covered));
        }
        if shortfall > Decimal::ZERO {
            set.push("shortfall = if_not_exists(shortfall, :zero) + :s, gsi2pk = :restricted, gsi2sk = :owner");
            update = update
                .expression_attribute_values(":s", n(shortfall))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":restricted", s(RESTRICTED_PARTITION))
                .expression_attribute_values(":owner", s(owner.as_str()));
        }
        let update = update
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(wallet_cond)
            .build()
            .map_err(StoreError::dynamo)?;
        items.push(TransactWriteItem::builder().update(update).build());
        meaning.push(LedgerError::InsufficientFunds);
        if shortfall > Decimal::ZERO {
            items.push(system_update(
                table,
                &receivables_shard(&owner),
                SystemMove::Debit,
                shortfall,
                deposit.currency,
                &now,
            )?);
            meaning.push(LedgerError::ConditionFailed);
        }
        items.push(system_update(table, &clearing, SystemMove::Credit, amount, deposit.currency, &now)?);
        meaning.push(LedgerError::ConditionFailed);

        match transact(table, items).await {
            Ok(()) => {
                tracing::warn!(transaction_id = %deposit.id, reversal_id = %reversal_id, %covered, %shortfall, reason, "deposit reversed");
                return Ok(Reversed { reversal: reversal_id, shortfall, changed: true });
            }
            // Reversed meanwhile, or the wallet's available amount changed: look again.
            Err(e)
                if matches!(
                    refusal_kind(&e, &meaning),
                    Some(LedgerError::ConditionFailed | LedgerError::InsufficientFunds | LedgerError::Duplicate)
                ) =>
            {
                continue
            }
            Err(e) => return Err(refusal(e, &meaning)),
        }
    }
    Err(LedgerError::Store(StoreError::Unavailable("the wallet kept changing during the reversal".into())))
}

fn refusal_kind<'a>(err: &TransactError, meaning: &'a [LedgerError]) -> Option<&'a LedgerError> {
    err.refused_at().and_then(|i| meaning.get(i))
}

/// The receivables shard for a user: what users owe after a reversal their wallet could not
/// cover (sharded like every system account).
fn receivables_shard(owner: &UserId) -> AccountId {
    let shard = owner.as_str().bytes().fold(0_u16, |h, b| h.wrapping_mul(31).wrapping_add(u16::from(b)));
    AccountId::system(SystemAccount::Receivables, shard)
}

/// What [`recover_shortfall`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Taken from the wallet towards its shortfall now.
    pub recovered: Decimal,
    /// Still owed; zero means the wallet is no longer restricted.
    pub remaining: Decimal,
}

/// Covers a restricted wallet's shortfall from what it has available (after a later deposit),
/// in one write per call: wallet → receivables, conditioned on the figures it read; when the
/// shortfall is covered in full the restriction is lifted in the same write.
///
/// # Errors
/// [`LedgerError::AccountMissing`]; a write conflict repeats the attempt with fresh figures.
pub async fn recover_shortfall(table: &Table, owner: &UserId) -> Result<Recovery, LedgerError> {
    let wallet = AccountId::wallet(owner);
    for _ in 0..5 {
        let Some(item) = get_item(table, account_key(&wallet)).await? else { return Err(LedgerError::AccountMissing) };
        let account = account_from_item(&item)?;
        let owed = if item.contains_key("shortfall") { item.decimal("shortfall")? } else { Decimal::ZERO };
        let take = account.available.max(Decimal::ZERO).min(owed);
        if take <= Decimal::ZERO {
            return Ok(Recovery { recovered: Decimal::ZERO, remaining: owed });
        }
        let now = now_rfc3339();
        let shard = receivables_shard(owner);
        let new = NewTransaction {
            id: TransactionId::generate(),
            user_id: owner.clone(),
            kind: TransactionType::Reversal,
            amount: Amount::new(take, account.currency).map_err(|_| StoreError::Corrupt("recovery amount".into()))?,
            currency: account.currency,
            debit: Side::Account(wallet.clone()),
            credit: Side::Account(shard.clone()),
            description: "Shortfall of a reversed deposit covered".into(),
            reference: None,
        };
        let mut txn = transaction_item(&new, TransactionStatus::Completed, false, &now);
        txn.insert("completed_at".into(), s(&now));
        let settle = if take == owed {
            "SET balance = balance - :x, available = available - :x, updated_at = :now REMOVE shortfall, gsi2pk, gsi2sk"
        } else {
            "SET balance = balance - :x, available = available - :x, shortfall = shortfall - :x, updated_at = :now"
        };
        let update = Update::builder()
            .table_name(&table.name)
            .set_key(Some(account_key(&wallet)))
            .update_expression(settle)
            .condition_expression("available >= :x AND shortfall = :owed")
            .expression_attribute_values(":x", n(take))
            .expression_attribute_values(":owed", n(owed))
            .expression_attribute_values(":now", s(&now))
            .build()
            .map_err(StoreError::dynamo)?;
        let items = vec![
            put_new(table, txn)?,
            TransactWriteItem::builder().update(update).build(),
            system_update(table, &shard, SystemMove::Credit, take, account.currency, &now)?,
        ];
        match transact(table, items).await {
            Ok(()) => {
                tracing::info!(user_id = %owner, recovered = %take, remaining = %(owed - take), "reversal shortfall recovered");
                return Ok(Recovery { recovered: take, remaining: owed - take });
            }
            Err(e) if e.refused_at() == Some(1) => continue,
            Err(e) => return Err(refusal(e, &[LedgerError::Duplicate, LedgerError::ConditionFailed])),
        }
    }
    Err(LedgerError::Store(StoreError::Unavailable("the wallet kept changing during recovery".into())))
}

/// Every wallet restricted by a reversal shortfall (the sparse index), up to `limit`.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn restricted_wallets(table: &Table, limit: i32) -> Result<Vec<UserId>, StoreError> {
    let items = crate::store::gsi2_partition(table, RESTRICTED_PARTITION, limit).await?;
    Ok(items.iter().filter_map(|i| i.opt_str("gsi2sk").and_then(|u| UserId::parse(u).ok())).collect())
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
    match transact(table, items).await {
        Ok(()) => Ok(()),
        Err(e) if e.refused_at() == Some(0) => {
            let status = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?.status;
            Err(LedgerError::AlreadyFinal(status))
        }
        Err(e) => Err(refusal(e, &[LedgerError::NotFound, LedgerError::Duplicate])),
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

/// One credit leg of a split movement ([`transfer_split`]).
#[derive(Debug, Clone)]
pub struct Leg {
    /// Where the money goes (a wallet, or any shard of a system account).
    pub account: Side,
    /// How much of the movement goes there.
    pub amount: Decimal,
}

// ------------------------------------------------------------------------------------------
// Escrow: a held movement posted into an account whose item carries its own state (a call)
// ------------------------------------------------------------------------------------------

/// Where [`post_held`] credits the charge: an escrow account whose item the caller updates
/// itself, because the same item holds more than the account (a call's item is the call's
/// escrow and its billing state: one item, one update, one write).
#[derive(Debug)]
pub struct Escrow {
    /// The escrow account (`call:<id>`).
    pub account: AccountId,
    /// The escrow item's update. It must add the charge to `balance` and `available` (and may
    /// change the item's own state under its own conditions: a refusal is
    /// [`LedgerError::ConditionFailed`]).
    pub update: TransactWriteItem,
}

/// What [`post_held`] posts.
#[derive(Debug)]
pub struct HeldPosting<'a> {
    /// What is charged: more than zero, at most the amount held (the rest is released).
    pub charge: Decimal,
    /// Where it goes.
    pub escrow: Escrow,
    /// A movement to hold on the same wallet in the same write (a call's next minute): the
    /// write's condition is then that the wallet can cover it.
    pub next: Option<&'a NewHold>,
    /// Further items written in the same transaction (their failed condition is
    /// [`LedgerError::ConditionFailed`]).
    pub extra: Vec<TransactWriteItem>,
}

/// Posts a held movement into an escrow: the wallet pays `charge` (at most what was held, the
/// rest released), the escrow's item is updated by the caller's own update, and — in the same
/// write — `next` is held on the same wallet. One wallet update carries the posting and the
/// next hold (a transaction may touch an item once). A call minute: the movement, the next
/// minute, the caller's wallet and the call: 4 items, 8 write units.
///
/// Posting a COMPLETED movement again changes nothing and says so (`changed: false`).
///
/// # Errors
/// [`LedgerError::InsufficientFunds`] / [`LedgerError::WalletRestricted`] when `next` cannot be
/// held (nothing written), [`LedgerError::ConditionFailed`] when the escrow's or an `extra`
/// condition fails, [`LedgerError::AlreadyFinal`] for a FAILED movement,
/// [`LedgerError::NotFound`].
pub async fn post_held(table: &Table, id: &TransactionId, posting: HeldPosting<'_>) -> Result<Settled, LedgerError> {
    let tx = get_transaction(table, id).await?.ok_or(LedgerError::NotFound)?;
    match tx.status {
        TransactionStatus::Completed => return Ok(Settled { transaction: tx, changed: false }),
        TransactionStatus::Failed => return Err(LedgerError::AlreadyFinal(TransactionStatus::Failed)),
        TransactionStatus::Pending => {}
    }
    let owner = held_wallet(&tx)?;
    let held = tx.amount.value();
    let charge = posting.charge;
    if !tx.held || charge <= Decimal::ZERO || charge > held || !posting.escrow.account.is_call() {
        return Err(StoreError::Corrupt(format!("held posting of {id}: charge {charge} of {held} held")).into());
    }
    let charge_amount = Amount::new(charge, tx.currency).map_err(|_| StoreError::Corrupt("held charge".into()))?;
    let now = now_rfc3339();
    let escrow = posting.escrow.account.as_str().to_owned();
    let mark = Update::builder()
        .table_name(&table.name)
        .set_key(Some(transaction_key(id)))
        .update_expression(
            "SET #status = :completed, amount = :charge, held_amount = :held, credit_account = :escrow, \
             completed_at = :now, updated_at = :now REMOVE gsi2pk, gsi2sk",
        )
        .condition_expression("#status = :pending")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":completed", s(TransactionStatus::Completed.as_str()))
        .expression_attribute_values(":pending", s(TransactionStatus::Pending.as_str()))
        .expression_attribute_values(":charge", n(charge))
        .expression_attribute_values(":held", n(held))
        .expression_attribute_values(":escrow", s(&escrow))
        .expression_attribute_values(":now", s(&now))
        .build()
        .map_err(StoreError::dynamo)?;
    let mut items = vec![
        TransactWriteItem::builder().update(mark).build(),
        held_wallet_update(table, &owner, tx.currency, held, charge, posting.next, &now)?,
        posting.escrow.update,
    ];
    let mut meaning = vec![LedgerError::NotFound, LedgerError::InsufficientFunds, LedgerError::ConditionFailed];
    if let Some(next) = posting.next {
        if next.user_id != owner || next.currency != tx.currency {
            return Err(StoreError::Corrupt("the next hold must be on the same wallet".into()).into());
        }
        items.push(put_new(table, hold_item(next, &now))?);
        meaning.push(LedgerError::Duplicate);
    }
    meaning.extend(posting.extra.iter().map(|_| LedgerError::ConditionFailed));
    items.extend(posting.extra);
    match transact(table, items).await {
        Ok(()) => {
            let mut done = tx;
            done.status = TransactionStatus::Completed;
            done.amount = charge_amount;
            done.credit_account = escrow;
            done.completed_at = Some(now.clone());
            done.updated_at = now;
            Ok(Settled { transaction: done, changed: true })
        }
        Err(e) if e.refused_at() == Some(0) => posted_meanwhile(table, id).await,
        Err(e) => Err(explain_short(table, &owner, refusal(e, &meaning)).await),
    }
}

/// The wallet's side of posting `charge` out of a hold of `held` and holding `next`: balance
/// pays the charge; held loses the old hold and gains the next; available gets back what was
/// held but not charged and gives the next. Conditioned on the old hold being there and, when
/// `next` is held, on the wallet covering it and not being restricted.
fn held_wallet_update(
    table: &Table,
    owner: &UserId,
    currency: Currency,
    held: Decimal,
    charge: Decimal,
    next: Option<&NewHold>,
    now: &str,
) -> Result<TransactWriteItem, StoreError> {
    let next_amount = next.map_or(Decimal::ZERO, |h| h.amount.value());
    let back = held - charge - next_amount;
    let mut condition = "attribute_exists(pk) AND currency = :cur AND held >= :h".to_owned();
    let mut update = Update::builder()
        .table_name(&table.name)
        .set_key(Some(account_key(&AccountId::wallet(owner))))
        // One operator per SET value: DynamoDB refuses `held - :h + :nx`.
        .update_expression(
            "SET balance = balance - :c, held = held + :dh, available = available + :back, updated_at = :now",
        )
        .expression_attribute_values(":c", n(charge))
        .expression_attribute_values(":h", n(held))
        .expression_attribute_values(":dh", n(next_amount - held))
        .expression_attribute_values(":back", n(back))
        .expression_attribute_values(":cur", s(currency.code()))
        .expression_attribute_values(":now", s(now));
    if next.is_some() {
        // What the wallet must have available before this write for the next hold to fit.
        condition.push_str(" AND available >= :need AND attribute_not_exists(shortfall)");
        update = update.expression_attribute_values(":need", n(-back));
    }
    let update = update.condition_expression(condition).build().map_err(StoreError::dynamo)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The item of a new held (PENDING) movement.
fn hold_item(new: &NewHold, now: &str) -> Item {
    let movement = NewTransaction {
        id: new.id.clone(),
        user_id: new.user_id.clone(),
        kind: new.kind,
        amount: new.amount,
        currency: new.currency,
        debit: Side::Account(AccountId::wallet(&new.user_id)),
        credit: new.credit.clone(),
        description: new.description.clone(),
        reference: new.reference.clone(),
    };
    transaction_item(&movement, TransactionStatus::Pending, true, now)
}

/// A movement out of an escrow into several accounts (a call's payout: the callee's share and
/// the platform's), in the history of `user_id`.
#[derive(Debug, Clone)]
pub struct NewSplit {
    pub id: TransactionId,
    pub user_id: UserId,
    pub kind: TransactionType,
    pub currency: Currency,
    /// The escrow paid out of.
    pub debit: AccountId,
    /// The credits; legs of zero are left out. The movement's amount is their sum.
    pub legs: Vec<Leg>,
    pub description: String,
    pub reference: Option<String>,
}

/// Pays an escrow out: a COMPLETED movement with several credit legs, the escrow's own update
/// (`debit_update`, which must take the total from `balance` and `available`, under its own
/// conditions), and each leg's credit, in one write. For a call: the movement, the call, the
/// callee's wallet and a revenue shard: 4 items, 8 write units. The id makes it exactly once.
///
/// # Errors
/// [`LedgerError::Duplicate`] when it exists, [`LedgerError::ConditionFailed`] when the escrow
/// update's condition fails, [`LedgerError::AccountMissing`] for a missing wallet.
pub async fn transfer_split(
    table: &Table,
    new: &NewSplit,
    debit_update: TransactWriteItem,
) -> Result<Transaction, LedgerError> {
    let legs: Vec<(AccountId, Decimal)> =
        new.legs.iter().filter(|l| !l.amount.is_zero()).map(|l| (l.account.resolve(), l.amount)).collect();
    let total: Decimal = legs.iter().map(|(_, a)| *a).sum();
    let distinct = legs.iter().map(|(a, _)| a).collect::<std::collections::BTreeSet<_>>().len() == legs.len();
    if legs.is_empty() || !distinct || legs.iter().any(|(a, v)| v.is_sign_negative() || *a == new.debit) {
        return Err(
            StoreError::Corrupt(format!("split {}: legs must be distinct, positive, not the debit", new.id)).into()
        );
    }
    let amount = Amount::new(total, new.currency).map_err(|_| StoreError::Corrupt("split total".into()))?;
    let now = now_rfc3339();
    let movement = NewTransaction {
        id: new.id.clone(),
        user_id: new.user_id.clone(),
        kind: new.kind,
        amount,
        currency: new.currency,
        debit: Side::Account(new.debit.clone()),
        credit: Side::Account(legs[0].0.clone()),
        description: new.description.clone(),
        reference: new.reference.clone(),
    };
    let mut item = transaction_item(&movement, TransactionStatus::Completed, false, &now);
    item.insert("completed_at".into(), s(&now));
    item.insert(
        "legs".into(),
        AttributeValue::L(
            legs.iter()
                .map(|(a, v)| {
                    AttributeValue::M([("account".to_owned(), s(a.as_str())), ("amount".to_owned(), n(*v))].into())
                })
                .collect(),
        ),
    );
    let tx = transaction_from_item(&item)?;
    let mut items = vec![put_new(table, item)?, debit_update];
    let mut meaning = vec![LedgerError::Duplicate, LedgerError::ConditionFailed];
    for (account, value) in &legs {
        let value = Amount::new(*value, new.currency).map_err(|_| StoreError::Corrupt("split leg".into()))?;
        items.push(leg(table, account, false, value, new.currency, &now)?);
        meaning.push(LedgerError::AccountMissing);
    }
    transact(table, items).await.map_err(|e| refusal(e, &meaning))?;
    Ok(tx)
}

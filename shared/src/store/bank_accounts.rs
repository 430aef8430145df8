//! Bank accounts users withdraw to.
//!
//! | pk                                   | sk          | what                                   |
//! |--------------------------------------|-------------|----------------------------------------|
//! | `BANKACCT#<bank_account_id>`         | `BANKACCT`  | holder, encrypted number, masked number, branch, type, `usable_from`, `status` |
//! | `BANKACCTNUM#<user>#<hmac(number)>`  | `BANKACCTNUM` | one user cannot add the same account twice |
//!
//! Listed per user under `gsi1pk = USER#<id>#BANKACCTS`. Deleting marks the account `DELETED`
//! (a withdrawal already on its way still names it) and frees the number for the user.

use super::item::{key, s, Item, ItemExt};
use super::{now_rfc3339, put_new, transact, StoreError, Table, TransactError};
use crate::domain::ids::{BankAccountId, UserId};
use aws_sdk_dynamodb::types::{Delete, TransactWriteItem, Update};

fn account_key(id: &BankAccountId) -> Item {
    key(format!("BANKACCT#{id}"), "BANKACCT")
}

fn number_claim_key(user: &UserId, number_hash: &str) -> Item {
    key(format!("BANKACCTNUM#{user}#{number_hash}"), "BANKACCTNUM")
}

/// A stored bank account (the number only encrypted and masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankAccount {
    pub id: BankAccountId,
    pub user_id: UserId,
    pub account_holder: String,
    pub number_ciphertext: String,
    pub number_masked: String,
    pub number_hash: String,
    pub branch_code: String,
    pub account_type: String,
    pub created_at: String,
    /// RFC 3339: withdrawals to it are accepted from then on (the cooling-off period).
    pub usable_from: String,
    /// `ACTIVE` or `DELETED`.
    pub status: String,
}

/// A bank account to store.
#[derive(Debug, Clone)]
pub struct NewBankAccount {
    pub id: BankAccountId,
    pub user_id: UserId,
    pub account_holder: String,
    pub number_ciphertext: String,
    pub number_masked: String,
    pub number_hash: String,
    pub branch_code: String,
    pub account_type: String,
    pub usable_from: String,
}

fn from_item(item: &Item) -> Result<BankAccount, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("bank account: {what}"));
    let text = |name: &str| item.str(name).map(str::to_owned);
    Ok(BankAccount {
        id: BankAccountId::parse(item.str("bank_account_id")?).map_err(|_| corrupt("id"))?,
        user_id: UserId::parse(item.str("user_id")?).map_err(|_| corrupt("user_id"))?,
        account_holder: text("account_holder")?,
        number_ciphertext: text("number_ciphertext")?,
        number_masked: text("number_masked")?,
        number_hash: text("number_hash")?,
        branch_code: text("branch_code")?,
        account_type: text("account_type")?,
        created_at: text("created_at")?,
        usable_from: text("usable_from")?,
        status: text("status")?,
    })
}

/// Why an account was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("this bank account is already on your list")]
    Duplicate,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores a new account and claims its number for the user, in one transaction.
///
/// # Errors
/// [`AddError::Duplicate`] when the user already has this account.
pub async fn add(table: &Table, new: &NewBankAccount) -> Result<BankAccount, AddError> {
    let now = now_rfc3339();
    let mut item = account_key(&new.id);
    for (k, v) in [
        ("entity", "bank_account"),
        ("bank_account_id", new.id.as_str()),
        ("user_id", new.user_id.as_str()),
        ("account_holder", &new.account_holder),
        ("number_ciphertext", &new.number_ciphertext),
        ("number_masked", &new.number_masked),
        ("number_hash", &new.number_hash),
        ("branch_code", &new.branch_code),
        ("account_type", &new.account_type),
        ("created_at", &now),
        ("usable_from", &new.usable_from),
        ("status", "ACTIVE"),
        ("gsi1sk", &now),
    ] {
        item.insert(k.into(), s(v));
    }
    item.insert("gsi1pk".into(), s(format!("USER#{}#BANKACCTS", new.user_id)));
    let account = from_item(&item)?;
    let mut claim = number_claim_key(&new.user_id, &new.number_hash);
    claim.insert("bank_account_id".into(), s(new.id.as_str()));
    match transact(table, vec![put_new(table, item)?, put_new(table, claim)?]).await {
        Ok(()) => Ok(account),
        Err(TransactError::Store(e)) => Err(e.into()),
        Err(e) if e.refused_at() == Some(1) => Err(AddError::Duplicate),
        Err(e) => Err(StoreError::Dynamo(format!("bank account refused: {e:?}")).into()),
    }
}

/// The account `id` if it is `user`'s (deleted ones included: a withdrawal on its way may
/// name one); `None` for another user's or an unknown id.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn get(table: &Table, user: &UserId, id: &BankAccountId) -> Result<Option<BankAccount>, StoreError> {
    let item = super::get_item(table, account_key(id)).await?;
    Ok(item.as_ref().map(from_item).transpose()?.filter(|a| &a.user_id == user))
}

/// The user's active accounts, newest first (at most 50).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn list(table: &Table, user: &UserId) -> Result<Vec<BankAccount>, StoreError> {
    let items = super::index_newest(table, "gsi1", &format!("USER#{user}#BANKACCTS"), 100).await?;
    let all = items.iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
    Ok(all.into_iter().filter(|a| a.status == "ACTIVE").take(50).collect())
}

/// Deletes the user's account: `DELETED`, and the number freed, in one transaction. Returns
/// `false` when there is no such active account of this user.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn delete(table: &Table, user: &UserId, id: &BankAccountId) -> Result<bool, StoreError> {
    let Some(account) = get(table, user, id).await? else { return Ok(false) };
    if account.status != "ACTIVE" {
        return Ok(false);
    }
    let mark = Update::builder()
        .table_name(&table.name)
        .set_key(Some(account_key(id)))
        .update_expression("SET #status = :deleted, deleted_at = :now")
        .condition_expression("user_id = :me AND #status = :active")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":deleted", s("DELETED"))
        .expression_attribute_values(":active", s("ACTIVE"))
        .expression_attribute_values(":me", s(user.as_str()))
        .expression_attribute_values(":now", s(now_rfc3339()))
        .build()
        .map_err(StoreError::dynamo)?;
    let free = Delete::builder()
        .table_name(&table.name)
        .set_key(Some(number_claim_key(user, &account.number_hash)))
        .build()
        .map_err(StoreError::dynamo)?;
    let items =
        vec![TransactWriteItem::builder().update(mark).build(), TransactWriteItem::builder().delete(free).build()];
    match transact(table, items).await {
        Ok(()) => Ok(true),
        Err(TransactError::Store(e)) => Err(e),
        Err(_) => Ok(false),
    }
}

//! Bank accounts: `POST`, `GET` and `DELETE /v1/bank-accounts`.
//!
//! The account number is personal data: stored encrypted with the same keyring as the PAN
//! ([`PiiKeys`], bound to the owner and the account id), shown as `xxxxx0001`, and decrypted
//! only by the payout worker when it asks Revio to pay. A new account receives withdrawals only
//! after a cooling-off period (`BANK_ACCOUNT_COOLING_OFF_SECONDS`), so that someone who takes
//! over an account cannot add their own bank and empty the wallet at once.

use crate::config::{Env, InitError};
use crate::domain::bank::{BankFieldError, NewBankAccount};
use crate::domain::ids::{BankAccountId, UserId};
use crate::error::ApiError;
use crate::pii::PiiKeys;
use crate::revio::Recipient;
use crate::secrets::SecretString;
use crate::store::bank_accounts::{self as store, AddError, BankAccount};
use crate::store::{StoreError, Table};
use serde::{Deserialize, Serialize};

/// `POST /v1/bank-accounts` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddInput {
    pub account_holder: String,
    pub account_number: String,
    pub branch_code: String,
    pub account_type: String,
}

/// A bank account as its owner sees it.
#[derive(Debug, Serialize)]
pub struct BankAccountView {
    pub bank_account_id: String,
    pub account_holder: String,
    /// `xxxxx0001`.
    pub account_number_masked: String,
    pub branch_code: String,
    pub account_type: String,
    pub created_at: String,
    /// Withdrawals to this account are accepted from this time on.
    pub usable_from: String,
}

impl From<&BankAccount> for BankAccountView {
    fn from(a: &BankAccount) -> Self {
        Self {
            bank_account_id: a.id.to_string(),
            account_holder: a.account_holder.clone(),
            account_number_masked: a.number_masked.clone(),
            branch_code: a.branch_code.clone(),
            account_type: a.account_type.clone(),
            created_at: a.created_at.clone(),
            usable_from: a.usable_from.clone(),
        }
    }
}

/// `GET /v1/bank-accounts`.
#[derive(Debug, Serialize)]
pub struct BankAccountList {
    pub items: Vec<BankAccountView>,
}

/// Most active accounts one user may have.
pub const MAX_ACCOUNTS: usize = 10;

/// The bank-account use cases, built once per cold start.
pub struct BankAccounts {
    pub table: Table,
    keys: PiiKeys,
    cooling_off_seconds: i64,
}

// One literal code per constructor call: `tests/integration/openapi.rs` finds them there.
fn field_error(e: BankFieldError) -> ApiError {
    let message = e.to_string();
    match e {
        BankFieldError::InvalidHolder => ApiError::bad_request("invalid_account_holder", message),
        BankFieldError::InvalidAccountNumber => ApiError::bad_request("invalid_account_number", message),
        BankFieldError::InvalidBranchCode => ApiError::bad_request("invalid_branch_code", message),
        BankFieldError::InvalidAccountType => ApiError::bad_request("invalid_account_type", message),
    }
}

fn context(user: &UserId, id: &BankAccountId) -> String {
    format!("bank:{user}:{id}")
}

impl BankAccounts {
    /// Reads `PURSE_TABLE`, the PII keys and `BANK_ACCOUNT_COOLING_OFF_SECONDS`.
    ///
    /// # Errors
    /// [`InitError`] naming what is missing.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(env, aws)?,
            keys: PiiKeys::from_env(env, aws).await?,
            cooling_off_seconds: env.require_parsed("BANK_ACCOUNT_COOLING_OFF_SECONDS")?,
        })
    }

    /// Adds an account for `user`.
    ///
    /// # Errors
    /// 400 for a field, 409 `bank_account_exists`, 422 `too_many_bank_accounts`, or storage.
    pub async fn add(&self, user: &UserId, input: AddInput) -> Result<BankAccountView, ApiError> {
        let new = NewBankAccount::parse(
            &input.account_holder,
            &input.account_number,
            &input.branch_code,
            &input.account_type,
        )
        .map_err(field_error)?;
        if store::list(&self.table, user).await?.len() >= MAX_ACCOUNTS {
            return Err(ApiError::unprocessable(
                "too_many_bank_accounts",
                format!("at most {MAX_ACCOUNTS} bank accounts; delete one first"),
            ));
        }
        let id = BankAccountId::generate();
        let usable_from = (chrono::Utc::now() + chrono::Duration::seconds(self.cooling_off_seconds))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let stored = store::NewBankAccount {
            id: id.clone(),
            user_id: user.clone(),
            account_holder: new.holder.expose().to_owned(),
            number_ciphertext: self.keys.encrypt(new.number.expose(), &context(user, &id)),
            number_masked: new.number.masked(),
            number_hash: self.keys.keyed_hash(&format!("bank-account:{user}"), new.number.expose()),
            branch_code: new.branch_code.clone(),
            account_type: new.account_type.as_str().to_owned(),
            usable_from,
        };
        match store::add(&self.table, &stored).await {
            Ok(account) => {
                tracing::info!(user_id = %user, bank_account_id = %id, "bank account added");
                Ok(BankAccountView::from(&account))
            }
            Err(AddError::Duplicate) => {
                Err(ApiError::conflict("bank_account_exists", "this bank account is already on your list"))
            }
            Err(AddError::Store(e)) => Err(e.into()),
        }
    }

    /// The user's accounts.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(&self, user: &UserId) -> Result<BankAccountList, ApiError> {
        Ok(BankAccountList { items: store::list(&self.table, user).await?.iter().map(BankAccountView::from).collect() })
    }

    /// Deletes one of the user's accounts.
    ///
    /// # Errors
    /// 404 when it is not the user's active account.
    pub async fn delete(&self, user: &UserId, id: &str) -> Result<(), ApiError> {
        let not_found = || ApiError::not_found("no such bank account");
        let id = BankAccountId::parse(id).map_err(|_| not_found())?;
        if store::delete(&self.table, user, &id).await? {
            tracing::info!(user_id = %user, bank_account_id = %id, "bank account deleted");
            Ok(())
        } else {
            Err(not_found())
        }
    }
}

/// Where a payout goes: the account's details with its number decrypted, for the payout request
/// only.
///
/// # Errors
/// [`StoreError::Corrupt`] when the number does not decrypt (wrong owner, tampered item).
pub fn recipient(keys: &PiiKeys, account: &BankAccount) -> Result<Recipient, StoreError> {
    let number = keys
        .decrypt(&account.number_ciphertext, &context(&account.user_id, &account.id))
        .map_err(|e| StoreError::Corrupt(format!("bank account {}: {e}", account.id)))?;
    Ok(Recipient {
        account_holder: account.account_holder.clone(),
        account_number: SecretString::new(number),
        branch_code: account.branch_code.clone(),
        account_type: account.account_type.clone(),
    })
}

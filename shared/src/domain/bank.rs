//! South African bank accounts, as a person enters them to receive withdrawals.

use crate::domain::kyc::FullName;
use std::fmt;

/// Why a bank-account field was refused. None repeats the account number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankFieldError {
    #[error("account_holder must be 2 to 100 letters, spaces, dots, apostrophes or hyphens")]
    InvalidHolder,
    #[error("account_number must be 7 to 11 digits")]
    InvalidAccountNumber,
    #[error("branch_code must be 6 digits")]
    InvalidBranchCode,
    #[error("account_type must be cheque, savings or transmission")]
    InvalidAccountType,
}

/// An account number: digits only, 7 to 11 of them. Never printed whole.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountNumber(String);

impl AccountNumber {
    /// Parses an account number, forgiving spaces and dashes between digit groups.
    ///
    /// # Errors
    /// [`BankFieldError::InvalidAccountNumber`].
    pub fn parse(text: &str) -> Result<Self, BankFieldError> {
        let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if (7..=11).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits))
        } else {
            Err(BankFieldError::InvalidAccountNumber)
        }
    }

    /// The number, for the one place that needs it (encryption, the payout request).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `xxxxx0001`: only the last four digits.
    pub fn masked(&self) -> String {
        format!("{}{}", "x".repeat(self.0.len() - 4), &self.0[self.0.len() - 4..])
    }
}

impl fmt::Debug for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountNumber({})", self.masked())
    }
}

/// The kinds of account a South African bank pays into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountType {
    Cheque,
    Savings,
    Transmission,
}

impl AccountType {
    /// Parses `cheque`, `savings` or `transmission` (any case; `current` means cheque).
    ///
    /// # Errors
    /// [`BankFieldError::InvalidAccountType`].
    pub fn parse(text: &str) -> Result<Self, BankFieldError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cheque" | "current" => Ok(Self::Cheque),
            "savings" => Ok(Self::Savings),
            "transmission" => Ok(Self::Transmission),
            _ => Err(BankFieldError::InvalidAccountType),
        }
    }

    /// The stored and sent name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cheque => "cheque",
            Self::Savings => "savings",
            Self::Transmission => "transmission",
        }
    }
}

/// A complete, valid bank account.
#[derive(Debug, Clone)]
pub struct NewBankAccount {
    pub holder: FullName,
    pub number: AccountNumber,
    /// Six digits (the universal branch code of a bank, or a branch's own).
    pub branch_code: String,
    pub account_type: AccountType,
}

impl NewBankAccount {
    /// Parses the fields of `POST /v1/bank-accounts`.
    ///
    /// # Errors
    /// The first [`BankFieldError`].
    pub fn parse(holder: &str, number: &str, branch_code: &str, account_type: &str) -> Result<Self, BankFieldError> {
        let holder = FullName::parse(holder).map_err(|_| BankFieldError::InvalidHolder)?;
        let number = AccountNumber::parse(number)?;
        let branch = branch_code.trim();
        if branch.len() != 6 || !branch.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BankFieldError::InvalidBranchCode);
        }
        Ok(Self { holder, number, branch_code: branch.to_owned(), account_type: AccountType::parse(account_type)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_numbers_are_digits_only_and_masked_to_the_last_four() {
        let n = AccountNumber::parse("1100-000 01").unwrap();
        assert_eq!((n.expose(), n.masked().as_str()), ("110000001", "xxxxx0001"));
        assert!(!format!("{n:?}").contains("110000001"));
        for bad in ["", "123456", "123456789012", "11000000a", "1.10000001", "１１０００００01"] {
            assert_eq!(AccountNumber::parse(bad), Err(BankFieldError::InvalidAccountNumber), "{bad}");
        }
    }

    #[test]
    fn an_account_needs_a_holder_a_six_digit_branch_and_a_known_type() {
        assert!(NewBankAccount::parse("Ada Lovelace", "110000001", "250655", "Cheque").is_ok());
        assert_eq!(
            NewBankAccount::parse("", "110000001", "250655", "cheque").unwrap_err(),
            BankFieldError::InvalidHolder
        );
        assert_eq!(
            NewBankAccount::parse("Ada", "110000001", "25065", "cheque").unwrap_err(),
            BankFieldError::InvalidBranchCode
        );
        assert_eq!(
            NewBankAccount::parse("Ada", "110000001", "250655", "crypto").unwrap_err(),
            BankFieldError::InvalidAccountType
        );
    }
}

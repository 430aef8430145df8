//! Use cases: one function per thing a person or a provider asks of Purse.
//!
//! Each operation has its own error enum; its `From<…> for ApiError` next to it is the one place
//! that decides the HTTP status and stable code for each case.

pub mod accounts;
pub mod admin;
pub mod bank_accounts;
pub mod calls;
pub mod cases;
pub mod deposits;
pub mod games;
pub mod history;
pub mod kyc;
pub mod phone;
pub mod referrals;
pub mod settlement;
pub mod signaling;
pub mod views;
pub mod webhooks;
pub mod withdrawals;

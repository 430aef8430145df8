//! Every function of the project by binary name, so the dev server and the tests can start the
//! very code each Lambda runs. A test checks this list against `template.yaml`.

use purse::config::InitError;
use purse::runtime::{
    DynHttpFunction, DynScheduledFunction, DynSqsFunction, InitContext, Loaded, LoadedScheduled, LoadedSqs,
};

/// An initialised function of either kind.
pub enum Handler {
    Http(Box<dyn DynHttpFunction>),
    Sqs(Box<dyn DynSqsFunction>),
    Scheduled(Box<dyn DynScheduledFunction>),
}

macro_rules! registry {
    (http: [$($h:ident),* $(,)?], sqs: [$($s:ident),* $(,)?], scheduled: [$($c:ident),* $(,)?] $(,)?) => {
        /// Binary names of every function.
        pub const BINARIES: &[&str] = &[$(stringify!($h),)* $(stringify!($s),)* $(stringify!($c),)*];

        /// Initialises the function built as `binary`.
        ///
        /// # Errors
        /// The function's own [`InitError`], or `InvalidEnv` for an unknown binary.
        pub async fn init(binary: &str, ctx: &InitContext) -> Result<Handler, InitError> {
            match binary {
                $(stringify!($h) => Ok(Handler::Http(Box::new(Loaded::<$h::Function>::init(ctx).await?))),)*
                $(stringify!($s) => Ok(Handler::Sqs(Box::new(LoadedSqs::<$s::Function>::init(ctx).await?))),)*
                $(stringify!($c) => Ok(Handler::Scheduled(Box::new(LoadedScheduled::<$c::Function>::init(ctx).await?))),)*
                other => Err(InitError::InvalidEnv { name: "binary".into(), reason: format!("no function {other}") }),
            }
        }
    };
}

registry! {
    http: [
        http_auth_register,
        http_auth_login,
        http_auth_refresh,
        http_auth_logout,
        http_me_get,
        http_wallet_get,
        http_deposits_create,
        http_transactions_list,
        http_transactions_get,
        http_admin_transaction_webhooks,
        http_admin_cases_list,
        http_admin_cases_resolve,
        http_admin_adjustments_create,
        http_admin_adjustments_list,
        http_admin_users_get,
        http_kyc_submit,
        http_kyc_get,
        http_admin_kyc_reviews,
        http_admin_kyc_resolve,
        http_referrals_get,
        http_bank_accounts_create,
        http_bank_accounts_list,
        http_bank_accounts_delete,
        http_withdrawals_create,
        http_withdrawals_cancel,
        webhook_revio,
        webhook_kyc,
    ],
    sqs: [sqs_revio_events, sqs_kyc_events, sqs_referral_rewards, sqs_payouts],
    scheduled: [schedule_reconcile_deposits],
}

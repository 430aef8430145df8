//! Every function of the project by binary name, so the dev server and the tests can start the
//! very code each Lambda runs. A test checks this list against `template.yaml`.

use purse::config::InitError;
use purse::runtime::{
    DynHttpFunction, DynScheduledFunction, DynSqsFunction, DynWsFunction, InitContext, Loaded, LoadedScheduled,
    LoadedSqs, LoadedWs,
};

/// An initialised function of any kind.
pub enum Handler {
    Http(Box<dyn DynHttpFunction>),
    Sqs(Box<dyn DynSqsFunction>),
    Scheduled(Box<dyn DynScheduledFunction>),
    /// A WebSocket API route (`$connect`, `$disconnect`, `$default` or a custom route key).
    Ws(Box<dyn DynWsFunction>),
}

macro_rules! registry {
    (
        http: [$($h:ident),* $(,)?],
        sqs: [$($s:ident),* $(,)?],
        scheduled: [$($c:ident),* $(,)?],
        ws: [$($w:ident),* $(,)?] $(,)?
    ) => {
        /// Binary names of every function.
        pub const BINARIES: &[&str] =
            &[$(stringify!($h),)* $(stringify!($s),)* $(stringify!($c),)* $(stringify!($w),)*];

        /// Binary names of the WebSocket route functions.
        pub const WS_BINARIES: &[&str] = &[$(stringify!($w),)*];

        /// Initialises the function built as `binary`.
        ///
        /// # Errors
        /// The function's own [`InitError`], or `InvalidEnv` for an unknown binary.
        pub async fn init(binary: &str, ctx: &InitContext) -> Result<Handler, InitError> {
            match binary {
                $(stringify!($h) => Ok(Handler::Http(Box::new(Loaded::<$h::Function>::init(ctx).await?))),)*
                $(stringify!($s) => Ok(Handler::Sqs(Box::new(LoadedSqs::<$s::Function>::init(ctx).await?))),)*
                $(stringify!($c) => Ok(Handler::Scheduled(Box::new(LoadedScheduled::<$c::Function>::init(ctx).await?))),)*
                $(stringify!($w) => Ok(Handler::Ws(Box::new(LoadedWs::<$w::Function>::init(ctx).await?))),)*
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
        http_admin_queues,
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
        http_games_fees,
        http_games_rewards,
        http_ws_tickets,
        http_me_call_price,
        http_users_get,
        http_calls_list,
        http_calls_get,
        http_calls_phone,
        webhook_revio,
        webhook_kyc,
        webhook_telephony_voice,
        webhook_telephony_status,
    ],
    sqs: [sqs_revio_events, sqs_kyc_events, sqs_referral_rewards, sqs_payouts, sqs_call_billing],
    scheduled: [schedule_reconcile_deposits, schedule_call_sweeper],
    ws: [
        ws_connect,
        ws_disconnect,
        ws_default,
        ws_call_invite,
        ws_call_accept,
        ws_call_reject,
        ws_call_end,
        ws_signal,
        ws_ping,
    ],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_function_is_registered_and_the_ws_ones_as_ws() {
        let template = crate::template::Template::project().unwrap();
        let functions = template.functions().unwrap();
        let mut declared: Vec<&str> = functions.iter().map(|f| f.binary.as_str()).collect();
        let mut registered = BINARIES.to_vec();
        declared.sort_unstable();
        registered.sort_unstable();
        assert_eq!(declared, registered);
        let mut routed: Vec<&str> =
            functions.iter().filter(|f| !f.ws_routes.is_empty()).map(|f| f.binary.as_str()).collect();
        let mut ws = WS_BINARIES.to_vec();
        routed.sort_unstable();
        ws.sort_unstable();
        assert_eq!(routed, ws, "the WebSocket route functions of the template are exactly the ws: list");
    }
}

//! The call sweeper, every minute: ends calls that rang too long (`no_answer`) or whose parties'
//! connections vanished without a `$disconnect` (`disconnected`), settling them, replays
//! billing ticks that are overdue (lost between a write and its queueing), pays out ended calls
//! whose payout failed, and settles phone calls whose provider callbacks never came from the
//! provider's own records (a call the provider has not finished is left alone, held, and
//! counted as stuck).

use purse::config::InitError;
use purse::runtime::{InitContext, ScheduledFunction};
use purse::service::calls::Calls;
use purse::service::phone::TelephonyWebhooks;

/// The `schedule_call_sweeper` Lambda function.
pub struct Function {
    calls: Calls,
    phone: TelephonyWebhooks,
}

impl ScheduledFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self {
            calls: Calls::from_env(&ctx.env, &ctx.aws)?,
            phone: TelephonyWebhooks::status_from_env(&ctx.env, &ctx.aws).await?,
        })
    }

    async fn run(&self) -> Result<serde_json::Value, String> {
        let calls = self.calls.sweep().await.map_err(|e| e.to_string())?;
        let phone = self.phone.reconcile(chrono::Utc::now().timestamp_millis()).await.map_err(|e| e.to_string())?;
        Ok(serde_json::json!({"calls": calls, "phone_calls": phone}))
    }
}

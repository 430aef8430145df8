//! The call sweeper, every minute: ends calls that rang too long (`no_answer`) or whose parties'
//! connections vanished without a `$disconnect` (`disconnected`), settling them, and replays
//! billing ticks that are overdue (lost between a write and its queueing).

use purse::config::InitError;
use purse::runtime::{InitContext, ScheduledFunction};
use purse::service::calls::Calls;

/// The `schedule_call_sweeper` Lambda function.
pub struct Function {
    calls: Calls,
}

impl ScheduledFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { calls: Calls::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn run(&self) -> Result<serde_json::Value, String> {
        self.calls.sweep().await.map_err(|e| e.to_string())
    }
}

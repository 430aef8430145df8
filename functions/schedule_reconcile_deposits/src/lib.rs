//! Scheduled reconciliation: settles PENDING deposits whose webhook never arrived by asking
//! Revio, and fails deposits that never reached Revio.

use purse::config::InitError;
use purse::revio::RevioClient;
use purse::runtime::{InitContext, ScheduledFunction};
use purse::service::settlement;
use purse::store::Table;

/// The `schedule_reconcile_deposits` Lambda function.
pub struct Function {
    table: Table,
    revio: RevioClient,
    min_age_seconds: i64,
    abandon_after_seconds: i64,
}

impl ScheduledFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(&ctx.env, &ctx.aws)?,
            revio: RevioClient::from_env(&ctx.env, &ctx.aws).await?,
            min_age_seconds: ctx.env.require_parsed("RECONCILE_MIN_AGE_SECONDS")?,
            abandon_after_seconds: ctx.env.require_parsed("RECONCILE_ABANDON_AFTER_SECONDS")?,
        })
    }

    async fn run(&self) -> Result<serde_json::Value, String> {
        let report = settlement::reconcile_pending_deposits(
            &self.table,
            &self.revio,
            self.min_age_seconds,
            self.abandon_after_seconds,
        )
        .await
        .map_err(|e| e.to_string())?;
        serde_json::to_value(report).map_err(|e| e.to_string())
    }
}

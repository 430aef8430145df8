//! Scheduled reconciliation: settles PENDING deposits whose webhook never arrived by asking
//! Revio, expires deposits left unpaid, fails deposits that never reached Revio, and covers
//! restricted wallets' shortfalls — within a time budget, resuming where the last run stopped.
//! It also relays the referral outbox (reward events recorded but not yet processed) and
//! reconciles PENDING withdrawals: queues payouts the worker never took, settles those Revio
//! has decided.

use purse::config::InitError;
use purse::revio::RevioClient;
use purse::runtime::{InitContext, ScheduledFunction};
use purse::service::referrals::RewardsRelay;
use purse::service::settlement;
use purse::service::withdrawals::{self, PayoutQueue};
use purse::store::Table;

/// PENDING withdrawals looked at per index shard and run.
const WITHDRAWALS_PER_SHARD: i32 = 100;

/// Referral events relayed per run (each is one SQS send; the rest wait for the next run).
const RELAY_BATCH: i32 = 200;

/// The `schedule_reconcile_deposits` Lambda function.
pub struct Function {
    table: Table,
    revio: RevioClient,
    config: settlement::ReconcileConfig,
    relay: RewardsRelay,
    payouts: PayoutQueue,
}

impl ScheduledFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(&ctx.env, &ctx.aws)?,
            revio: RevioClient::from_env(&ctx.env, &ctx.aws).await?,
            config: settlement::ReconcileConfig {
                min_age_seconds: ctx.env.require_parsed("RECONCILE_MIN_AGE_SECONDS")?,
                abandon_after_seconds: ctx.env.require_parsed("RECONCILE_ABANDON_AFTER_SECONDS")?,
                expire_after_seconds: ctx.env.require_parsed("DEPOSIT_EXPIRE_AFTER_SECONDS")?,
                budget: std::time::Duration::from_secs(ctx.env.require_parsed("RECONCILE_BUDGET_SECONDS")?),
            },
            relay: RewardsRelay::from_env(&ctx.env, &ctx.aws)?,
            payouts: PayoutQueue::from_env(&ctx.env, &ctx.aws)?,
        })
    }

    async fn run(&self) -> Result<serde_json::Value, String> {
        let report = settlement::reconcile_pending_deposits(&self.table, &self.revio, self.config)
            .await
            .map_err(|e| e.to_string())?;
        let mut summary = serde_json::to_value(report).map_err(|e| e.to_string())?;
        let withdrawals = withdrawals::reconcile(
            &self.table,
            &self.revio,
            &self.payouts,
            self.config.min_age_seconds,
            WITHDRAWALS_PER_SHARD,
        )
        .await
        .map_err(|e| e.to_string())?;
        summary["withdrawals"] = serde_json::to_value(withdrawals).map_err(|e| e.to_string())?;
        // The referral outbox: reward events whose immediate announcement may have been lost.
        let relayed = self.relay.relay_due(&self.table, RELAY_BATCH).await.map_err(|e| e.to_string())?;
        summary["referral_events_relayed"] = relayed.into();
        Ok(summary)
    }
}

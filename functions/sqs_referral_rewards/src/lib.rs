//! SQS consumer of the rewards queue: for each announced referee, pays the referrer's reward if
//! it is owed (first deposit completed and KYC verified), exactly once, within the cap.

use purse::config::InitError;
use purse::runtime::{InitContext, MessageError, SqsFunction, SqsMessage};
use purse::service::referrals::{self, RewardRules, RewardsRelay};
use purse::store::Table;

/// The `sqs_referral_rewards` Lambda function.
pub struct Function {
    table: Table,
    rules: RewardRules,
    relay: RewardsRelay,
}

impl SqsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(&ctx.env, &ctx.aws)?,
            rules: RewardRules::from_env(&ctx.env)?,
            relay: RewardsRelay::from_env(&ctx.env, &ctx.aws)?,
        })
    }

    async fn handle_message(&self, message: &SqsMessage) -> Result<(), MessageError> {
        referrals::process(&self.table, &self.rules, &self.relay, message.body.as_deref().unwrap_or("")).await
    }
}

//! SQS consumer of the payouts queue: submits each withdrawal's payout to Revio with our
//! movement id as its reference, retries transient failures with exponential backoff through
//! the message's visibility, looks the payout up by reference after an ambiguous failure, and
//! after the last attempt marks the withdrawal STUCK and lets the message go to the DLQ.

use purse::config::InitError;
use purse::runtime::{InitContext, MessageError, SqsFunction, SqsMessage};
use purse::service::withdrawals::Payouts;

/// The `sqs_payouts` Lambda function.
pub struct Function {
    payouts: Payouts,
}

impl SqsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { payouts: Payouts::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle_message(&self, message: &SqsMessage) -> Result<(), MessageError> {
        self.payouts.process(message).await
    }

    fn max_receives(&self) -> u32 {
        self.payouts.max_attempts()
    }
}

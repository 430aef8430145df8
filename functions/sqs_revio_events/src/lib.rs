//! SQS consumer of the Revio events queue: confirms each event with Revio's API and applies it
//! to the ledger exactly once. A message that cannot be applied yet is reported as a batch item
//! failure, redelivered, and after `maxReceiveCount` parked in the dead-letter queue.

use purse::config::InitError;
use purse::runtime::{InitContext, MessageError, SqsFunction, SqsMessage};
use purse::service::webhooks::RevioEventProcessor;

/// The `sqs_revio_events` Lambda function.
pub struct Function {
    processor: RevioEventProcessor,
}

impl SqsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { processor: RevioEventProcessor::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle_message(&self, message: &SqsMessage) -> Result<(), MessageError> {
        self.processor.process(message.body.as_deref().unwrap_or("")).await
    }
}

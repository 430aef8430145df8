//! SQS consumer of the call billing queue: each minute's tick posts that minute and holds the
//! next (exactly once per `call_id#minute`), and a ring timeout ends a call nobody answered.
//! Both parties are told over the WebSocket API.

use purse::config::InitError;
use purse::runtime::{InitContext, MessageError, SqsFunction, SqsMessage};
use purse::service::calls::{BillingMessage, Calls};

/// The `sqs_call_billing` Lambda function.
pub struct Function {
    calls: Calls,
}

impl SqsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { calls: Calls::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle_message(&self, message: &SqsMessage) -> Result<(), MessageError> {
        let body = message.body.as_deref().unwrap_or("");
        let parsed = serde_json::from_str::<BillingMessage>(body).map_err(|e| {
            // Reported like every consumer's unreadable message: after its retries it waits in
            // the dead-letter queue for a person (logged without the body).
            MessageError(format!("unreadable billing message ({} bytes): {e}", body.len()))
        })?;
        self.calls.handle(&parsed).await.map_err(|e| MessageError(e.to_string()))
    }
}

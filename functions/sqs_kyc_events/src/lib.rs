//! SQS consumer of the KYC queue: the provider's webhook results and the delayed follow-ups
//! that poll for results that never came. Each is confirmed with the provider's API and
//! applied once; a check still pending is asked again with backoff, then handed to a person.

use purse::config::InitError;
use purse::kyc::{KarzaClient, KycSecret};
use purse::runtime::{InitContext, MessageError, SqsFunction, SqsMessage};
use purse::service::kyc::KycService;

/// The `sqs_kyc_events` Lambda function.
pub struct Function {
    kyc: KycService<KarzaClient>,
}

impl SqsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        let secret = KycSecret::from_env(&ctx.env, &ctx.aws).await?;
        let provider = KarzaClient::from_env(&ctx.env, &secret)?;
        Ok(Self { kyc: KycService::from_env(&ctx.env, &ctx.aws, provider).await? })
    }

    async fn handle_message(&self, message: &SqsMessage) -> Result<(), MessageError> {
        let receives = message.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
        self.kyc.process(message.body.as_deref().unwrap_or(""), receives).await
    }
}

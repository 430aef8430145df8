//! Lambda entry point of `sqs_referral_rewards`: initialise once, then process SQS batches.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    purse::runtime::run_sqs::<sqs_referral_rewards::Function>().await
}

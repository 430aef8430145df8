//! Lambda entry point of `sqs_payouts`: initialise once, then process SQS batches.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    purse::runtime::run_sqs::<sqs_payouts::Function>().await
}

//! Lambda entry point of `sqs_call_billing`: initialise once, then process SQS batches.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    purse::runtime::run_sqs::<sqs_call_billing::Function>().await
}

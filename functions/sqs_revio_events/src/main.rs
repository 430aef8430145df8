//! Lambda entry point of `sqs_revio_events`: initialise once, then process SQS batches.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    purse::runtime::run_sqs::<sqs_revio_events::Function>().await
}

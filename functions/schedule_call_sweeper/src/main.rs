//! Lambda entry point of `schedule_call_sweeper`: initialise once, then run on schedule.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    purse::runtime::run_scheduled::<schedule_call_sweeper::Function>().await
}

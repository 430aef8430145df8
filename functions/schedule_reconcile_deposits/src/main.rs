//! Lambda entry point of `schedule_reconcile_deposits`: initialise once, then run on every scheduled event.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    purse::runtime::run_scheduled::<schedule_reconcile_deposits::Function>().await
}

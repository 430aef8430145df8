//! Lambda entry point of `webhook_revio`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<webhook_revio::Function>().await
}

//! Lambda entry point of `webhook_kyc`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<webhook_kyc::Function>().await
}

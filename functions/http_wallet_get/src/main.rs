//! Lambda entry point of `http_wallet_get`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_wallet_get::Function>().await
}

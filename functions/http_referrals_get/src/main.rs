//! Lambda entry point of `http_referrals_get`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_referrals_get::Function>().await
}

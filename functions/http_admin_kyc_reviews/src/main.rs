//! Lambda entry point of `http_admin_kyc_reviews`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_admin_kyc_reviews::Function>().await
}

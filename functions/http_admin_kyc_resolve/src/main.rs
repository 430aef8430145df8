//! Lambda entry point of `http_admin_kyc_resolve`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_admin_kyc_resolve::Function>().await
}

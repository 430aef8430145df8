//! Lambda entry point of `http_kyc_submit`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_kyc_submit::Function>().await
}

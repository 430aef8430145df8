//! Lambda entry point of `http_withdrawals_create`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_withdrawals_create::Function>().await
}

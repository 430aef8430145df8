//! Lambda entry point of `http_bank_accounts_list`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_bank_accounts_list::Function>().await
}

//! Lambda entry point of `http_users_get`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_users_get::Function>().await
}

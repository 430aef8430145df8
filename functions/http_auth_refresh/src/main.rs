//! Lambda entry point of `http_auth_refresh`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_auth_refresh::Function>().await
}

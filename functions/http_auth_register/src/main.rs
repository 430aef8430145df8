//! Lambda entry point of `http_auth_register`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_auth_register::Function>().await
}

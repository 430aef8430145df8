//! Lambda entry point of `http_auth_logout`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_auth_logout::Function>().await
}

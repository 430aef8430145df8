//! Lambda entry point of `http_deposits_create`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_deposits_create::Function>().await
}

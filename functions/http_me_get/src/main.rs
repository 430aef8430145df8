//! Lambda entry point of `http_me_get`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_me_get::Function>().await
}

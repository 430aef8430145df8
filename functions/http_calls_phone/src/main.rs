//! Lambda entry point of `http_calls_phone`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_calls_phone::Function>().await
}

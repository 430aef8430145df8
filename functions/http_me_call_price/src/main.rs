//! Lambda entry point of `http_me_call_price`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_me_call_price::Function>().await
}

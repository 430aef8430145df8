//! Lambda entry point of `http_calls_list`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_calls_list::Function>().await
}

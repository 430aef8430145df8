//! Lambda entry point of `http_ws_tickets`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_ws_tickets::Function>().await
}

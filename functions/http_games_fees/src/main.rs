//! Lambda entry point of `http_games_fees`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_games_fees::Function>().await
}

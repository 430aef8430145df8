//! Lambda entry point of `http_games_rewards`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_games_rewards::Function>().await
}

//! Lambda entry point of `ws_signal`: initialise once, then serve WebSocket route events.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    purse::runtime::run_ws::<ws_signal::Function>().await
}

//! Lambda entry point of `ws_connect`: initialise once, then serve WebSocket route events.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    purse::runtime::run_ws::<ws_connect::Function>().await
}

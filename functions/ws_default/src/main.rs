//! Lambda entry point of `ws_default`: initialise once, then serve WebSocket route events.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    purse::runtime::run_ws::<ws_default::Function>().await
}

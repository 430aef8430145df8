//! Lambda entry point of `http_admin_queues`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_admin_queues::Function>().await
}

//! Lambda entry point of `http_admin_adjustments_list`: initialise once, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<http_admin_adjustments_list::Function>().await
}

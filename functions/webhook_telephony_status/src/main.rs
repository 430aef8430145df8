//! Lambda entry point of `webhook_telephony_status`: initialise once, then serve requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    purse::runtime::run_http::<webhook_telephony_status::Function>().await
}

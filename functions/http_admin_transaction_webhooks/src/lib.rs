//! `GET /v1/admin/transactions/{id}/webhooks`: every webhook delivery logged for a transaction,
//! verified or not, with its processing outcome. Administrators only.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::domain::ids::TransactionId;
use purse::store::{webhooks, Table};
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_admin_transaction_webhooks` Lambda function.
pub struct Function {
    table: Table,
}

#[derive(serde::Serialize)]
struct Listing {
    transaction_id: String,
    deliveries: Vec<webhooks::DeliveryView>,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Admin;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, _ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let id = TransactionId::parse(&http::path_param(&req, "id")?)
            .map_err(|_| ApiError::not_found("no such transaction"))?;
        let deliveries = webhooks::for_transaction(&self.table, &id).await?;
        http::json(StatusCode::OK, &Listing { transaction_id: id.to_string(), deliveries })
    }
}

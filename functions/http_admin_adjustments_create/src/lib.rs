//! `POST /v1/admin/adjustments`: an administrator credits or debits a user's wallet by hand,
//! with a reason, against the `adjustments` system account (see [`purse::service::admin`]).
//! Administrators only; the movement records the administrator's id and the reason.
//!
//! Requires an `Idempotency-Key`: the movement's id derives from it, so a retry gets the first
//! answer, never a second adjustment.

use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::domain::ids::TransactionId;
use purse::idempotency::{self, Idempotency};
use purse::service::admin;
use purse::store::Table;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_admin_adjustments_create` Lambda function.
pub struct Function {
    table: Table,
    idempotency: Idempotency,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Admin;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        let table = Table::from_env(&ctx.env, &ctx.aws)?;
        let idempotency = Idempotency::new(table.clone());
        Ok(Self { table, idempotency })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let by = ctx.caller()?.user_id.clone();
        let scope = format!("{by}:POST /v1/admin/adjustments");
        self.idempotency
            .run(&scope, &req, || async {
                let input = http::json_body(&req)?;
                let id = TransactionId::derived_from(&idempotency::operation_key(&scope, &req)?);
                let view = admin::adjust(&self.table, &by, id, input).await?;
                http::json(admin::CREATED, &view)
            })
            .await
    }
}

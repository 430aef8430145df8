//! `POST /v1/ws-tickets`: a one-time ticket, valid for a minute, to open the WebSocket with.
//! Browsers cannot set headers on a WebSocket and a long-lived token in a URL ends up in logs,
//! so the access token buys a short-lived, single-use ticket that `$connect` redeems.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::service::signaling::Tickets;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The `http_ws_tickets` Lambda function.
pub struct Function {
    tickets: Tickets,
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::User;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { tickets: Tickets::from_env(&ctx.env, &ctx.aws)? })
    }

    async fn handle(&self, ctx: &RequestCtx, req: Request) -> Result<Response<Body>, ApiError> {
        let _ = req;
        let ticket = self.tickets.issue(&ctx.caller()?.user_id).await?;
        http::json(StatusCode::CREATED, &ticket)
    }
}

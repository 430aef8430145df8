//! `$connect`: redeems the one-time ticket in the URL and records the connection under its user; a missing, used or expired ticket refuses the handshake (401).

use purse::config::InitError;
use purse::runtime::{InitContext, WsFunction, WsRequest};
use purse::service::signaling::Signaling;
use purse::ws::{Pusher, WsError};

/// The `ws_connect` Lambda function (WebSocket route `$connect`).
pub struct Function {
    signaling: Signaling,
}

impl WsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { signaling: Signaling::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, req: &WsRequest) -> Result<(), WsError> {
        self.signaling.connect(req).await
    }

    fn pusher(&self) -> &Pusher {
        self.signaling.pusher()
    }
}

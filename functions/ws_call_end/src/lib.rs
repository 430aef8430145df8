//! `call.end`: either party hangs up; the last partial minute is charged and the rest of the hold released.

use purse::config::InitError;
use purse::runtime::{InitContext, WsFunction, WsRequest};
use purse::service::signaling::Signaling;
use purse::ws::{Pusher, WsError};

/// The `ws_call_end` Lambda function (WebSocket route `call.end`).
pub struct Function {
    signaling: Signaling,
}

impl WsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { signaling: Signaling::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, req: &WsRequest) -> Result<(), WsError> {
        self.signaling.end(req).await
    }

    fn pusher(&self) -> &Pusher {
        self.signaling.pusher()
    }
}

//! `call.reject`: the callee declines a ringing call.

use purse::config::InitError;
use purse::runtime::{InitContext, WsFunction, WsRequest};
use purse::service::signaling::Signaling;
use purse::ws::{Pusher, WsError};

/// The `ws_call_reject` Lambda function (WebSocket route `call.reject`).
pub struct Function {
    signaling: Signaling,
}

impl WsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { signaling: Signaling::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, req: &WsRequest) -> Result<(), WsError> {
        self.signaling.reject(req).await
    }

    fn pusher(&self) -> &Pusher {
        self.signaling.pusher()
    }
}

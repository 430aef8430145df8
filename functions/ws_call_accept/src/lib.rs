//! `call.accept`: the callee answers; the first minute is held on the caller's wallet and billing starts.

use purse::config::InitError;
use purse::runtime::{InitContext, WsFunction, WsRequest};
use purse::service::signaling::Signaling;
use purse::ws::{Pusher, WsError};

/// The `ws_call_accept` Lambda function (WebSocket route `call.accept`).
pub struct Function {
    signaling: Signaling,
}

impl WsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { signaling: Signaling::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, req: &WsRequest) -> Result<(), WsError> {
        self.signaling.accept(req).await
    }

    fn pusher(&self) -> &Pusher {
        self.signaling.pusher()
    }
}

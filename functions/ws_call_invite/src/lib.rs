//! `call.invite`: the caller rings the callee's connections, if the caller can pay the first minute.

use purse::config::InitError;
use purse::runtime::{InitContext, WsFunction, WsRequest};
use purse::service::signaling::Signaling;
use purse::ws::{Pusher, WsError};

/// The `ws_call_invite` Lambda function (WebSocket route `call.invite`).
pub struct Function {
    signaling: Signaling,
}

impl WsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { signaling: Signaling::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, req: &WsRequest) -> Result<(), WsError> {
        self.signaling.invite(req).await
    }

    fn pusher(&self) -> &Pusher {
        self.signaling.pusher()
    }
}

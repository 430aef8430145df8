//! `signal`: relays SDP offers/answers and ICE candidates verbatim between the two parties of a ringing or active call.

use purse::config::InitError;
use purse::runtime::{InitContext, WsFunction, WsRequest};
use purse::service::signaling::Signaling;
use purse::ws::{Pusher, WsError};

/// The `ws_signal` Lambda function (WebSocket route `signal`).
pub struct Function {
    signaling: Signaling,
}

impl WsFunction for Function {
    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self { signaling: Signaling::from_env(&ctx.env, &ctx.aws).await? })
    }

    async fn handle(&self, req: &WsRequest) -> Result<(), WsError> {
        self.signaling.signal(req).await
    }

    fn pusher(&self) -> &Pusher {
        self.signaling.pusher()
    }
}

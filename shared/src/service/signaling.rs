//! Call signaling over the WebSocket API: connecting with a one-time ticket, inviting,
//! answering, declining, hanging up, and relaying WebRTC signals between the two parties.
//!
//! Every action is authorised by the connection it arrives on: the connection's record names
//! its user, written by `$connect` after redeeming a ticket the user got from
//! `POST /v1/ws-tickets` with their access token. A frame about a call the connection's user is
//! not a party to gets an `error` frame (`call_not_found`), exactly as for a call that does not
//! exist. Frames are bounded ([`MAX_CLIENT_FRAME_BYTES`]); signal payloads are relayed verbatim.

use crate::config::{Env, InitError};
use crate::domain::ids::{CallId, UserId};
use crate::runtime::WsRequest;
use crate::service::calls::{CallError, CallView, Calls};
use crate::store::calls::{self as store, Call, CallStatus};
use crate::store::{now_epoch, now_rfc3339, StoreError};
use crate::ws::{Pusher, WsError, MAX_CLIENT_FRAME_BYTES};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// The largest `data` of a `signal` frame, serialized (an SDP offer is a few KB).
pub const MAX_SIGNAL_BYTES: usize = 12 * 1024;
/// How long a connection ticket is valid.
pub const TICKET_SECONDS: i64 = 60;

impl From<CallError> for WsError {
    fn from(e: CallError) -> Self {
        let (status, code) = e.code();
        match e {
            CallError::Store(s) => WsError::from(s),
            other => WsError::new(status, code, other.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct Invite {
    callee_id: String,
}

#[derive(Deserialize)]
struct OnCall {
    call_id: String,
}

#[derive(Deserialize)]
struct Signal {
    call_id: String,
    data: Value,
}

/// The WebSocket routes' use cases.
pub struct Signaling {
    calls: Calls,
    pusher: Pusher,
}

impl Signaling {
    /// Builds the service from the function's environment (`PURSE_WS_CALLBACK_URL` is required).
    ///
    /// # Errors
    /// A missing or invalid setting.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        // One Management API client, the one `Calls` built for its own pushes.
        let calls = Calls::from_env(env, aws)?;
        let pusher = calls.pusher().cloned().ok_or_else(|| InitError::MissingEnv("PURSE_WS_CALLBACK_URL".into()))?;
        Ok(Self { calls, pusher })
    }

    /// The push client.
    pub fn pusher(&self) -> &Pusher {
        &self.pusher
    }

    fn parse<T: DeserializeOwned>(req: &WsRequest) -> Result<T, WsError> {
        let body = req.body.as_deref().unwrap_or("");
        if body.len() > MAX_CLIENT_FRAME_BYTES {
            return Err(WsError::new(
                413,
                "message_too_large",
                format!("a frame may be at most {MAX_CLIENT_FRAME_BYTES} bytes"),
            ));
        }
        serde_json::from_str(body)
            .map_err(|e| WsError::new(400, "invalid_message", format!("the frame does not fit its action: {e}")))
    }

    async fn user_of(&self, req: &WsRequest) -> Result<UserId, WsError> {
        store::connection_user(&self.calls.table, &req.connection_id)
            .await?
            .ok_or_else(|| WsError::new(401, "connection_unknown", "this connection is not signed in; connect again"))
    }

    fn call_id(text: &str) -> Result<CallId, WsError> {
        CallId::parse(text).map_err(|_| WsError::new(404, "call_not_found", "no such call").for_call(text))
    }

    async fn send(&self, connection: &str, frame: Value) -> bool {
        self.calls.push(connection, &frame).await
    }

    /// `$connect`: redeems the ticket (`?ticket=`) and records the connection under its user.
    ///
    /// # Errors
    /// 401 `ticket_required` / `invalid_ticket` (refuses the handshake).
    pub async fn connect(&self, req: &WsRequest) -> Result<(), WsError> {
        let ticket =
            req.query.get("ticket").filter(|t| !t.is_empty() && t.len() <= 128).ok_or_else(|| {
                WsError::new(401, "ticket_required", "connect with ?ticket= from POST /v1/ws-tickets")
            })?;
        let user = store::redeem_ticket(&self.calls.table, ticket, &req.connection_id)
            .await?
            .ok_or_else(|| WsError::new(401, "invalid_ticket", "the ticket is unknown, used or expired"))?;
        store::put_connection(&self.calls.table, &req.connection_id, &user, &now_rfc3339()).await?;
        tracing::info!(user_id = %user, "connected");
        Ok(())
    }

    /// `$disconnect`: forgets the connection and ends the calls it carried (`disconnected`).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn disconnect(&self, req: &WsRequest) -> Result<(), WsError> {
        // Read before deleting: a delete retried after a lost answer finds nothing to return.
        let Some(user) = store::connection_user(&self.calls.table, &req.connection_id).await? else { return Ok(()) };
        store::delete_connection(&self.calls.table, &req.connection_id).await?;
        let (ids, _) = store::calls_of(&self.calls.table, &user, 10, None).await?;
        for id in ids {
            let Some(call) = store::get_call(&self.calls.table, &id).await? else { continue };
            let bound = call.caller_connection.as_deref() == Some(req.connection_id.as_str())
                || call.callee_connection.as_deref() == Some(req.connection_id.as_str());
            if bound && call.status != CallStatus::Ended {
                let (ended, changed) = self.calls.finish_from(&id, "disconnected", Some(call.status)).await?;
                if changed {
                    self.calls.announce(&ended).await;
                }
            }
        }
        tracing::info!(user_id = %user, "disconnected");
        Ok(())
    }

    /// `$default`: a frame with no known action.
    ///
    /// # Errors
    /// Always: 400 `unknown_action`.
    pub async fn unknown(&self, req: &WsRequest) -> Result<(), WsError> {
        let _ = req;
        Err(WsError::new(
            400,
            "unknown_action",
            "action must be one of call.invite, call.accept, call.reject, call.end, signal, ping",
        ))
    }

    /// `call.invite`: rings the callee on every connection they have.
    ///
    /// # Errors
    /// `invalid_message`, `callee_not_found`, `cannot_call_self`, `insufficient_funds`,
    /// `wallet_restricted`.
    pub async fn invite(&self, req: &WsRequest) -> Result<(), WsError> {
        let input: Invite = Self::parse(req)?;
        let caller = self.user_of(req).await?;
        let callee = UserId::parse(&input.callee_id)
            .map_err(|_| WsError::new(404, "callee_not_found", "no such user to call"))?;
        let call = self.calls.place(&caller, &callee, "app", Some(&req.connection_id), None).await?;
        let price = crate::money::format(call.price_per_minute, crate::money::Currency::Coin);
        self.send(
            &req.connection_id,
            json!({
                "type": "call.ringing",
                "call_id": call.id,
                "callee_id": callee,
                "price_per_minute": price,
                "currency": "COIN",
                "billing_period_seconds": call.period_seconds,
                "ring_seconds": self.calls.settings.ring_seconds,
            }),
        )
        .await;
        let mut rang = 0;
        for connection in store::connections_of(&self.calls.table, &callee).await? {
            let frame = json!({
                "type": "call.incoming",
                "call_id": call.id,
                "caller_id": caller,
                "price_per_minute": price,
                "currency": "COIN",
                "ring_seconds": self.calls.settings.ring_seconds,
            });
            if self.send(&connection, frame).await {
                rang += 1;
            }
        }
        if rang == 0 {
            let (ended, changed) = self.calls.finish_from(&call.id, "unavailable", Some(CallStatus::Ringing)).await?;
            if changed {
                self.calls.announce(&ended).await;
            }
        }
        Ok(())
    }

    fn started(call: &Call) -> Value {
        let view = CallView::of(call, &call.caller);
        json!({
            "type": "call.started",
            "call_id": call.id,
            "caller_id": call.caller,
            "callee_id": call.callee,
            "price_per_minute": view.price_per_minute,
            "currency": view.currency,
            "billing_period_seconds": call.period_seconds,
            "started_at": view.started_at,
        })
    }

    /// `call.accept`: the callee answers; the first minute is held and both are told.
    ///
    /// # Errors
    /// `call_not_found`, `not_callee`, `call_not_ringing`, `insufficient_funds` (the call
    /// ended; both were told).
    pub async fn accept(&self, req: &WsRequest) -> Result<(), WsError> {
        let input: OnCall = Self::parse(req)?;
        let user = self.user_of(req).await?;
        let id = Self::call_id(&input.call_id)?;
        let call = self
            .calls
            .accept(&user, id.as_str(), Some(&req.connection_id))
            .await
            .map_err(|e| WsError::from(e).for_call(id.as_str()))?;
        let frame = Self::started(&call);
        for connection in [&call.caller_connection, &call.callee_connection].into_iter().flatten() {
            self.send(connection, frame.clone()).await;
        }
        // The callee's other devices stop ringing.
        let elsewhere = json!({"type": "call.ended", "call_id": call.id, "reason": "answered_elsewhere"});
        for connection in store::connections_of(&self.calls.table, &user).await.unwrap_or_default() {
            if Some(&connection) != call.callee_connection.as_ref() {
                self.send(&connection, elsewhere.clone()).await;
            }
        }
        Ok(())
    }

    /// `call.reject`: the callee declines a ringing call.
    ///
    /// # Errors
    /// `call_not_found`, `not_callee`, `call_not_ringing`.
    pub async fn reject(&self, req: &WsRequest) -> Result<(), WsError> {
        let input: OnCall = Self::parse(req)?;
        let user = self.user_of(req).await?;
        let id = Self::call_id(&input.call_id)?;
        let call = self.calls.get_for(&user, id.as_str()).await.map_err(|e| WsError::from(e).for_call(id.as_str()))?;
        if call.callee != user {
            return Err(WsError::from(CallError::NotCallee).for_call(id.as_str()));
        }
        if call.status == CallStatus::Ended && call.end_reason.as_deref() == Some("rejected") {
            // A repeat (its first answer lost): the same outcome, told again.
            self.calls.announce(&call).await;
            return Ok(());
        }
        if call.status != CallStatus::Ringing {
            return Err(WsError::from(CallError::NotRinging).for_call(id.as_str()));
        }
        let (ended, changed) = self.calls.finish_from(&id, "rejected", Some(CallStatus::Ringing)).await?;
        if !changed && ended.end_reason.as_deref() != Some("rejected") {
            return Err(WsError::from(CallError::NotRinging).for_call(id.as_str()));
        }
        if changed {
            self.calls.announce(&ended).await;
        }
        Ok(())
    }

    /// `call.end`: either party hangs up (a caller ending a ringing call cancels it).
    ///
    /// # Errors
    /// `call_not_found`, `call_ended`.
    pub async fn end(&self, req: &WsRequest) -> Result<(), WsError> {
        let input: OnCall = Self::parse(req)?;
        let user = self.user_of(req).await?;
        let id = Self::call_id(&input.call_id)?;
        let call = self.calls.get_for(&user, id.as_str()).await.map_err(|e| WsError::from(e).for_call(id.as_str()))?;
        let reason = match (call.status, call.caller == user) {
            // Already over (a repeat whose first answer was lost, or the other party was first):
            // tell both how it ended, again.
            (CallStatus::Ended, _) => {
                self.calls.announce(&call).await;
                return Ok(());
            }
            (CallStatus::Ringing, true) => "canceled",
            (CallStatus::Ringing, false) => "rejected",
            (CallStatus::Active, _) => "hangup",
        };
        let (mut ended, mut changed) = self.calls.end(&user, &id, reason).await?;
        if !changed && call.status == CallStatus::Ringing && ended.status == CallStatus::Active {
            // Answered while the hang-up was on its way: it still means "end it".
            (ended, changed) = self.calls.end(&user, &id, "hangup").await?;
        }
        if changed {
            self.calls.announce(&ended).await;
        }
        Ok(())
    }

    /// `signal`: relays `data` verbatim to the other party of a ringing or active call.
    ///
    /// # Errors
    /// `invalid_message`, `signal_too_large`, `call_not_found` (also for someone else's call),
    /// `call_ended`.
    pub async fn signal(&self, req: &WsRequest) -> Result<(), WsError> {
        let input: Signal = Self::parse(req)?;
        if !input.data.is_object() {
            return Err(WsError::new(400, "invalid_message", "data must be an object (an SDP or an ICE candidate)")
                .for_call(input.call_id));
        }
        if serde_json::to_vec(&input.data).map_or(0, |d| d.len()) > MAX_SIGNAL_BYTES {
            return Err(WsError::new(413, "signal_too_large", format!("data may be at most {MAX_SIGNAL_BYTES} bytes"))
                .for_call(input.call_id));
        }
        let user = self.user_of(req).await?;
        let id = Self::call_id(&input.call_id)?;
        let call = self.calls.get_for(&user, id.as_str()).await.map_err(|e| WsError::from(e).for_call(id.as_str()))?;
        let from_caller = call.caller == user;
        let targets: Vec<String> = match (call.status, from_caller) {
            (CallStatus::Ended, _) => return Err(WsError::from(CallError::Ended).for_call(id.as_str())),
            (CallStatus::Active, true) => call.callee_connection.iter().cloned().collect(),
            (CallStatus::Ringing, true) => store::connections_of(&self.calls.table, &call.callee).await?,
            (_, false) => call.caller_connection.iter().cloned().collect(),
        };
        // Only the connection that placed or answered the call speaks for its side.
        let own = if from_caller { &call.caller_connection } else { &call.callee_connection };
        if own.as_deref().is_some_and(|c| c != req.connection_id) {
            return Err(
                WsError::new(409, "other_device", "this call is on another of your devices").for_call(id.as_str())
            );
        }
        let frame = json!({"type": "signal", "call_id": call.id, "from": user, "data": input.data});
        for connection in targets {
            self.send(&connection, frame.clone()).await;
        }
        Ok(())
    }

    /// `ping`: answers `pong` (a client's keep-alive: API Gateway closes a connection idle for
    /// 10 minutes).
    ///
    /// # Errors
    /// `connection_unknown` when the connection's record is gone.
    pub async fn ping(&self, req: &WsRequest) -> Result<(), WsError> {
        self.user_of(req).await?;
        self.send(&req.connection_id, json!({"type": "pong"})).await;
        Ok(())
    }
}

/// `POST /v1/ws-tickets`: a one-time ticket to open the WebSocket with.
pub struct Tickets {
    table: crate::store::Table,
    url: String,
}

/// The answer to `POST /v1/ws-tickets`.
#[derive(Debug, serde::Serialize)]
pub struct TicketView {
    pub ticket: String,
    /// The WebSocket URL with the ticket in its query string.
    pub url: String,
    pub expires_at: String,
}

impl Tickets {
    /// `PURSE_TABLE` and `PURSE_WS_URL` (`wss://…/<stage>`).
    ///
    /// # Errors
    /// A missing setting.
    pub fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        Ok(Self { table: crate::store::Table::from_env(env, aws)?, url: env.require("PURSE_WS_URL")? })
    }

    /// Issues a ticket for `user`, valid for [`TICKET_SECONDS`]; only its SHA-256 is stored.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn issue(&self, user: &UserId) -> Result<TicketView, StoreError> {
        use base64::Engine;
        use rand::RngCore;
        let mut bytes = [0_u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let expires = now_epoch() + TICKET_SECONDS;
        store::put_ticket(&self.table, &ticket, user, expires).await?;
        let separator = if self.url.contains('?') { '&' } else { '?' };
        Ok(TicketView {
            url: format!("{}{separator}ticket={ticket}", self.url),
            ticket,
            expires_at: chrono::DateTime::from_timestamp(expires, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
        })
    }
}

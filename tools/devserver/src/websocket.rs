//! The WebSocket side: a local API Gateway WebSocket API in front of the WebSocket route
//! functions, and the Management API (`@connections`) they push frames through. One port
//! (`PURSE_WS_PORT`, 3001 by default) serves both, as one API Gateway domain does.
//!
//! - **Handshake** (`GET /?ticket=...`, any path but `@connections`): the connection gets an id
//!   in API Gateway's shape and the `$connect` function is called with the query string and
//!   headers. Only a 200 accepts the upgrade; any other status is answered as the HTTP status of
//!   the refused handshake (with the function's body). Without a `$connect` route the handshake
//!   is accepted, as in API Gateway.
//! - **Messages**: each text frame goes to the route its `action` names
//!   (`$request.body.action`), else to `$default`; with no `$default` either, the client gets
//!   API Gateway's `{"message": "Forbidden", ...}` frame. A message over
//!   [`wsapi::MAX_MESSAGE_BYTES`] (128 KiB) closes the connection with 1009, and a binary frame
//!   with 1003, as API Gateway does. Ping and pong frames are answered by the protocol layer and
//!   reach no function.
//! - **Order**: one connection's events (`$connect`, its messages, `$disconnect`) are handled
//!   one at a time, in order; different connections concurrently. API Gateway does not promise
//!   the order, but tests are deterministic with it.
//! - **`$disconnect`**: after the client closes, the socket drops, [`Limits::idle_timeout`]
//!   (10 min) or [`Limits::max_duration`] (2 h) pass, a `DELETE @connections/{id}`, or the
//!   server stops. The connection is forgotten first (pushes to it answer `GoneException`), the
//!   messages already received are handled, then `$disconnect` is called with the close code
//!   and reason.
//! - **`@connections`**: `POST /@connections/{id}` sends the body to the connection as a text
//!   frame (200); `DELETE` closes it (204); `GET` describes it (`connectedAt`, `lastActiveAt`,
//!   `identity.sourceIp`, `identity.userAgent`). An unknown id answers 410 with
//!   `x-amzn-errortype: GoneException`, which the AWS SDK reports as `GoneException`. The same
//!   paths are served under a stage segment (`/local/@connections/{id}`), as in AWS. Requests
//!   are not authenticated (the SDK's signature is ignored).
//!
//! One log line per event names the route, connection, status and duration; never a query
//! string (the ticket) or a frame's text.

use crate::stopped;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use purse::runtime::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest, DynWsFunction};
use purse_local::apigw;
use purse_local::router::Router;
use purse_local::wsapi::{self, Connection};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// The response type the endpoint writes.
pub type HyperResponse = hyper::Response<Full<Bytes>>;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// API Gateway's limits on a connection; [`Limits::default`] is AWS's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message a client may send, and the largest push.
    pub max_message_bytes: usize,
    /// A connection with no data frame either way for this long is closed (1001).
    pub idle_timeout: Duration,
    /// Every connection is closed (1001) after this long.
    pub max_duration: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: wsapi::MAX_MESSAGE_BYTES,
            idle_timeout: wsapi::IDLE_TIMEOUT,
            max_duration: wsapi::MAX_CONNECTION_DURATION,
        }
    }
}

/// What the endpoint can tell a connection's socket task.
#[derive(Debug)]
enum Outbound {
    /// A frame pushed through `POST @connections/{id}`.
    Frame(Message),
    /// `DELETE @connections/{id}`.
    Close,
}

/// An open connection.
struct Open {
    conn: Connection,
    last_active_ms: i64,
    tx: mpsc::UnboundedSender<Outbound>,
}

/// The local WebSocket API: the router's WebSocket routes and the open connections.
pub struct WsEndpoint {
    router: Arc<Router>,
    stage: String,
    limits: Limits,
    connections: Mutex<HashMap<String, Open>>,
}

impl WsEndpoint {
    /// An endpoint serving `router`'s WebSocket routes, with `stage` as the events'
    /// `requestContext.stage` and API Gateway's limits.
    pub fn new(router: Arc<Router>, stage: &str) -> Self {
        Self { router, stage: stage.to_owned(), limits: Limits::default(), connections: Mutex::new(HashMap::new()) }
    }

    /// The same endpoint with other limits (tests shorten the timeouts).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The ids of the open connections.
    pub fn connection_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.open().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `data` to a connection as `POST @connections/{id}` does: `false` when there is no
    /// such connection (`GoneException`).
    pub fn push(&self, connection_id: &str, data: Bytes) -> bool {
        let mut open = self.open();
        let Some(c) = open.get_mut(connection_id) else { return false };
        let frame = match String::from_utf8(data.to_vec()) {
            Ok(text) => Message::text(text),
            Err(_) => Message::Binary(data),
        };
        c.last_active_ms = now_ms();
        c.tx.send(Outbound::Frame(frame)).is_ok()
    }

    /// Closes a connection as `DELETE @connections/{id}` does: `false` when there is none.
    pub fn close(&self, connection_id: &str) -> bool {
        self.open().get(connection_id).is_some_and(|c| c.tx.send(Outbound::Close).is_ok())
    }

    fn describe(&self, connection_id: &str) -> Option<serde_json::Value> {
        let open = self.open();
        let c = open.get(connection_id)?;
        Some(serde_json::json!({
            "connectedAt": iso(c.conn.connected_at_ms),
            "lastActiveAt": iso(c.last_active_ms),
            "identity": {"sourceIp": c.conn.source_ip, "userAgent": c.conn.user_agent},
        }))
    }

    fn touch(&self, connection_id: &str) {
        if let Some(c) = self.open().get_mut(connection_id) {
            c.last_active_ms = now_ms();
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Answers one HTTP request on the WebSocket port: `@connections` or a handshake.
async fn handle(
    endpoint: Arc<WsEndpoint>,
    mut req: hyper::Request<Incoming>,
    peer: SocketAddr,
    sessions: Sessions,
) -> HyperResponse {
    let started = Instant::now();
    let method = req.method().clone();
    if let Some(id) = connection_path(req.uri().path()) {
        let resp = connections_api(&endpoint, req, &id).await;
        tracing::info!("{method} @connections {} {}ms", resp.status().as_u16(), started.elapsed().as_millis());
        return resp;
    }
    let is_upgrade = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if method != http::Method::GET || !is_upgrade {
        return plain(426, "this is the WebSocket API: open a WebSocket (ws://...) or use /@connections/{id}");
    }
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return plain(400, "Sec-WebSocket-Key is missing");
    };
    if req.headers().get("sec-websocket-version").and_then(|v| v.to_str().ok()) != Some("13") {
        return plain(400, "only WebSocket version 13 is supported");
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let conn = Connection {
        connection_id: wsapi::new_connection_id(),
        connected_at_ms: now_ms(),
        source_ip: peer.ip().to_string(),
        user_agent: header("user-agent"),
        domain_name: header("host"),
        stage: endpoint.stage.clone(),
        api_id: "local".into(),
    };
    let query = req.uri().query().unwrap_or("").to_owned();
    let request_id = apigw::new_request_id();
    let answer = match endpoint.router.ws_route(wsapi::CONNECT) {
        Some(route) => match wsapi::connect_event(&conn, &query, &headers, &request_id) {
            Ok(event) => invoke(route.handler.clone(), event).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the $connect event");
                status_only(500)
            }
        },
        None => status_only(200),
    };
    let status = u16::try_from(answer.status_code).unwrap_or(500);
    tracing::info!("WS $connect {} {status} {}ms", conn.connection_id, started.elapsed().as_millis());
    if status != 200 {
        let body = match answer.body {
            Some(lambda_http::Body::Text(text)) => Bytes::from(text),
            Some(lambda_http::Body::Binary(bin)) => Bytes::from(bin),
            _ => Bytes::new(),
        };
        return hyper::Response::builder()
            .status(status)
            .body(Full::new(body))
            .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())));
    }

    let (tx, rx) = mpsc::unbounded_channel();
    endpoint.open().insert(conn.connection_id.clone(), Open { conn: conn.clone(), last_active_ms: now_ms(), tx });
    let mut response = hyper::Response::builder()
        .status(http::StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header("sec-websocket-accept", tungstenite::handshake::derive_accept_key(&key));
    // Such as Sec-WebSocket-Protocol: the $connect function chooses the subprotocol.
    for (name, value) in &answer.headers {
        if !matches!(name.as_str(), "upgrade" | "connection" | "sec-websocket-accept" | "content-length") {
            response = response.header(name, value);
        }
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let limits = endpoint.limits;
    let stop = sessions.stop.clone();
    sessions.spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(limits.max_message_bytes))
                    .max_frame_size(Some(limits.max_message_bytes));
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                session(endpoint, conn, ws, rx, stop).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "the upgrade failed");
                endpoint.open().remove(&conn.connection_id);
                disconnect(&endpoint, &conn, 1006, "Connection closed abnormally").await;
            }
        }
    });
    response.body(Full::new(Bytes::new())).unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

/// The id of `/@connections/{id}` or `/{stage}/@connections/{id}`, percent-decoded.
pub fn connection_path(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id = match parts.as_slice() {
        ["@connections", id] | [_, "@connections", id] => *id,
        _ => return None,
    };
    let id = percent_decode_path(id);
    (!id.is_empty()).then_some(id)
}

/// Decodes `%XX` escapes (a path segment: `+` stays `+`).
fn percent_decode_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = s.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Management API.
async fn connections_api(endpoint: &WsEndpoint, req: hyper::Request<Incoming>, id: &str) -> HyperResponse {
    let gone = || aws_error(410, "GoneException", &format!("connection {id} is gone"));
    match *req.method() {
        http::Method::POST => {
            let limit = endpoint.limits.max_message_bytes;
            let too_large = || aws_error(413, "PayloadTooLargeException", &format!("data over {limit} bytes"));
            let body = match Limited::new(req.into_body(), limit).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
                Err(e) => return aws_error(400, "BadRequestException", &format!("the body could not be read: {e}")),
            };
            if endpoint.push(id, body) {
                status_response(200, Bytes::new())
            } else {
                gone()
            }
        }
        http::Method::DELETE => {
            if endpoint.close(id) {
                status_response(204, Bytes::new())
            } else {
                gone()
            }
        }
        http::Method::GET => match endpoint.describe(id) {
            Some(info) => {
                let mut resp = status_response(200, Bytes::from(info.to_string()));
                resp.headers_mut()
                    .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                resp
            }
            None => gone(),
        },
        _ => aws_error(405, "MethodNotAllowedException", "@connections accepts POST, GET and DELETE"),
    }
}

/// An error in the Management API's shape (restJson1): the AWS SDK reads the error type from
/// `x-amzn-errortype` and the message from the body.
fn aws_error(status: u16, error_type: &'static str, message: &str) -> HyperResponse {
    let mut resp = status_response(status, Bytes::from(serde_json::json!({"message": message}).to_string()));
    let headers = resp.headers_mut();
    headers.insert("x-amzn-errortype", http::HeaderValue::from_static(error_type));
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    if let Ok(id) = http::HeaderValue::from_str(&apigw::new_request_id()) {
        headers.insert("x-amzn-requestid", id);
    }
    resp
}

fn status_response(status: u16, body: Bytes) -> HyperResponse {
    let mut resp = hyper::Response::new(Full::new(body));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp
}

fn plain(status: u16, message: &str) -> HyperResponse {
    let mut resp = status_response(status, Bytes::from(format!("{message}\n")));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn status_only(status: i64) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r
}

/// Calls a function with one event; a panic answers 500 as a failed invocation does.
async fn invoke(handler: Arc<dyn DynWsFunction>, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    match tokio::spawn(async move { handler.call_dyn(event).await }).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the function panicked");
            status_only(500)
        }
    }
}

/// One connection's socket: frames in become events for [`process`], pushes go out, limits and
/// closes end it; then the connection is forgotten and its events finish with `$disconnect`.
async fn session<S>(
    endpoint: Arc<WsEndpoint>,
    conn: Connection,
    mut ws: WebSocketStream<S>,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (events_tx, events_rx) = mpsc::unbounded_channel::<String>();
    let worker = tokio::spawn(messages(endpoint.clone(), conn.clone(), events_rx));
    let limits = endpoint.limits;
    let idle = tokio::time::sleep(limits.idle_timeout);
    let lifetime = tokio::time::sleep(limits.max_duration);
    tokio::pin!(idle, lifetime);
    let id = conn.connection_id.clone();
    let (code, reason): (u16, String) = loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if text.len() > limits.max_message_bytes {
                        break close(&mut ws, 1009, "Message too big").await;
                    }
                    endpoint.touch(&id);
                    idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    let _ = events_tx.send(text.as_str().to_owned());
                }
                Some(Ok(Message::Binary(_))) => break close(&mut ws, 1003, "Binary frames are not supported").await,
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite has queued the reply; let it go out.
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    break match frame {
                        Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
                        None => (1005, String::new()),
                    };
                }
                Some(Ok(_)) => {} // ping and pong: answered by tungstenite
                Some(Err(tungstenite::Error::Capacity(_))) => break close(&mut ws, 1009, "Message too big").await,
                Some(Err(_)) | None => break (1006, "Connection closed abnormally".to_owned()),
            },
            out = outbound.recv() => match out {
                Some(Outbound::Frame(frame)) => {
                    idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    if ws.send(frame).await.is_err() {
                        break (1006, "Connection closed abnormally".to_owned());
                    }
                }
                Some(Outbound::Close) | None => break close(&mut ws, 1000, "").await,
            },
            () = &mut idle => break close(&mut ws, 1001, "Going away").await,
            () = &mut lifetime => break close(&mut ws, 1001, "Going away").await,
            () = stopped(&mut stop) => break close(&mut ws, 1001, "Going away").await,
        }
    };
    // Forgotten first: from now on a push to it answers GoneException, as in AWS.
    endpoint.open().remove(&id);
    drop(events_tx);
    let _ = worker.await;
    disconnect(&endpoint, &conn, code, &reason).await;
}

/// Sends a close frame (best effort) and reports the code and reason for `$disconnect`.
async fn close<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &str) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
    (code, reason.to_owned())
}

/// Handles a connection's messages one at a time, in order, until the socket side is done and
/// every message received has been handled.
async fn messages(endpoint: Arc<WsEndpoint>, conn: Connection, mut events: mpsc::UnboundedReceiver<String>) {
    while let Some(body) = events.recv().await {
        message(&endpoint, &conn, &body).await;
    }
}

/// Calls `$disconnect` (when the API has that route).
async fn disconnect(endpoint: &WsEndpoint, conn: &Connection, code: u16, reason: &str) {
    let Some(route) = endpoint.router.ws_route(wsapi::DISCONNECT) else { return };
    let started = Instant::now();
    let request_id = apigw::new_request_id();
    match wsapi::disconnect_event(conn, code, reason, &request_id) {
        Ok(event) => {
            let answer = invoke(route.handler.clone(), event).await;
            tracing::info!(
                "WS $disconnect {} {} ({code}) {}ms",
                conn.connection_id,
                answer.status_code,
                started.elapsed().as_millis()
            );
        }
        Err(e) => tracing::error!(error = %e, "cannot build the $disconnect event"),
    }
}

/// Routes and handles one message.
async fn message(endpoint: &WsEndpoint, conn: &Connection, body: &str) {
    let started = Instant::now();
    let request_id = apigw::new_request_id();
    let Some(route) = endpoint.router.select_ws_route(body) else {
        // API Gateway's answer when no route matches and there is no $default.
        let frame = serde_json::json!({
            "message": "Forbidden", "connectionId": conn.connection_id, "requestId": request_id,
        });
        endpoint.push(&conn.connection_id, Bytes::from(frame.to_string()));
        tracing::info!("WS (no route) {} 403", conn.connection_id);
        return;
    };
    match wsapi::message_event(conn, &route.route_key, body, &request_id) {
        Ok(event) => {
            let answer = invoke(route.handler.clone(), event).await;
            tracing::info!(
                "WS {} {} {} {}ms",
                route.route_key,
                conn.connection_id,
                answer.status_code,
                started.elapsed().as_millis()
            );
        }
        Err(e) => tracing::error!(error = %e, "cannot build the message event"),
    }
}

/// Where the socket tasks of upgraded connections run, and their stop signal.
#[derive(Clone)]
struct Sessions {
    tasks: Arc<Mutex<JoinSet<()>>>,
    stop: watch::Receiver<bool>,
}

impl Sessions {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }
}

/// Serves the WebSocket API and `@connections` on `listener` until `shutdown` completes; then
/// stops accepting, closes every connection with 1001 (each gets its `$disconnect`) and waits
/// at most `grace` for them and for requests in flight.
///
/// Returns how many tasks were still running when `grace` ran out and were cut.
pub async fn serve(
    listener: TcpListener,
    endpoint: Arc<WsEndpoint>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> usize {
    let (stop_tx, stop_rx) = watch::channel(false);
    let sessions = Sessions { tasks: Arc::new(Mutex::new(JoinSet::new())), stop: stop_rx.clone() };
    let mut connections = crate::gateway::accept_until(listener, shutdown, |stream, peer| {
        http_connection(stream, peer, endpoint.clone(), sessions.clone())
    })
    .await;
    let _ = stop_tx.send(true);
    let mut tasks = std::mem::take(&mut *sessions.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let drained = tokio::time::timeout(grace, async {
        while tasks.join_next().await.is_some() {}
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_ok() {
        0
    } else {
        let cut = tasks.len() + connections.len();
        tasks.abort_all();
        connections.abort_all();
        cut
    }
}

async fn http_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    endpoint: Arc<WsEndpoint>,
    sessions: Sessions,
) {
    let mut stop = sessions.stop.clone();
    let service = hyper::service::service_fn(move |req| {
        let (endpoint, sessions) = (endpoint.clone(), sessions.clone());
        async move { Ok::<_, Infallible>(handle(endpoint, req, peer, sessions).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_paths_are_found_with_or_without_a_stage_and_decoded() {
        assert_eq!(connection_path("/@connections/L0SM9cOFvHcCIhw%3D").as_deref(), Some("L0SM9cOFvHcCIhw="));
        assert_eq!(connection_path("/local/@connections/abc=").as_deref(), Some("abc="));
        assert_eq!(connection_path("/@connections/a+b").as_deref(), Some("a+b"));
        assert_eq!(connection_path("/@connections/"), None);
        assert_eq!(connection_path("/@connections"), None);
        assert_eq!(connection_path("/"), None);
        assert_eq!(connection_path("/a/b/@connections/x"), None);
    }

    #[test]
    fn timestamps_are_iso_8601_with_milliseconds() {
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn the_default_limits_are_api_gateways() {
        let l = Limits::default();
        assert_eq!(l.max_message_bytes, 128 * 1024);
        assert_eq!(l.idle_timeout, Duration::from_secs(600));
        assert_eq!(l.max_duration, Duration::from_secs(7200));
    }
}

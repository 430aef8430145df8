//! The local WebSocket API over real sockets: handshakes decided by `$connect`, frames routed by
//! `$request.body.action`, API Gateway's limits, `$disconnect`, and the `@connections`
//! Management API as the AWS SDK sees it (`purse::ws::Pusher`).
//!
//! Most tests route to a recording function; one runs the real `ws_ping` function against a
//! stack provisioned from `template.yaml`. Needs the emulator:
//! `tools/stack/with-stack.sh cargo test -p purse-devserver`.

use futures::{SinkExt, StreamExt};
use purse::runtime::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest, DynWsFunction, InitContext, WsRequest};
use purse::ws::{Pushed, Pusher};
use purse_devserver::websocket::{self, Limits, WsEndpoint};
use purse_local::router::{Router, WsRoute};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A `$disconnect` as the function saw it: connection id, close code and reason.
type Disconnect = (String, Option<i64>, Option<String>);

/// Remembers every event; accepts a handshake only with `ticket=good`; a `$default` message
/// whose body is a number sleeps that many milliseconds first.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<WsRequest>>,
    disconnects: Mutex<Vec<Disconnect>>,
}

impl Recorder {
    fn routes(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().iter().map(|r| (r.route_key.clone(), r.body.clone().unwrap_or_default())).collect()
    }
}

impl DynWsFunction for Recorder {
    fn call_dyn(
        &self,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Pin<Box<dyn Future<Output = ApiGatewayProxyResponse> + Send + '_>> {
        Box::pin(async move {
            let req = WsRequest::from_event(&event);
            if let Some(ms) = req.body.as_deref().and_then(|b| b.parse::<u64>().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = 200;
            if req.route_key == "$connect" && req.query.get("ticket").map(String::as_str) != Some("good") {
                response.status_code = 401;
            }
            if req.route_key == "$disconnect" {
                let ctx = &event.request_context;
                self.disconnects.lock().unwrap().push((
                    req.connection_id.clone(),
                    ctx.disconnect_status_code,
                    ctx.disconnect_reason.clone(),
                ));
            }
            self.seen.lock().unwrap().push(req);
            response
        })
    }
}

/// A running endpoint.
struct Server {
    addr: String,
    endpoint: Arc<WsEndpoint>,
    aws: aws_config::SdkConfig,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Server {
    async fn start(routes: Vec<WsRoute>, limits: Limits) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, routes, limits).await
    }

    async fn serve(listener: tokio::net::TcpListener, routes: Vec<WsRoute>, limits: Limits) -> Self {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "AWS_ENDPOINT_URL is not set: run with tools/stack/with-stack.sh cargo test -p purse-devserver"
        );
        let addr = listener.local_addr().unwrap().to_string();
        let router = Arc::new(Router { ws_routes: routes, ..Router::default() });
        let endpoint = Arc::new(WsEndpoint::new(router, "local").with_limits(limits));
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(websocket::serve(listener, endpoint.clone(), shutdown, Duration::from_secs(2)));
        Self { addr, endpoint, aws: purse::config::load_aws().await, stop }
    }

    /// A Management API client for this endpoint (`callback` is appended, e.g. a stage).
    fn pusher(&self, callback: &str) -> Pusher {
        let env =
            purse::config::Env::default().with("PURSE_WS_CALLBACK_URL", format!("http://{}{callback}", self.addr));
        Pusher::from_env(&env, &self.aws).unwrap()
    }

    async fn connect(&self, query: &str) -> Result<Client, u16> {
        match tokio_tungstenite::connect_async(format!("ws://{}/{query}", self.addr)).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("handshake failed without a status: {e}"),
        }
    }

    /// The id of the only open connection.
    fn only_connection(&self) -> String {
        let ids = self.endpoint.connection_ids();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids[0].clone()
    }
}

fn recording(recorder: &Arc<Recorder>, keys: &[&str]) -> Vec<WsRoute> {
    keys.iter()
        .map(|k| WsRoute { route_key: (*k).to_owned(), function: format!("Test{k}"), handler: recorder.clone() })
        .collect()
}

const ALL: &[&str] = &["$connect", "$disconnect", "$default"];

/// The next text frame, as JSON.
async fn next_json(ws: &mut Client) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a frame within 5 s");
        match frame {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).expect("JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The close frame the server sends, skipping anything before it.
async fn close_code(ws: &mut Client) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a close within 5 s") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
    None
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_handshake_the_connect_function_refuses_gets_its_http_status() {
    let recorder = Arc::new(Recorder::default());
    let server = Server::start(recording(&recorder, ALL), Limits::default()).await;
    assert_eq!(server.connect("?ticket=bad").await.err(), Some(401));
    assert_eq!(server.connect("").await.err(), Some(401));
    assert!(server.endpoint.connection_ids().is_empty());
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "only the two $connect calls: {seen:?}");
    assert_eq!(seen[0].query["ticket"], "bad");
    assert!(seen[1].query.is_empty());

    let ws = server.connect("?ticket=good").await.expect("accepted");
    let req = recorder.seen.lock().unwrap()[2].clone();
    assert_eq!((req.route_key.as_str(), req.event_type.as_str()), ("$connect", "CONNECT"));
    assert_eq!(server.only_connection(), req.connection_id);
    drop(ws);
}

#[tokio::test]
async fn a_ping_frame_is_answered_pong_by_the_real_functions_through_connections() {
    // The real $connect, $disconnect and ping functions on a stack made from template.yaml, and
    // a ticket issued as POST /v1/ws-tickets issues it; its URL is the local PURSE_WS_URL.
    let aws = purse::config::load_aws().await;
    let template = purse_local::template::Template::project().unwrap();
    let prefix = format!("ws{}-", unique());
    let params = purse_local::provision::local_parameters(&template, "http://purse.test");
    let mut stack = purse_local::provision::provision(&template, &aws, &prefix, params).await.expect("provision");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    stack.serve_ws_at(&format!("http://{addr}"));
    let functions = template.functions().unwrap();
    let spec = |binary: &str| functions.iter().find(|f| f.binary == binary).expect("declared").clone();
    let mut routes = Vec::new();
    for binary in ["ws_connect", "ws_disconnect", "ws_ping"] {
        let f = spec(binary);
        let ctx = InitContext { env: stack.function_env(&f).unwrap(), aws: aws.clone() };
        let Ok(purse_local::registry::Handler::Ws(handler)) = purse_local::registry::init(binary, &ctx).await else {
            panic!("{binary} does not start as a WebSocket function");
        };
        let handler: Arc<dyn DynWsFunction> = Arc::from(handler);
        for route_key in &f.ws_routes {
            routes.push(WsRoute {
                route_key: route_key.clone(),
                function: f.logical_id.clone(),
                handler: handler.clone(),
            });
        }
    }
    let server = Server::serve(listener, routes, Limits::default()).await;
    let tickets_env = stack.function_env(&spec("http_ws_tickets")).unwrap();
    let tickets = purse::service::signaling::Tickets::from_env(&tickets_env, &aws).unwrap();
    let ticket = tickets.issue(&purse::domain::ids::UserId::generate()).await.expect("ticket");
    assert!(ticket.url.starts_with(&format!("ws://{addr}/?ticket=")), "{}", ticket.url);

    let (mut ws, _) = tokio_tungstenite::connect_async(ticket.url.as_str()).await.expect("the ticket opens the socket");
    ws.send(Message::text(json!({"action": "ping"}).to_string())).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));
    assert_eq!(
        tokio_tungstenite::connect_async(ticket.url.as_str()).await.err().map(|e| match e {
            tungstenite::Error::Http(resp) => resp.status().as_u16(),
            other => panic!("{other}"),
        }),
        Some(401),
        "a ticket opens one connection"
    );
    drop(server);
}

#[tokio::test]
async fn an_unknown_action_and_a_frame_that_is_not_json_go_to_default_in_order() {
    let recorder = Arc::new(Recorder::default());
    let server = Server::start(recording(&recorder, ALL), Limits::default()).await;
    let mut ws = server.connect("?ticket=good").await.unwrap();
    // The first message's function takes longest: order holds only if one connection's
    // messages are handled one at a time.
    for body in ["300", r#"{"action":"no.such.route"}"#, "hello", "0"] {
        ws.send(Message::text(body)).await.unwrap();
    }
    eventually("four messages handled", || recorder.routes().len() == 5).await;
    let routes = recorder.routes();
    assert_eq!(
        routes[1..],
        [
            ("$default".to_owned(), "300".to_owned()),
            ("$default".to_owned(), r#"{"action":"no.such.route"}"#.to_owned()),
            ("$default".to_owned(), "hello".to_owned()),
            ("$default".to_owned(), "0".to_owned()),
        ]
    );
    let req = recorder.seen.lock().unwrap()[2].clone();
    assert_eq!(req.event_type, "MESSAGE");
    assert_eq!(req.connection_id, server.only_connection());
}

#[tokio::test]
async fn without_a_default_route_an_unmatched_message_gets_api_gateways_forbidden_frame() {
    let recorder = Arc::new(Recorder::default());
    let server = Server::start(recording(&recorder, &["$connect"]), Limits::default()).await;
    let mut ws = server.connect("?ticket=good").await.unwrap();
    ws.send(Message::text(r#"{"action":"nope"}"#)).await.unwrap();
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["message"], "Forbidden");
    assert_eq!(frame["connectionId"], server.only_connection().as_str());
}

#[tokio::test]
async fn pushes_reach_an_open_connection_and_an_unknown_one_is_gone_for_the_sdk() {
    let recorder = Arc::new(Recorder::default());
    let server = Server::start(recording(&recorder, ALL), Limits::default()).await;
    let mut ws = server.connect("?ticket=good").await.unwrap();
    let id = server.only_connection();

    let pusher = server.pusher("");
    assert_eq!(pusher.send(&id, &json!({"type": "hello"})).await.unwrap(), Pushed::Delivered);
    assert_eq!(next_json(&mut ws).await, json!({"type": "hello"}));
    // The callback URL AWS gives has the stage in its path.
    let staged = server.pusher("/local");
    assert_eq!(staged.send(&id, &json!({"n": 2})).await.unwrap(), Pushed::Delivered);
    assert_eq!(next_json(&mut ws).await, json!({"n": 2}));

    assert_eq!(pusher.send("L0SM9cOFvHcCIhw=", &json!({"type": "hello"})).await.unwrap(), Pushed::Gone);

    let management = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&server.aws)
            .endpoint_url(format!("http://{}", server.addr))
            .build(),
    );
    let info = management.get_connection().connection_id(&id).send().await.expect("connection info");
    assert!(info.connected_at().is_some() && info.last_active_at().is_some());
    assert_eq!(info.identity().and_then(|i| i.source_ip()), Some("127.0.0.1"));
    let unknown = management.get_connection().connection_id("nobody=").send().await.unwrap_err();
    assert!(unknown.into_service_error().is_gone_exception());
}

#[tokio::test]
async fn delete_closes_the_socket_and_fires_disconnect_after_which_the_connection_is_gone() {
    let recorder = Arc::new(Recorder::default());
    let server = Server::start(recording(&recorder, ALL), Limits::default()).await;
    let mut ws = server.connect("?ticket=good").await.unwrap();
    let id = server.only_connection();
    let pusher = server.pusher("");

    pusher.close(&id).await.expect("DeleteConnection");
    assert_eq!(close_code(&mut ws).await, Some(1000));
    eventually("$disconnect", || !recorder.disconnects.lock().unwrap().is_empty()).await;
    let disconnects = recorder.disconnects.lock().unwrap().clone();
    assert_eq!(disconnects, [(id.clone(), Some(1000), Some(String::new()))]);
    assert_eq!(recorder.routes().last().map(|(r, _)| r.clone()).as_deref(), Some("$disconnect"));
    assert!(server.endpoint.connection_ids().is_empty());
    assert_eq!(pusher.send(&id, &json!({})).await.unwrap(), Pushed::Gone);
    pusher.close(&id).await.expect("closing a gone connection is not an error");
}

#[tokio::test]
async fn a_client_close_fires_disconnect_with_its_code() {
    let recorder = Arc::new(Recorder::default());
    let server = Server::start(recording(&recorder, ALL), Limits::default()).await;
    let mut ws = server.connect("?ticket=good").await.unwrap();
    let id = server.only_connection();
    ws.close(Some(tungstenite::protocol::CloseFrame { code: CloseCode::Away, reason: "bye".into() })).await.unwrap();
    eventually("$disconnect", || !recorder.disconnects.lock().unwrap().is_empty()).await;
    assert_eq!(recorder.disconnects.lock().unwrap()[0], (id, Some(1001), Some("bye".to_owned())));
}

#[tokio::test]
async fn a_binary_frame_closes_with_1003_and_a_message_over_the_limit_with_1009() {
    let recorder = Arc::new(Recorder::default());
    let limits = Limits { max_message_bytes: 1024, ..Limits::default() };
    let server = Server::start(recording(&recorder, ALL), limits).await;

    let mut ws = server.connect("?ticket=good").await.unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1003));

    let mut ws = server.connect("?ticket=good").await.unwrap();
    ws.send(Message::text("x".repeat(1025))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));

    eventually("two $disconnects", || recorder.disconnects.lock().unwrap().len() == 2).await;
    let codes: Vec<_> = recorder.disconnects.lock().unwrap().iter().map(|d| d.1).collect();
    assert_eq!(codes, [Some(1003), Some(1009)]);
    assert!(recorder.routes().iter().all(|(route, _)| route != "$default"), "neither frame reached a function");
}

#[tokio::test]
async fn an_idle_connection_is_closed_going_away() {
    let recorder = Arc::new(Recorder::default());
    let limits = Limits { idle_timeout: Duration::from_millis(300), ..Limits::default() };
    let server = Server::start(recording(&recorder, ALL), limits).await;
    let mut ws = server.connect("?ticket=good").await.unwrap();
    let started = Instant::now();
    assert_eq!(close_code(&mut ws).await, Some(1001));
    assert!(started.elapsed() >= Duration::from_millis(250));
    eventually("$disconnect", || !recorder.disconnects.lock().unwrap().is_empty()).await;
    assert_eq!(recorder.disconnects.lock().unwrap()[0].1, Some(1001));
}

#[tokio::test]
async fn protocol_pings_are_answered_without_reaching_a_function() {
    let recorder = Arc::new(Recorder::default());
    let server = Server::start(recording(&recorder, ALL), Limits::default()).await;
    let mut ws = server.connect("?ticket=good").await.unwrap();
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a pong").unwrap().unwrap();
    assert_eq!(frame, Message::Pong(b"hi".to_vec().into()));
    assert_eq!(recorder.routes().len(), 1, "only $connect");
}

/// A unique, lower-case name part.
fn unique() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{nanos:x}")
}

//! The HTTP side: a local API Gateway in front of the functions.
//!
//! Each request is read into a [`RawRequest`] (body capped at [`MAX_REQUEST_BYTES`]), routed and
//! turned into the payload-2.0 event by [`Router::dispatch`], answered by the function, and the
//! function's `lambda_http` response is written back as is. One access-log line per request
//! carries method, path, status and duration — never headers, query strings or bodies, which can
//! hold tokens and passwords.

use crate::stopped;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as HttpBody;
use hyper_util::rt::{TokioIo, TokioTimer};
use lambda_http::Body;
use purse_local::apigw::{self, RawRequest};
use purse_local::router::{local_error, Router};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Largest request body the dev server accepts. API Gateway's own limit is 10 MB; every JSON
/// route refuses far less (`purse::http::MAX_BODY_BYTES`), so 1 MiB only stops runaway uploads.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The response type the server writes.
pub type HyperResponse = hyper::Response<Full<Bytes>>;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// The body is larger than the cap (by `Content-Length` or as it streamed in).
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The client went away or sent a broken body.
    #[error("the request body could not be read: {0}")]
    Read(String),
}

/// Reads a request into a [`RawRequest`]: method, path, query, headers in arrival order, the
/// body (at most `limit` bytes) and the caller's IP address.
///
/// # Errors
/// [`BodyError::TooLarge`] when the body exceeds `limit` (refused up front when
/// `Content-Length` says so), [`BodyError::Read`] when the body cannot be read.
pub async fn read_request<B>(req: http::Request<B>, peer: IpAddr, limit: usize) -> Result<RawRequest, BodyError>
where
    B: HttpBody,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(BodyError::TooLarge { limit }),
        Err(e) => return Err(BodyError::Read(e.to_string())),
    };
    Ok(RawRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body,
        source_ip: peer.to_string(),
    })
}

/// Turns a function's response into the response written to the client: same status, same
/// headers, the body as bytes.
pub fn to_hyper(resp: lambda_http::Response<Body>) -> HyperResponse {
    let (parts, body) = resp.into_parts();
    let bytes = match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bin) => Bytes::from(bin),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

/// Answers one request: read it, dispatch it to its function, convert the answer, log one line.
///
/// A function that panics answers 500 `internal_error` (in Lambda the invocation would fail and
/// API Gateway would answer 500 too); the server keeps running.
pub async fn handle<B>(router: Arc<Router>, req: http::Request<B>, peer: IpAddr) -> HyperResponse
where
    B: HttpBody,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if method == http::Method::GET && path.starts_with(RETURN_PAGE_PREFIX) {
        return return_page(&path, req.uri().query().unwrap_or(""));
    }
    if (method == http::Method::GET || method == http::Method::HEAD) && crate::webapp::is_app_path(&path) {
        let resp = crate::webapp::serve(&path, method == http::Method::HEAD).await;
        tracing::debug!("{method} {path} {} {}ms", resp.status().as_u16(), started.elapsed().as_millis());
        return resp;
    }
    let resp = match read_request(req, peer, MAX_REQUEST_BYTES).await {
        Ok(raw) => match tokio::spawn(async move { router.dispatch(raw).await }).await {
            Ok(resp) => to_hyper(resp),
            Err(e) => {
                tracing::error!(error = %e, "the function panicked");
                gateway_error(500, "internal_error", "something went wrong on our side; it has been logged")
            }
        },
        Err(e @ BodyError::TooLarge { .. }) => gateway_error(413, "payload_too_large", &e.to_string()),
        Err(e @ BodyError::Read(_)) => gateway_error(400, "bad_request", &e.to_string()),
    };
    tracing::info!("{method} {path} {} {}ms", resp.status().as_u16(), started.elapsed().as_millis());
    resp
}

/// A plain page for `/dev/wallet/deposits/<id>?result=paid`, where Revio's checkout sent the
/// browser back before the web app existed (the local `FrontendUrl` is now `/app`, the web app,
/// see [`crate::webapp`]); kept for links and scripts that still use it. Not part of the API.
pub const RETURN_PAGE_PREFIX: &str = "/dev/";

/// The page a browser lands on after the sandbox checkout: what happened and how to check it.
fn return_page(path: &str, query: &str) -> HyperResponse {
    let id: String = path
        .rsplit('/')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    let result = if query.contains("result=paid") { "paid" } else { "not paid" };
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Purse (dev)</title>\
         <h1>Back from the Revio checkout: {result}</h1>\
         <p>Deposit <code>{id}</code>. Revio's webhook settles it in the background; check it with</p>\
         <pre>curl -s $B/v1/transactions/{id} -H \"Authorization: Bearer $TOKEN\"\ncurl -s $B/v1/wallet -H \"Authorization: Bearer $TOKEN\"</pre>\
         <p>This page exists only under <code>make dev</code>; in production the frontend serves it.</p>"
    );
    hyper::Response::builder()
        .status(200)
        .header("content-type", "text/html; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

/// An answer from the gateway itself, in the API's error shape.
fn gateway_error(status: u16, code: &str, message: &str) -> HyperResponse {
    to_hyper(local_error(status, code, message, &apigw::new_request_id()))
}

/// Serves HTTP/1.1 on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests in flight finish (idle keep-alive connections are closed at once) and waits at most
/// `grace` for them.
///
/// Returns how many connections were still open when `grace` ran out and were cut.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> usize {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections =
        accept_until(listener, shutdown, |stream, peer| connection(stream, peer, router.clone(), stop_rx.clone()))
            .await;
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_ok() {
        0
    } else {
        let cut = connections.len();
        connections.abort_all();
        cut
    }
}

/// Accepts connections on `listener`, each served by the task `serve` makes of it, until
/// `shutdown` completes; then stops accepting and returns the connections still running (the
/// local HTTP API and the local WebSocket API share it).
pub(crate) async fn accept_until<F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    mut serve: impl FnMut(tokio::net::TcpStream, std::net::SocketAddr) -> F,
) -> JoinSet<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve(stream, peer));
                }
                Err(e) => {
                    // Such as running out of file descriptors: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Arc<Router>,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |req| {
        let router = router.clone();
        async move { Ok::<_, Infallible>(handle(router, req, peer.ip()).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn empty_router() -> Arc<Router> {
        Arc::new(Router::default())
    }

    fn request(body: &[u8], headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
        let mut b = http::Request::builder().method("POST").uri("/v1/things/a%20b?limit=5&x=1");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(Full::new(Bytes::copy_from_slice(body))).unwrap()
    }

    async fn json_of(resp: HyperResponse) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_request_keeps_its_path_query_headers_in_order_body_and_peer() {
        let req = request(b"{\"a\":1}", &[("content-type", "application/json"), ("x-b", "2"), ("accept", "*/*")]);
        let raw = read_request(req, PEER, 1024).await.unwrap();
        assert_eq!(raw.method, "POST");
        assert_eq!(raw.path, "/v1/things/a%20b");
        assert_eq!(raw.query, "limit=5&x=1");
        let names: Vec<_> = raw.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type", "x-b", "accept"]);
        assert_eq!(raw.body, b"{\"a\":1}");
        assert_eq!(raw.source_ip, "127.0.0.1");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_whether_declared_or_streamed() {
        let declared = request(b"", &[("content-length", "2000000")]);
        assert_eq!(read_request(declared, PEER, 1024).await.unwrap_err(), BodyError::TooLarge { limit: 1024 });
        let streamed = request(&[b'x'; 2048], &[]);
        assert_eq!(read_request(streamed, PEER, 1024).await.unwrap_err(), BodyError::TooLarge { limit: 1024 });
        let exact = request(&[b'x'; 1024], &[]);
        assert_eq!(read_request(exact, PEER, 1024).await.unwrap().body.len(), 1024);
    }

    #[tokio::test]
    async fn a_function_response_keeps_status_headers_and_body() {
        let text = lambda_http::Response::builder()
            .status(201)
            .header("content-type", "application/json")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(Body::Text("{\"ok\":true}".into()))
            .unwrap();
        let resp = to_hyper(text);
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 2);
        assert_eq!(json_of(resp).await["ok"], true);

        let binary = to_hyper(lambda_http::Response::new(Body::Binary(vec![0, 159, 146, 150])));
        assert_eq!(binary.into_body().collect().await.unwrap().to_bytes().as_ref(), [0, 159, 146, 150]);
        let empty = to_hyper(lambda_http::Response::new(Body::Empty));
        assert!(empty.into_body().collect().await.unwrap().to_bytes().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_route_is_a_404_in_the_api_error_shape() {
        let resp = handle(empty_router(), request(b"", &[]), PEER).await;
        assert_eq!(resp.status(), 404);
        let body = json_of(resp).await;
        assert_eq!(body["error"]["code"], "route_not_found");
        assert!(body["error"]["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }

    #[tokio::test]
    async fn an_oversized_body_is_a_413_in_the_api_error_shape() {
        let big = vec![b'x'; MAX_REQUEST_BYTES + 1];
        let resp = handle(empty_router(), request(&big, &[]), PEER).await;
        assert_eq!(resp.status(), 413);
        assert_eq!(json_of(resp).await["error"]["code"], "payload_too_large");
    }

    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_server_answers_over_a_socket_and_stops_when_told() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            empty_router(),
            async {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        ));
        let answer = exchange(addr, "GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(answer.contains("route_not_found"), "{answer}");

        // A keep-alive connection left idle does not hold the shutdown up.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let _ = idle.read(&mut buf).await.unwrap();

        tx.send(()).unwrap();
        let cut = tokio::time::timeout(Duration::from_secs(3), server).await.expect("server stops").unwrap();
        assert_eq!(cut, 0);
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
    }
}

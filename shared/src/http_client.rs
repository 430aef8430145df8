//! The HTTP client of the provider adapters (Revio, KYC, telephony).
//!
//! It is made of what every function already links for the AWS SDK: hyper's HTTP/1.1 client
//! (`hyper-util`'s pooled client), `hyper-rustls` and the rustls configuration of [`crate::tls`].
//! A provider client therefore adds no second HTTP stack, TLS stack or root store to a binary.
//!
//! What it does, and the adapters rely on:
//! - **Time bounds**: `connect_timeout` bounds opening a connection (TCP and TLS);
//!   `request_timeout` bounds the whole exchange, from sending the request to the last byte of
//!   the answer's body ([`Response::read_body`] keeps to the same deadline).
//! - **No redirects**: an answer is returned as it came, 3xx included; nothing is re-sent
//!   elsewhere.
//! - **Body limits**: [`Response::read_body`] stops reading past the limit it is given.
//! - **Errors** ([`Error`]) say whether the connection could not be opened
//!   ([`Error::is_connect`]), whether a time bound ran out ([`Error::is_timeout`]) and whether the
//!   request could not even be built ([`Error::is_builder`]); their source chain carries the cause.
//! - Plain `http://` works as well as `https://` (the adapters decide which URLs they accept).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use crate::config::InitError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a [`HttpClient`] is built. [`HttpClientConfig::new`] gives the two time bounds; the rest
/// has defaults.
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// Longest wait for a connection (TCP and TLS) to open.
    pub connect_timeout: Duration,
    /// Longest wait for one whole request, connecting and reading the answer included.
    pub request_timeout: Duration,
    /// How long an idle pooled connection is kept (default 90 s).
    pub pool_idle_timeout: Duration,
}

impl HttpClientConfig {
    /// The given time bounds, idle connections kept 90 s.
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> Self {
        Self { connect_timeout, request_timeout, pool_idle_timeout: Duration::from_secs(90) }
    }

    /// The same configuration, idle connections kept `idle` instead.
    #[must_use]
    pub fn pool_idle_timeout(mut self, idle: Duration) -> Self {
        self.pool_idle_timeout = idle;
        self
    }
}

/// A pooled HTTP/1.1 client on the shared TLS configuration. Cheap to clone; build it once per
/// cold start.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<TimedConnector, Full<Bytes>>,
    request_timeout: Duration,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").field("request_timeout", &self.request_timeout).finish_non_exhaustive()
    }
}

/// The user agent every provider call sends.
const PURSE_USER_AGENT: &str = concat!("purse/", env!("CARGO_PKG_VERSION"));

impl HttpClient {
    /// A client with these bounds, trusting exactly [`crate::tls::root_certificates`].
    ///
    /// # Errors
    /// [`InitError::Dependency`] when the TLS configuration cannot be built.
    pub fn new(config: &HttpClientConfig) -> Result<Self, InitError> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(config.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::provider_tls_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let connector = TimedConnector { inner: https, timeout: config.connect_timeout };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self { client, request_timeout: config.request_timeout })
    }

    /// Sends `request` and returns the answer's head; its body is read with
    /// [`Response::read_body`] before the same deadline. Any status is an answer, not an error.
    ///
    /// # Errors
    /// [`Error`]: the request could not be built, the connection not opened, the exchange failed
    /// or did not complete within the request timeout.
    pub async fn send(&self, request: Request) -> Result<Response, Error> {
        let deadline = Instant::now() + self.request_timeout;
        if let Some(name) = request.unsendable {
            return Err(Error::new(Kind::Builder, format!("the {name} header holds characters a header cannot carry")));
        }
        let uri: Uri = request.url.parse().map_err(|e| Error::new(Kind::Builder, e))?;
        let mut builder = http::Request::builder().method(request.method).uri(uri);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let http_request = builder
            .header(USER_AGENT, HeaderValue::from_static(PURSE_USER_AGENT))
            .body(Full::new(Bytes::from(request.body.unwrap_or_default())))
            .map_err(|e| Error::new(Kind::Builder, e))?;
        let response = match tokio::time::timeout_at(deadline, self.client.request(http_request)).await {
            Err(_) => return Err(Error::new(Kind::Timeout, TimedOut)),
            Ok(Err(e)) if e.is_connect() => return Err(Error::new(Kind::Connect, e)),
            Ok(Err(e)) => return Err(Error::new(Kind::Request, e)),
            Ok(Ok(response)) => response,
        };
        let (head, body) = response.into_parts();
        Ok(Response { status: head.status, headers: head.headers, body, deadline })
    }
}

/// One request: method, absolute URL, headers and an optional body. The user agent
/// (`purse/<version>`) is added when it is sent.
#[derive(Debug)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Vec<u8>>,
    /// A header given a value no header can carry (not kept, so never printed).
    unsendable: Option<HeaderName>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self { method, url: url.into(), headers: Vec::new(), body: None, unsendable: None }
    }

    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url)
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds a header holding a credential: marked sensitive, so that it is never printed.
    /// A value no header can carry is reported when the request is sent ([`Error::is_builder`]).
    #[must_use]
    pub fn secret_header(mut self, name: HeaderName, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.header(name, value)
            }
            Err(_) => {
                self.unsendable = Some(name);
                self
            }
        }
    }

    /// `Authorization: Bearer <token>`, sensitive.
    #[must_use]
    pub fn bearer_auth(self, token: &str) -> Self {
        self.secret_header(http::header::AUTHORIZATION, &format!("Bearer {token}"))
    }

    /// `Authorization: Basic base64(<user>:<password>)`, sensitive.
    #[must_use]
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.secret_header(http::header::AUTHORIZATION, &format!("Basic {encoded}"))
    }

    /// A JSON body with its `Content-Type`.
    #[must_use]
    pub fn json_body(mut self, body: Vec<u8>) -> Self {
        self.headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
        self.body = Some(body);
        self
    }
}

/// An answer whose head has arrived; the body is read with [`Response::read_body`].
#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    headers: http::HeaderMap,
    body: hyper::body::Incoming,
    deadline: Instant,
}

/// A body read up to a limit.
#[derive(Debug)]
pub struct Body {
    pub bytes: Vec<u8>,
    /// The answer was longer than the limit; `bytes` holds what fitted.
    pub too_large: bool,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// Reads the body, keeping at most `limit` bytes and stopping at the first chunk beyond them.
    ///
    /// # Errors
    /// [`Error`] when the body is cut short or does not arrive before the request's deadline.
    pub async fn read_body(self, limit: usize) -> Result<Body, Error> {
        let mut body = self.body;
        let read = async {
            let mut out = Body { bytes: Vec::new(), too_large: false };
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Error::new(Kind::Body, e))?;
                let Ok(chunk) = frame.into_data() else { continue };
                if out.bytes.len() + chunk.len() > limit {
                    out.too_large = true;
                    break;
                }
                out.bytes.extend_from_slice(&chunk);
            }
            Ok(out)
        };
        tokio::time::timeout_at(self.deadline, read).await.unwrap_or_else(|_| Err(Error::new(Kind::Timeout, TimedOut)))
    }
}

/// Why a request got no (complete) answer. Its [`std::error::Error::source`] chain carries the
/// cause (`tcp connect error: Connection refused`, a TLS alert, ...); nothing in it quotes a
/// header value.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    source: BoxError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The URL or a header could not be sent at all.
    Builder,
    /// No connection could be opened (refused, DNS, TLS handshake, connect timeout).
    Connect,
    /// The request failed after a connection was opened.
    Request,
    /// The answer's body was cut short.
    Body,
    /// The request timeout ran out.
    Timeout,
}

impl Error {
    fn new(kind: Kind, source: impl Into<BoxError>) -> Self {
        Self { kind, source: source.into() }
    }

    /// The request could not be built (an invalid URL or header value); nothing was sent.
    pub fn is_builder(&self) -> bool {
        self.kind == Kind::Builder
    }

    /// No connection could be opened, so nothing was sent.
    pub fn is_connect(&self) -> bool {
        self.kind == Kind::Connect
    }

    /// A time bound ran out: the connect timeout (then [`Error::is_connect`] too) or the request
    /// timeout.
    pub fn is_timeout(&self) -> bool {
        if self.kind == Kind::Timeout {
            return true;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*self.source);
        while let Some(e) = source {
            if e.is::<TimedOut>()
                || e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
            {
                return true;
            }
            source = e.source();
        }
        false
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Builder => "the request could not be built",
            Kind::Connect => "no connection could be opened",
            Kind::Request => "the request failed",
            Kind::Body => "the answer was cut short",
            Kind::Timeout => "no complete answer in time",
        })
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A time bound ran out.
#[derive(Debug)]
struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation timed out")
    }
}

impl std::error::Error for TimedOut {}

/// The HTTPS connector with one bound on opening a connection, TLS handshake included (the TCP
/// connector's own timeout covers only TCP).
#[derive(Clone)]
struct TimedConnector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

impl tower_service::Service<Uri> for TimedConnector {
    type Response = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(TimedOut) as BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-connection server that reads a request head and writes `answer` after `delay`.
    async fn serve_once(answer: &'static [u8], delay: Duration) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            tokio::time::sleep(delay).await;
            let _ = socket.write_all(answer).await;
            let _ = socket.shutdown().await;
            String::from_utf8_lossy(&head).into_owned()
        });
        (url, task)
    }

    fn client(request_timeout: Duration) -> HttpClient {
        HttpClient::new(&HttpClientConfig::new(Duration::from_secs(2), request_timeout)).unwrap()
    }

    #[tokio::test]
    async fn a_redirect_is_returned_as_it_came_and_headers_are_sent() {
        let (url, server) = serve_once(
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let answer = client(Duration::from_secs(5))
            .send(Request::get(format!("{url}/x")).bearer_auth("tok").basic_auth("u", "p"))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::FOUND);
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /x http/1.1\r\n"), "{head}");
        assert!(head.contains("authorization: bearer tok\r\n") && head.contains("authorization: basic dtpw\r\n"));
        assert!(head.contains(&format!("user-agent: {PURSE_USER_AGENT}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_cut_at_the_limit() {
        let (url, _server) =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", Duration::ZERO).await;
        let answer = client(Duration::from_secs(5)).send(Request::get(url)).await.unwrap();
        let body = answer.read_body(4).await.unwrap();
        assert!(body.too_large && body.bytes.len() <= 4, "{body:?}");
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_timeout_and_a_refused_connection_a_connect_error() {
        let (url, _server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Duration::from_secs(3)).await;
        let err = client(Duration::from_millis(200)).send(Request::get(url)).await.unwrap_err();
        assert!(err.is_timeout() && !err.is_connect(), "{err:?}");

        // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
        let err = client(Duration::from_secs(5)).send(Request::get("http://127.0.0.1:9/")).await.unwrap_err();
        assert!(err.is_connect() && !err.is_timeout(), "{err:?}");

        let err = client(Duration::from_secs(5)).send(Request::get("not a url")).await.unwrap_err();
        assert!(err.is_builder(), "{err:?}");
        let err = client(Duration::from_secs(5))
            .send(Request::get("http://127.0.0.1:9/").bearer_auth("bad\nkey"))
            .await
            .unwrap_err();
        assert!(err.is_builder() && !format!("{err:?}").contains("bad"), "{err:?}");
    }

    /// Needs the Internet: `PURSE_TLS_PROBE_URL=https://example.com cargo test -p purse --lib
    /// http_client -- --ignored`. Proves that HTTPS works end to end on the compiled-in roots.
    #[tokio::test]
    #[ignore = "needs the Internet and PURSE_TLS_PROBE_URL"]
    async fn a_public_https_site_answers_over_the_compiled_in_roots() {
        let url = std::env::var("PURSE_TLS_PROBE_URL").expect("PURSE_TLS_PROBE_URL names an https URL");
        let answer = client(Duration::from_secs(10)).send(Request::get(url)).await.unwrap();
        assert!(answer.status().as_u16() < 500, "{:?}", answer.status());
        assert!(!answer.read_body(1 << 20).await.unwrap().bytes.is_empty());
    }
}

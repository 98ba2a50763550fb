//! The loopback HTTP harness every emulator runs on.
//!
//! `EmulatorServer::start(router)` binds 127.0.0.1:0, serves HTTP/1.1 (or
//! HTTPS with `start_tls_on` and a `tls::TlsIdentity`), and
//! stops when the server value is dropped (a drop guard cancels the accept
//! loop and every connection). Before the router sees a request the harness:
//! 1. buffers the body and appends the request to the `RequestLog`;
//! 2. asks the `FaultPlan` what to do: add latency, answer with a canned
//!    failure, or drop the connection without answering.
//!
//! Requests in absolute form (`GET http://host/path`, as a client behind an
//! HTTP proxy sends them) are routed by their path like origin-form ones.
//!
//! A router can also drop a connection itself, for faults only it can scope
//! (for example "the next pull on shard 1"): it puts `DropConnection` into
//! the response's extensions and the harness closes the connection instead
//! of answering.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::tls::TlsIdentity;

/// A request as the emulator received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path without the query string.
    pub path: String,
    /// Raw (still percent-encoded) query string, empty when absent.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Every request the server received, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<RecordedRequest>>>);

impl RequestLog {
    pub fn snapshot(&self) -> Vec<RecordedRequest> {
        self.0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests whose path starts with `prefix`.
    pub fn matching(&self, prefix: &str) -> Vec<RecordedRequest> {
        self.0.lock().unwrap().iter().filter(|request| request.path.starts_with(prefix)).cloned().collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear()
    }

    fn push(&self, request: RecordedRequest) {
        self.0.lock().unwrap().push(request)
    }
}

/// What to do to a matching request instead of (or before) serving it.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status, content type and body; the emulator never sees
    /// the request.
    Respond { status: StatusCode, content_type: &'static str, body: Bytes },
    /// Close the connection without answering.
    DropConnection,
    /// Wait, then serve normally.
    Delay(Duration),
}

impl Fault {
    pub fn status(status: u16, body: impl Into<Bytes>) -> Fault {
        Fault::Respond {
            status: StatusCode::from_u16(status).expect("valid status code"),
            content_type: "application/json",
            body: body.into(),
        }
    }
}

#[derive(Debug)]
struct ScheduledFault {
    path_prefix: Option<String>,
    remaining: usize,
    fault: Fault,
}

#[derive(Debug, Default)]
struct FaultState {
    scheduled: VecDeque<ScheduledFault>,
    latency: Duration,
}

/// Faults to apply to upcoming requests. Scheduled faults apply in the order
/// they were added; each applies to the next `count` requests matching its
/// path prefix.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan(Arc<Mutex<FaultState>>);

impl FaultPlan {
    /// Applies `fault` to the next `count` requests.
    pub fn next(&self, count: usize, fault: Fault) {
        self.schedule(None, count, fault)
    }

    /// Applies `fault` to the next `count` requests whose path starts with
    /// `path_prefix`.
    pub fn next_matching(&self, path_prefix: &str, count: usize, fault: Fault) {
        self.schedule(Some(path_prefix.to_string()), count, fault)
    }

    /// Fails the next `count` requests with `status` and a JSON `body`.
    pub fn fail_next(&self, count: usize, status: u16, body: impl Into<Bytes>) {
        self.next(count, Fault::status(status, body))
    }

    /// Drops the connection of the next `count` requests.
    pub fn drop_next(&self, count: usize) {
        self.next(count, Fault::DropConnection)
    }

    /// Adds `latency` to every request from now on (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        self.0.lock().unwrap().latency = latency;
    }

    /// Removes every scheduled fault and the latency.
    pub fn clear(&self) {
        let mut state = self.0.lock().unwrap();
        state.scheduled.clear();
        state.latency = Duration::ZERO;
    }

    /// Scheduled fault applications still to come.
    pub fn pending(&self) -> usize {
        self.0.lock().unwrap().scheduled.iter().map(|fault| fault.remaining).sum()
    }

    fn schedule(&self, path_prefix: Option<String>, count: usize, fault: Fault) {
        if count > 0 {
            self.0.lock().unwrap().scheduled.push_back(ScheduledFault { path_prefix, remaining: count, fault });
        }
    }

    fn take_for(&self, path: &str) -> (Duration, Option<Fault>) {
        let mut state = self.0.lock().unwrap();
        let latency = state.latency;
        let position = state
            .scheduled
            .iter()
            .position(|scheduled| scheduled.path_prefix.as_deref().is_none_or(|prefix| path.starts_with(prefix)));
        let fault = position.map(|index| {
            let scheduled = &mut state.scheduled[index];
            scheduled.remaining -= 1;
            let fault = scheduled.fault.clone();
            if scheduled.remaining == 0 {
                state.scheduled.remove(index);
            }
            fault
        });
        (latency, fault)
    }
}

/// Response extension asking the harness to close the connection without
/// sending the response.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// The error that makes hyper close a connection without a response.
#[derive(Debug)]
struct DroppedByFaultPlan;

impl std::fmt::Display for DroppedByFaultPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault plan")
    }
}

impl std::error::Error for DroppedByFaultPlan {}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct EmulatorServer {
    address: SocketAddr,
    /// `https` when serving TLS (`start_tls_on`).
    scheme: &'static str,
    requests: RequestLog,
    faults: FaultPlan,
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl EmulatorServer {
    /// Serves `router` on 127.0.0.1 with a port the OS picks.
    pub async fn start(router: Router) -> std::io::Result<EmulatorServer> {
        EmulatorServer::start_on("127.0.0.1:0".parse().expect("valid address"), router).await
    }

    /// Serves `router` on `address`.
    pub async fn start_on(address: SocketAddr, router: Router) -> std::io::Result<EmulatorServer> {
        EmulatorServer::serve(address, router, None).await
    }

    /// Serves `router` over HTTPS on `address` with `identity`'s server
    /// certificate. A client that does not trust `identity.ca_pem()` fails
    /// the handshake, and the connection ends without a request.
    pub async fn start_tls_on(
        address: SocketAddr,
        router: Router,
        identity: &TlsIdentity,
    ) -> std::io::Result<EmulatorServer> {
        EmulatorServer::serve(address, router, Some(identity.acceptor())).await
    }

    async fn serve(address: SocketAddr, router: Router, tls: Option<TlsAcceptor>) -> std::io::Result<EmulatorServer> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let requests = RequestLog::default();
        let faults = FaultPlan::default();
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, tls, router, requests.clone(), faults.clone(), stop.clone()));
        Ok(EmulatorServer { address, scheme, requests, faults, _stop_on_drop: stop.drop_guard() })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT` (`https` with TLS), without a trailing slash.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.address)
    }

    pub fn requests(&self) -> &RequestLog {
        &self.requests
    }

    pub fn faults(&self) -> &FaultPlan {
        &self.faults
    }

    /// Serves until the process is killed, after printing the one line
    /// `listening on http://ADDR` that scripts and tests wait for.
    pub async fn serve_forever(self) {
        println!("listening on {}", self.url());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::future::pending::<()>().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    requests: RequestLog,
    faults: FaultPlan,
    stop: CancellationToken,
) {
    loop {
        // Both arms are cancel-safe: `accept` loses nothing when not polled to
        // completion, and cancellation ends the loop.
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let requests = requests.clone();
        let faults = faults.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                handle(request, router.clone(), requests.clone(), faults.clone())
            });
            let stream: Box<dyn Connection> = match tls {
                None => Box::new(stream),
                // A failed handshake (an untrusting client) just ends the
                // connection, as a TLS server does.
                Some(acceptor) => tokio::select! {
                    _ = stop.cancelled() => return,
                    handshake = acceptor.accept(stream) => match handshake {
                        Ok(stream) => Box::new(stream),
                        Err(_) => return,
                    },
                },
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

/// A plain or TLS connection, served the same way.
trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Connection for T {}

async fn handle(
    request: Request<hyper::body::Incoming>,
    router: Router,
    requests: RequestLog,
    faults: FaultPlan,
) -> Result<Response<Body>, DroppedByFaultPlan> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(DroppedByFaultPlan),
    };
    requests.push(RecordedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let (latency, fault) = faults.take_for(parts.uri.path());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::DropConnection) => return Err(DroppedByFaultPlan),
        Some(Fault::Respond { status, content_type, body }) => {
            let response = Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body(Body::from(body))
                .expect("valid canned response");
            return Ok(response);
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let request = Request::from_parts(parts, Body::from(body));
    let response: Result<Response<Body>, Infallible> = router.oneshot(request).await;
    let response = response.unwrap_or_else(|never| match never {});
    if response.extensions().get::<DropConnection>().is_some() {
        return Err(DroppedByFaultPlan);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn raw_request(address: SocketAddr, request: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    }

    const POST_HELLO: &str = "POST /x?a=1 HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";

    #[tokio::test]
    async fn records_requests_and_applies_faults_in_order() {
        let server = EmulatorServer::start(Router::new().route("/x", post(|| async { "served" }))).await.unwrap();
        server.faults().fail_next(1, 503, r#"{"busy":true}"#);
        server.faults().drop_next(1);

        let first = raw_request(server.address(), POST_HELLO).await;
        assert!(first.starts_with("HTTP/1.1 503"), "{first}");
        assert!(first.ends_with(r#"{"busy":true}"#));

        let second = raw_request(server.address(), POST_HELLO).await;
        assert_eq!(second, "", "the connection must close without a response");

        let third = raw_request(server.address(), POST_HELLO).await;
        assert!(third.starts_with("HTTP/1.1 200") && third.ends_with("served"), "{third}");

        let recorded = server.requests().snapshot();
        assert_eq!(recorded.len(), 3);
        assert_eq!(recorded[0].path, "/x");
        assert_eq!(recorded[0].query, "a=1");
        assert_eq!(&recorded[0].body[..], b"hello");
        assert_eq!(server.faults().pending(), 0);
    }

    #[tokio::test]
    async fn path_scoped_faults_skip_other_paths() {
        let router = Router::new().route("/x", post(|| async { "x" })).route("/y", post(|| async { "y" }));
        let server = EmulatorServer::start(router).await.unwrap();
        server.faults().next_matching("/y", 1, Fault::status(500, "{}"));
        let x = raw_request(server.address(), POST_HELLO).await;
        assert!(x.starts_with("HTTP/1.1 200"));
        let y = raw_request(server.address(), &POST_HELLO.replace("/x?a=1", "/y")).await;
        assert!(y.starts_with("HTTP/1.1 500"));
    }

    #[tokio::test]
    async fn a_router_can_ask_to_drop_the_connection() {
        let dropping = || async {
            let mut response = Response::new(Body::from("never sent"));
            response.extensions_mut().insert(DropConnection);
            response
        };
        let server = EmulatorServer::start(Router::new().route("/x", post(dropping))).await.unwrap();
        assert_eq!(raw_request(server.address(), POST_HELLO).await, "");
    }

    #[tokio::test]
    async fn absolute_form_targets_route_by_path() {
        let server = EmulatorServer::start(Router::new().route("/x", post(|| async { "served" }))).await.unwrap();
        let request = POST_HELLO.replace("POST /x?a=1", "POST http://project.sls.test:1234/x?a=1");
        let response = raw_request(server.address(), &request).await;
        assert!(response.ends_with("served"), "{response}");
        assert_eq!(server.requests().snapshot()[0].path, "/x");
    }
}

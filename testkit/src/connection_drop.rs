//! A response that makes hyper close the connection without sending a byte,
//! for emulators that must drop a connection after deciding what happened to
//! a request (the harness's `FaultPlan` can only drop before the emulator
//! sees it).
//!
//! Guarantees: the client sees the connection close with no status line
//! (hyper buffers the head until the first body frame, and the first poll of
//! this body fails). Never panics.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Response, StatusCode};

struct AbortConnection;

impl HttpBody for AbortConnection {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection dropped by emulator fault injection",
        ))))
    }
}

/// A response whose body fails at once, so the connection closes unanswered.
pub(crate) fn dropped_connection_response() -> Response<Body> {
    let mut response = Response::new(Body::new(AbortConnection));
    *response.status_mut() = StatusCode::OK;
    response
}

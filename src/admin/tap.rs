//! `GET /api/v1/tasks/{name}/tap?target=T&limit=N&rate=R`: stream the samples a task's target
//! receives (after filter, task labels and external labels), one JSON sample object in the
//! seed's shape per event: Server-Sent Events by default, NDJSON with
//! `Accept: application/x-ndjson`.
//!
//! The stream ends after `limit` samples (or when the client leaves) with a trailer that
//! counts what was sent and what was skipped because this listener fell behind or the samples
//! came faster than its `rate` (samples per second, default
//! [`DEFAULT_RATE`], at most [`MAX_RATE`]):
//! `{"trailer":{"samples":N,"skipped":K}}` as the last NDJSON line, or an SSE event named
//! `trailer`. At most [`MAX_TAPS`] listen to one task at once (429 after). The data path's
//! side is [`crate::pipeline::tap`].

use super::live::Live;
use crate::pipeline::tap::{DEFAULT_RATE, MAX_RATE, MAX_TAPS, Subscription};
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body of any kind the HTTP source serves.
pub type AnyBody = UnsyncBoxBody<Bytes, Infallible>;

/// The query of a tap request: `target` (default: the task's first target), `limit`, `rate`.
#[derive(Debug, PartialEq, Eq)]
struct TapQuery {
    target: Option<String>,
    limit: Option<u64>,
    rate: u64,
}

/// # Errors
/// A `limit` that is not a number of samples, or a `rate` that is not a number in
/// 1..=[`MAX_RATE`], said for the user (the API answers 400 with it).
fn query(q: Option<&str>) -> Result<TapQuery, String> {
    let mut t = TapQuery {
        target: None,
        limit: None,
        rate: DEFAULT_RATE,
    };
    for pair in q.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("target", v)) => t.target = super::page::decode_segment(v),
            Some(("limit", v)) => {
                t.limit = Some(v.parse().map_err(|_| {
                    format!("limit={v:?}: expected a number of samples (0 or more)")
                })?);
            }
            Some(("rate", v)) => {
                t.rate = v
                    .parse()
                    .ok()
                    .filter(|r| (1..=MAX_RATE).contains(r))
                    .ok_or_else(|| {
                        format!("rate={v:?}: expected samples per second, 1 to {MAX_RATE}")
                    })?;
            }
            _ => {}
        }
    }
    Ok(t)
}

fn plain(status: StatusCode, body: String) -> Response<AnyBody> {
    let mut r = Response::new(http_body_util::Full::new(Bytes::from(body + "\n")).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answer a tap request for task `name` (the caller was authorized).
pub fn tap(
    live: &Live,
    name: &str,
    query_str: Option<&str>,
    accept: Option<&str>,
) -> Response<AnyBody> {
    let Some(task) = live.tasks().iter().find(|t| t.name == name).cloned() else {
        return plain(StatusCode::NOT_FOUND, format!("no task named {name:?}"));
    };
    let TapQuery {
        target,
        limit,
        rate,
    } = match query(query_str) {
        Ok(q) => q,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let target = match target {
        Some(t) if task.targets.iter().any(|c| c.name == t) => t,
        Some(t) => {
            let names: Vec<&str> = task.targets.iter().map(|c| c.name.as_str()).collect();
            return plain(
                StatusCode::NOT_FOUND,
                format!(
                    "task {name:?} has no target {t:?}; its targets: {}",
                    names.join(", ")
                ),
            );
        }
        None => match task.targets.first() {
            Some(t) => t.name.clone(),
            None => {
                return plain(
                    StatusCode::NOT_FOUND,
                    format!("task {name:?} has no target"),
                );
            }
        },
    };
    let Some(sub) = live.taps.task(name).subscribe(&target, rate) else {
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            format!("task {name:?} already has {MAX_TAPS} taps; close one and retry"),
        );
    };
    let ndjson = accept.is_some_and(|a| a.contains("application/x-ndjson"));
    let body = TapBody {
        sub,
        limit,
        sent: 0,
        ndjson,
        done: limit == Some(0),
        trailer_sent: false,
    };
    let mut r = Response::new(body.boxed_unsync());
    let ct = if ndjson {
        "application/x-ndjson"
    } else {
        "text/event-stream"
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The streamed answer: the listener's chunks, cut at `limit`, then the trailer.
struct TapBody {
    sub: Subscription,
    limit: Option<u64>,
    sent: u64,
    ndjson: bool,
    /// The limit was reached: only the trailer is left.
    done: bool,
    trailer_sent: bool,
}

impl TapBody {
    fn trailer(&self) -> Bytes {
        let t = format!(
            "{{\"trailer\":{{\"samples\":{},\"skipped\":{}}}}}",
            self.sent,
            self.sub.skipped()
        );
        Bytes::from(if self.ndjson {
            t + "\n"
        } else {
            format!("event: trailer\ndata: {t}\n\n")
        })
    }
}

impl Body for TapBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.trailer_sent {
            return Poll::Ready(None);
        }
        if !self.done {
            match self.sub.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.done = true,
                Poll::Ready(Some(chunk)) => {
                    let mut out = Vec::with_capacity(chunk.lines.len() + 64);
                    let lines = chunk.lines.split(|&b| b == b'\n').filter(|l| !l.is_empty());
                    for line in lines.take(chunk.count as usize) {
                        if self.limit.is_some_and(|l| self.sent >= l) {
                            break;
                        }
                        if !self.ndjson {
                            out.extend_from_slice(b"data: ");
                        }
                        out.extend_from_slice(line);
                        out.extend_from_slice(if self.ndjson { b"\n" } else { b"\n\n" });
                        self.sent += 1;
                    }
                    if self.limit.is_some_and(|l| self.sent >= l) {
                        self.done = true;
                        out.extend_from_slice(&self.trailer());
                        self.trailer_sent = true;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
        self.trailer_sent = true;
        let t = self.trailer();
        Poll::Ready(Some(Ok(Frame::data(t))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_a_target_a_limit_and_a_rate() {
        let q = |target: Option<&str>, limit, rate| TapQuery {
            target: target.map(str::to_owned),
            limit,
            rate,
        };
        assert_eq!(query(None), Ok(q(None, None, DEFAULT_RATE)));
        assert_eq!(
            query(Some("target=a%20b&limit=5&rate=7")),
            Ok(q(Some("a b"), Some(5), 7))
        );
        assert_eq!(
            query(Some("limit=3&other=1")),
            Ok(q(None, Some(3), DEFAULT_RATE))
        );
        for bad in ["limit=x", "limit=-1", "limit="] {
            assert!(
                query(Some(bad))
                    .unwrap_err()
                    .contains("expected a number of samples"),
                "{bad}"
            );
        }
        for bad in ["rate=0", "rate=x", "rate=100001", "rate="] {
            assert!(
                query(Some(bad)).unwrap_err().contains("1 to 100000"),
                "{bad}"
            );
        }
    }
}

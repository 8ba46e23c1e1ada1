//! `promrelay tap`: print what a task's target receives, one JSON sample per line, from a
//! running relay's tap (`GET /api/v1/tasks/{name}/tap`, see [`crate::admin::tap`]). The
//! stream's trailer (samples sent, samples skipped because the reader fell behind) goes to
//! standard error.
//!
//! Exit codes: 0 done, 1 the relay refused (its message is printed), 2 a usage or connection
//! problem.

use crate::admin::page::path_segment;
use crate::tools::tasks::TasksError;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::Write;

/// What to tap.
pub struct TapOptions {
    /// The admin base, `http://HOST:PORT`.
    pub url: String,
    pub task: String,
    pub target: Option<String>,
    pub limit: Option<u64>,
    /// Samples per second at most (the relay's default when `None`).
    pub rate: Option<u64>,
    /// A bearer token, if the relay requires one.
    pub token: Option<String>,
}

/// Stream the tap into `out` (samples) and `err` (the trailer) until it ends.
///
/// # Errors
/// See [`TasksError`].
pub async fn tap(
    o: &TapOptions,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), TasksError> {
    let base = o.url.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(TasksError::Usage(format!(
            "--url {:?}: expected http://HOST:PORT of the relay's admin address",
            o.url
        )));
    }
    let mut url = format!("{base}/api/v1/tasks/{}/tap?", path_segment(&o.task));
    if let Some(t) = &o.target {
        url.push_str(&format!("target={}&", path_segment(t)));
    }
    if let Some(l) = o.limit {
        url.push_str(&format!("limit={l}&"));
    }
    if let Some(r) = o.rate {
        url.push_str(&format!("rate={r}"));
    }
    let mut req = Request::get(&url).header(header::ACCEPT, "application/x-ndjson");
    if let Some(t) = &o.token {
        let v = HeaderValue::from_str(&format!("Bearer {}", t.trim()))
            .map_err(|_| TasksError::Usage("the token cannot be sent in a header".into()))?;
        req = req.header(header::AUTHORIZATION, v);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| TasksError::Usage(format!("{url}: {e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .request(req)
        .await
        .map_err(|e| TasksError::Usage(format!("{url}: {e}")))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(TasksError::Refused(format!(
            "{status}: {}",
            String::from_utf8_lossy(&text).trim()
        )));
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| TasksError::Usage(format!("{url}: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let sink: &mut dyn Write = if line.starts_with(b"{\"trailer\"") {
                err
            } else {
                out
            };
            sink.write_all(&line)
                .and_then(|()| sink.flush())
                .map_err(|e| TasksError::Usage(format!("writing: {e}")))?;
        }
    }
    Ok(())
}

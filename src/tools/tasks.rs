//! `promrelay tasks`: a client of a running relay's task API (`/api/v1/tasks`, see
//! [`crate::admin::api`]): list, get, apply, delete, enable, disable.
//!
//! Exit codes: 0 done, 1 the relay refused (its message is printed), 2 a usage or connection
//! problem.

use crate::admin::api::etag;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// What went wrong, and the exit code it means.
#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    /// The relay answered, and refused (exit 1).
    #[error("{0}")]
    Refused(String),
    /// Usage, a file, or the connection (exit 2).
    #[error("{0}")]
    Usage(String),
}

impl TasksError {
    pub fn exit_code(&self) -> u8 {
        match self {
            TasksError::Refused(_) => 1,
            TasksError::Usage(_) => 2,
        }
    }
}

/// A connection to one relay's admin address.
pub struct TasksClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    auth: Option<HeaderValue>,
}

/// How long one API call may take (a write waits for the reload it causes).
const TIMEOUT: Duration = Duration::from_secs(60);

impl TasksClient {
    /// `url` is the admin base (`http://127.0.0.1:9201`); `token` a bearer token, if the relay
    /// requires one.
    ///
    /// # Errors
    /// A URL that is not `http://…`, or a token that cannot be a header.
    pub fn new(url: &str, token: Option<&str>) -> Result<TasksClient, TasksError> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(TasksError::Usage(format!(
                "--url {url:?}: expected http://HOST:PORT of the relay's admin address"
            )));
        }
        let auth = token
            .map(|t| {
                HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                    .map_err(|_| TasksError::Usage("the token cannot be sent in a header".into()))
            })
            .transpose()?;
        Ok(TasksClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base,
            auth,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<(StatusCode, Bytes), TasksError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(a) = &self.auth {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        if let Some(m) = if_match {
            req = req.header(header::IF_MATCH, m);
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| TasksError::Usage(format!("{url}: {e}")))?;
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(TasksError::Usage(format!("{url}: {e}"))),
            Err(_) => Err(TasksError::Usage(format!(
                "{url}: no answer within {TIMEOUT:?}"
            ))),
        }
    }

    async fn json(&self, path: &str) -> Result<Value, TasksError> {
        let (status, body) = self.call(Method::GET, path, None, None).await?;
        if status != StatusCode::OK {
            return Err(refused(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| TasksError::Usage(format!("{path}: the answer is not JSON: {e}")))
    }

    /// `list`: one line per task, and each target's state.
    ///
    /// # Errors
    /// See [`TasksError`].
    pub async fn list(&self, out: &mut impl Write) -> Result<(), TasksError> {
        let v = self.json("/api/v1/tasks").await?;
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:<8} {:>11}  TARGETS",
            "NAME", "SOURCE", "ENABLED", "MATCHED/S"
        );
        for t in tasks {
            let rate = t["status"]["matched_per_second"]
                .as_f64()
                .map_or("-".to_owned(), |r| format!("{r:.1}"));
            let targets: Vec<String> = t["status"]["targets"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .map(|x| {
                            format!(
                                "{}={}",
                                x["name"].as_str().unwrap_or("?"),
                                x["state"].as_str().unwrap_or("?")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<24} {:<12} {:<8} {:>11}  {}",
                t["name"].as_str().unwrap_or("?"),
                t["source"].as_str().unwrap_or("?"),
                t["enabled"].as_bool().unwrap_or(false),
                rate,
                targets.join(" ")
            );
        }
        Ok(())
    }

    /// `get NAME`: the task's config as YAML (secrets hidden).
    ///
    /// # Errors
    /// See [`TasksError`].
    pub async fn get(&self, name: &str, out: &mut impl Write) -> Result<(), TasksError> {
        let v = self.json(&format!("/api/v1/tasks/{name}")).await?;
        let yaml =
            serde_yaml_ng::to_string(&v["config"]).map_err(|e| TasksError::Usage(e.to_string()))?;
        let _ = write!(out, "{yaml}");
        Ok(())
    }

    /// `apply -f FILE`: create or update every task of a task file (`tasks: [...]`); prints
    /// `created`, `updated` or `unchanged` for each.
    ///
    /// # Errors
    /// See [`TasksError`]; the tasks before the one refused are applied.
    pub async fn apply(&self, text: &str, out: &mut impl Write) -> Result<(), TasksError> {
        let doc: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| TasksError::Usage(format!("not a task file: {e}")))?;
        let tasks = match &doc {
            Value::Object(m) if m.contains_key("tasks") => {
                doc["tasks"].as_array().cloned().unwrap_or_default()
            }
            Value::Array(a) => a.clone(),
            Value::Object(_) => vec![doc.clone()],
            _ => Vec::new(),
        };
        if tasks.is_empty() {
            return Err(TasksError::Usage(
                "no task in the file (expected `tasks: [...]`)".into(),
            ));
        }
        for task in tasks {
            let Some(name) = task["name"].as_str().map(str::to_owned) else {
                return Err(TasksError::Usage("a task without a name".into()));
            };
            let path = format!("/api/v1/tasks/{name}");
            let (status, body) = self.call(Method::GET, &path, None, None).await?;
            let current = match status {
                StatusCode::OK => serde_json::from_slice::<Value>(&body).ok(),
                StatusCode::NOT_FOUND => None,
                _ => return Err(refused(status, &body)),
            };
            if let Some(c) = &current
                && c["etag"].as_str() == Some(etag(&task).as_str())
            {
                let _ = writeln!(out, "{name}: unchanged");
                continue;
            }
            let body = serde_json::to_vec(&task).map_err(|e| TasksError::Usage(e.to_string()))?;
            let if_match = current
                .as_ref()
                .and_then(|c| c["etag"].as_str().map(str::to_owned));
            let (status, answer) = self
                .call(Method::PUT, &path, Some(body), if_match.as_deref())
                .await?;
            match status {
                StatusCode::CREATED => {
                    let _ = writeln!(out, "{name}: created");
                }
                StatusCode::OK => {
                    let _ = writeln!(out, "{name}: updated");
                }
                _ => return Err(refused(status, &answer)),
            }
        }
        Ok(())
    }

    /// `delete`, `enable`, `disable`.
    ///
    /// # Errors
    /// See [`TasksError`].
    pub async fn act(
        &self,
        name: &str,
        action: &str,
        out: &mut impl Write,
    ) -> Result<(), TasksError> {
        let (method, path) = match action {
            "delete" => (Method::DELETE, format!("/api/v1/tasks/{name}")),
            "enable" | "disable" => (Method::POST, format!("/api/v1/tasks/{name}/{action}")),
            _ => return Err(TasksError::Usage(format!("unknown action {action:?}"))),
        };
        let (status, body) = self.call(method, &path, None, None).await?;
        if status != StatusCode::OK {
            return Err(refused(status, &body));
        }
        let _ = writeln!(out, "{name}: {action}d");
        Ok(())
    }
}

fn refused(status: StatusCode, body: &[u8]) -> TasksError {
    TasksError::Refused(format!(
        "{status}: {}",
        String::from_utf8_lossy(body).trim()
    ))
}

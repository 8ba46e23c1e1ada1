//! The admin endpoints beside `/metrics` and health: `POST /-/reload` and the task API.
//!
//! | request | answer |
//! |---|---|
//! | `POST /-/reload` | 200 once the new config runs (what changed); 400 with the same message `check-config` prints, nothing changed |
//! | `GET /api/v1/tasks` | 200 `{"tasks": [...]}`: every task, its config as written (secrets `<secret>`), its file, `enabled`, and live status |
//! | `GET /api/v1/tasks/{name}` | 200 one task, with an `ETag`; 404 |
//! | `PUT /api/v1/tasks/{name}` | 201 created / 200 replaced; body: the task in YAML or JSON; `If-Match` honoured (412) |
//! | `DELETE /api/v1/tasks/{name}` | 200; `If-Match` honoured |
//! | `POST /api/v1/tasks/{name}/enable`, `/disable` | 200 |
//! | `POST /api/v1/tasks/{name}/verify` | 200: every target probed (see [`super::verify`]); `"ok": false` when a check failed. Changes nothing, so any caller let in may ask |
//! | `GET /api/v1/status` | 200: sources, every task as above, build and config info: what the status page shows |
//! | `GET /`, `GET /tasks/{name}` | the status page and a task's page (HTML, see [`super::page`]) |
//!
//! Writes go to `server.admin.tasks_dir` (one file per task, see [`super::store`]), are
//! checked as a whole new config first (a bad body is a 400 naming the field, nothing is
//! written), then applied through the same reload as `SIGHUP`. Without a `tasks_dir` the write
//! endpoints answer 405 and say how to enable them; a task defined in another file is read-only
//! here (409 naming the file).
//!
//! Who may call: with `server.admin` credentials set, every admin path but `/-/healthy` and
//! `/-/ready` needs them (401). Without, changes (`/-/reload` and the API's writes) are refused
//! with 403 unless the admin address is a loopback one.

use super::live::{Live, ReloadError};
use super::page;
use super::rates::Series;
use super::store;
use crate::config::{Config, TaskConfig};
use crate::sources::http::{Resp, authorized, method_not_allowed, text};
use crate::targets::TargetState;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

/// Largest task body accepted.
pub const MAX_BODY: usize = 1 << 20;

fn html(body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The `ETag` of a task as written: a hash of its canonical JSON (keys sorted), quoted.
/// Stable across builds, so `promrelay tasks apply` can compare without fetching the body.
pub fn etag(raw: &Value) -> String {
    let canonical = serde_json::to_string(raw).unwrap_or_default();
    format!(
        "\"{:08x}{:08x}\"",
        crc32fast::hash(canonical.as_bytes()),
        canonical.len() as u32
    )
}

/// Secrets shown as `<secret>`: inline passwords, secrets and bearer tokens (their `_file`
/// and `_env` forms name where the secret is, which is not secret).
pub fn redact(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    let secret = matches!(k.as_str(), "password" | "secret" | "bearer_token")
                        || (k.contains("password")
                            && !k.ends_with("_file")
                            && !k.ends_with("_env"));
                    if secret && val.is_string() {
                        *val = Value::String("<secret>".into());
                    } else {
                        walk(val);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// `Some(401)` when the admin endpoints require credentials and `req` lacks them.
pub fn authorize(live: &Live, req: &Request<Incoming>) -> Option<Resp> {
    let pipeline = live.pipeline();
    let expected = pipeline.server().admin.auth.header_value()?;
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if authorized(given, &expected) {
        return None;
    }
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "the admin endpoints require the credentials in server.admin",
    );
    let scheme = if expected.starts_with("Bearer ") {
        "Bearer"
    } else {
        "Basic realm=\"promrelay admin\""
    };
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
    Some(r)
}

/// Whether this caller may change things (see the module docs): credentials were required
/// and checked, or the admin address is a loopback one.
fn may_change(live: &Live, loopback: bool) -> Option<Resp> {
    let has_auth = live.pipeline().server().admin.auth.header_value().is_some();
    if change_allowed(has_auth, loopback) {
        return None;
    }
    Some(text(
        StatusCode::FORBIDDEN,
        "changes through the admin endpoints need server.admin credentials (basic_auth or \
         bearer_token) when the admin address is not a loopback address",
    ))
}

/// Changes are allowed with credentials configured (and checked), or on a loopback address.
fn change_allowed(has_auth: bool, loopback: bool) -> bool {
    has_auth || loopback
}

/// Answer an admin request other than `/metrics` and health.
pub async fn handle(live: &Arc<Live>, loopback: bool, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path == "/-/reload" {
        if method != Method::POST && method != Method::PUT {
            return method_not_allowed("POST");
        }
        if let Some(r) = may_change(live, loopback) {
            return r;
        }
        return match live.reload().await {
            Ok(summary) => text(StatusCode::OK, format!("config reloaded; {summary}")),
            Err(e) => text(refused(&e), format!("config not reloaded: {e}")),
        };
    }
    let viewer_may_change = may_change(live, loopback).is_none();
    if path == "/" || path == "/api/v1/status" || path.starts_with("/tasks/") {
        if method != Method::GET && method != Method::HEAD {
            return method_not_allowed("GET");
        }
        let status = page::status_json(live, viewer_may_change);
        if path == "/api/v1/status" {
            return json_resp(StatusCode::OK, &status);
        }
        if path == "/" {
            return html(page::render_index(&status));
        }
        let name = path
            .strip_prefix("/tasks/")
            .and_then(page::decode_segment)
            .unwrap_or_default();
        return match status["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == name.as_str()))
        {
            Some(t) => html(page::render_task(t, viewer_may_change)),
            None => not_found(&name),
        };
    }
    let Some(rest) = path.strip_prefix("/api/v1/tasks") else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let rest = rest.trim_start_matches('/');
    // Names arrive percent-encoded when they hold characters outside a path segment's.
    let decoded: Vec<String> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/')
            .map(|p| page::decode_segment(p).unwrap_or_else(|| p.to_owned()))
            .collect()
    };
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match (parts.as_slice(), &method) {
        ([], &Method::GET) => list(live),
        ([], _) => method_not_allowed("GET"),
        ([name], &Method::GET) => match find(live, name) {
            Some(t) => one(live, &t),
            None => not_found(name),
        },
        ([name], &Method::PUT) => {
            let name = name.to_string();
            change(live, loopback, &name, req, Change::Put).await
        }
        ([name], &Method::DELETE) => {
            let name = name.to_string();
            change(live, loopback, &name, req, Change::Delete).await
        }
        ([_], _) => method_not_allowed("GET, PUT, DELETE"),
        ([name, action @ ("enable" | "disable")], &Method::POST) => {
            let name = name.to_string();
            let on = *action == "enable";
            change(live, loopback, &name, req, Change::Enable(on)).await
        }
        ([_, "enable" | "disable"], _) => method_not_allowed("POST"),
        ([name, "verify"], &Method::POST) => match find(live, name) {
            Some(t) => {
                let report = super::verify::verify_task(&t, false).await;
                let v = serde_json::to_value(&report).unwrap_or_default();
                live.last_verify
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(t.name.clone(), v.clone());
                json_resp(StatusCode::OK, &v)
            }
            None => not_found(name),
        },
        ([_, "verify"], _) => method_not_allowed("POST"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; the task API is /api/v1/tasks, /api/v1/tasks/{name}, /api/v1/tasks/{name}/enable|disable|verify",
        ),
    }
}

fn not_found(name: &str) -> Resp {
    text(StatusCode::NOT_FOUND, format!("no task named {name:?}"))
}

fn find(live: &Live, name: &str) -> Option<TaskConfig> {
    live.tasks().iter().find(|t| t.name == name).cloned()
}

fn list(live: &Live) -> Resp {
    let tasks: Vec<Value> = live.tasks().iter().map(|t| task_json(live, t)).collect();
    json_resp(StatusCode::OK, &json!({ "tasks": tasks }))
}

fn one(live: &Live, t: &TaskConfig) -> Resp {
    let mut r = json_resp(StatusCode::OK, &task_json(live, t));
    if let Ok(v) = HeaderValue::from_str(&etag(&t.origin.raw)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// Whether `file` is one the API manages (it lies in `tasks_dir`).
fn writable(live: &Live, file: &Path) -> bool {
    let pipeline = live.pipeline();
    pipeline
        .server()
        .admin
        .tasks_dir
        .as_deref()
        .is_some_and(|d| file.parent() == Some(d))
}

/// A task as the API shows it: config as written (secrets hidden), where, and how it runs.
pub fn task_json(live: &Live, t: &TaskConfig) -> Value {
    let rates = live.rates();
    let pipeline = live.pipeline();
    let targets: Vec<Value> = t
        .targets
        .iter()
        .map(|cfg| {
            let running = pipeline
                .targets()
                .iter()
                .find(|r| r.task == t.name && r.name == cfg.name);
            let budget = cfg
                .spool
                .as_ref()
                .map(|s| s.max_bytes)
                .or(cfg.overflow.map(|o| o.max_bytes));
            match running {
                Some(r) if t.enabled => {
                    let h = r.health.snapshot();
                    let state = if r.queue.is_closed() {
                        "restarting"
                    } else {
                        r.health.state().as_str()
                    };
                    json!({
                        "name": cfg.name,
                        "type": cfg.kind.type_name(),
                        "state": state,
                        "last_error": h.last_error.as_ref().map(|(m, _)| m),
                        "last_error_time": h.last_error.as_ref().map(|(_, at)| unix(*at)),
                        "queue_samples": r.queue.held(),
                        "queue_capacity": cfg.queue.capacity,
                        "disk_bytes": r.queue.disk_bytes(),
                        "disk_budget_bytes": budget,
                        "spilling": r.queue.spilling(),
                        "oldest_pending_seconds": r.queue.oldest_pending().as_secs_f64(),
                        "delivered_per_second": rates.per_second(&Series::Delivered(t.name.clone(), cfg.name.clone())),
                        "p99_send_seconds": rates.p99_send_seconds(&t.name, &cfg.name, &r.latency.snapshot()),
                        "receivers": receivers_status(r),
                    })
                }
                _ => json!({
                    "name": cfg.name,
                    "type": cfg.kind.type_name(),
                    "state": if t.enabled { TargetState::Down.as_str() } else { "disabled" },
                }),
            }
        })
        .collect();
    json!({
        "name": t.name,
        "description": t.description,
        "enabled": t.enabled,
        "source": t.source,
        "file": t.origin.file.display().to_string(),
        "writable": writable(live, &t.origin.file),
        "etag": etag(&t.origin.raw),
        "config": redact(t.origin.raw.clone()),
        "last_verify": live.last_verify.lock().unwrap_or_else(|p| p.into_inner()).get(&t.name).cloned(),
        "status": {
            "matched_per_second": rates.per_second(&Series::Matched(t.name.clone())),
            "filtered_per_second": rates.per_second(&Series::Filtered(t.name.clone())),
            "targets": targets,
        },
    })
}

/// Each receiver of a target that sends to several: its URL, state and last error.
fn receivers_status(target: &crate::targets::Target) -> Value {
    target
        .receivers
        .iter()
        .map(|r| {
            let h = r.health.snapshot();
            json!({
                "url": r.url,
                "state": r.health.state().as_str(),
                "last_error": h.last_error.as_ref().map(|(m, _)| m),
                "last_error_time": h.last_error.as_ref().map(|(_, at)| unix(*at)),
            })
        })
        .collect()
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

enum Change {
    Put,
    Delete,
    Enable(bool),
}

/// The answer to a refused reload: 503 while the relay stops (try again against the next
/// process), 400 for what the config or its targets got wrong.
fn refused(e: &ReloadError) -> StatusCode {
    match e {
        ReloadError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A write through the API, run as a task of its own: a client that hangs up (hyper then drops
/// its handler) cannot stop it between writing the task's file and applying it or putting the
/// file back, so what is on disk stays what runs.
async fn change(
    live: &Arc<Live>,
    loopback: bool,
    name: &str,
    req: Request<Incoming>,
    what: Change,
) -> Resp {
    let (live, name) = (live.clone(), name.to_owned());
    match tokio::spawn(async move { change_now(&live, loopback, &name, req, what).await }).await {
        Ok(r) => r,
        Err(e) => super::live::joined(e).await,
    }
}

/// [`change`]: checked whole, written, applied; see the module docs.
async fn change_now(
    live: &Arc<Live>,
    loopback: bool,
    name: &str,
    req: Request<Incoming>,
    what: Change,
) -> Resp {
    if let Some(r) = may_change(live, loopback) {
        return r;
    }
    let pipeline = live.pipeline();
    let Some(dir) = pipeline.server().admin.tasks_dir.clone() else {
        return method_not_allowed_writes();
    };
    drop(pipeline);
    let Some(config_path) = live.config_path().map(Path::to_path_buf) else {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "this relay was not started from a config file; the task API is read-only",
        );
    };
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = if matches!(what, Change::Put) {
        match read_body(req).await {
            Ok(b) => Some(b),
            Err(r) => return r,
        }
    } else {
        None
    };
    let _writing = live.writes.lock().await;
    let current = find(live, name);
    if let Some(t) = &current
        && !writable(live, &t.origin.file)
    {
        return text(
            StatusCode::CONFLICT,
            format!(
                "task {name:?} is defined in {}; it is read-only through the API (edit that file and reload)",
                t.origin.file.display()
            ),
        );
    }
    if let Some(want) = &if_match {
        let matches = match &current {
            Some(t) => want.trim() == "*" || want.trim() == etag(&t.origin.raw),
            None => false,
        };
        if !matches {
            return text(
                StatusCode::PRECONDITION_FAILED,
                format!(
                    "If-Match {want} does not match task {name:?} as it is now ({}); fetch it again",
                    current
                        .as_ref()
                        .map_or("absent".to_owned(), |t| etag(&t.origin.raw))
                ),
            );
        }
    }
    let file = store::task_file(&dir, name);
    let new_raw: Option<Value> = match (&what, &current, body) {
        (Change::Put, _, Some(raw)) => {
            if !store::valid_name(name) {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{name:?}: a task made through the API needs a name of A-Z a-z 0-9 - _ . (it becomes its file name)"
                    ),
                );
            }
            match task_body(name, &raw) {
                Ok(v) => Some(v),
                Err(why) => return text(StatusCode::BAD_REQUEST, why),
            }
        }
        (Change::Delete, Some(_), _) => None,
        (Change::Enable(on), Some(t), _) => {
            let mut v = t.origin.raw.clone();
            if let Value::Object(m) = &mut v {
                m.insert("enabled".into(), Value::Bool(*on));
            }
            Some(v)
        }
        _ => return not_found(name),
    };
    let new_text = match new_raw.as_ref().map(store::render).transpose() {
        Ok(t) => t,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot write the task: {e}"),
            );
        }
    };
    // Check the whole config as it would be before writing anything (off the runtime's
    // workers: compiling a thousand tasks' regexes takes a while).
    let checked = {
        let (config_path, file, new_text) = (config_path.clone(), file.clone(), new_text.clone());
        super::live::off_worker(move || {
            Config::load_overriding(&config_path, Some((&file, new_text.as_deref()))).map(drop)
        })
        .await
    };
    if let Err(e) = checked {
        return text(StatusCode::BAD_REQUEST, e.to_string());
    }
    let old_text = std::fs::read_to_string(&file).ok();
    let written = match &new_text {
        Some(t) => store::write(&file, t),
        None => store::remove(&file),
    };
    if let Err(e) = written {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", file.display()),
        );
    }
    if let Err(e) = live.reload().await {
        // Put the file back as it was, so what is on disk is what runs.
        let _ = match &old_text {
            Some(t) => store::write(&file, t),
            None => store::remove(&file),
        };
        return text(refused(&e), format!("not applied: {e}"));
    }
    match find(live, name) {
        Some(t) => {
            let mut r = one(live, &t);
            if matches!(what, Change::Put) && current.is_none() {
                *r.status_mut() = StatusCode::CREATED;
            }
            r
        }
        None => text(StatusCode::OK, format!("task {name:?} deleted")),
    }
}

fn method_not_allowed_writes() -> Resp {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "the task API is read-only: set server.admin.tasks_dir to a directory the relay may \
         write, where it keeps one file per task, then restart",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a task body is at most {MAX_BODY} bytes"),
        )),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("could not read the body: {e}"),
        )),
    }
}

/// The PUT body (YAML or JSON) as the task to write, named `name`; why not, for a 400.
fn task_body(name: &str, body: &[u8]) -> Result<Value, String> {
    let mut v: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| format!("the body is not a YAML or JSON task: {e}"))?;
    let Value::Object(m) = &mut v else {
        return Err("the body must be one task: a mapping with filter, labels, targets…".into());
    };
    match m.get("name") {
        None => {
            m.insert("name".into(), Value::String(name.to_owned()));
        }
        Some(Value::String(n)) if n == name => {}
        Some(other) => {
            return Err(format!(
                "name: {other} differs from the task named in the path ({name:?})"
            ));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_and_references_to_them_kept() {
        let v = json!({"targets": [{
            "basic_auth": {"username": "u", "password": "p", "password_file": "/f"},
            "bearer_token": "t", "access_key": {"id": "i", "secret": "s", "secret_env": "E"},
            "sasl": {"password": "k"}, "options": {"sasl.password": "o"}
        }]});
        let r = redact(v);
        let t = &r["targets"][0];
        assert_eq!(t["basic_auth"]["password"], "<secret>");
        assert_eq!(t["basic_auth"]["password_file"], "/f");
        assert_eq!(t["basic_auth"]["username"], "u");
        assert_eq!(t["bearer_token"], "<secret>");
        assert_eq!(t["access_key"]["secret"], "<secret>");
        assert_eq!(t["access_key"]["secret_env"], "E");
        assert_eq!(t["sasl"]["password"], "<secret>");
        assert_eq!(t["options"]["sasl.password"], "<secret>");
    }

    #[test]
    fn etags_follow_content_not_key_order() {
        let a: Value = serde_json::from_str(r#"{"name":"t","filter":"up=1"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"filter":"up=1","name":"t"}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"filter":"up=2","name":"t"}"#).unwrap();
        assert_eq!(etag(&a), etag(&b));
        assert_ne!(etag(&a), etag(&c));
        assert!(etag(&a).starts_with('"') && etag(&a).ends_with('"'));
    }

    #[test]
    fn changes_need_credentials_or_a_loopback_admin_address() {
        // (credentials configured, admin address is loopback) → allowed
        let table = [
            (false, true, true),
            (true, true, true),
            (true, false, true),
            (false, false, false),
        ];
        for (has_auth, loopback, want) in table {
            assert_eq!(
                change_allowed(has_auth, loopback),
                want,
                "{has_auth} {loopback}"
            );
        }
    }

    #[test]
    fn put_bodies_are_one_task_named_as_the_path() {
        let v = task_body("t", b"filter: up=1").unwrap();
        assert_eq!(v["name"], "t");
        assert!(
            task_body("t", b"name: other")
                .unwrap_err()
                .contains("differs")
        );
        assert!(task_body("t", b"[1, 2]").unwrap_err().contains("one task"));
        assert!(task_body("t", b"{{{").unwrap_err().contains("not a YAML"));
    }

    #[test]
    fn credential_schemes_compare_without_case() {
        assert!(authorized(b"bearer abc", "Bearer abc"));
        assert!(authorized(b"BASIC dTpw", "Basic dTpw"));
        assert!(!authorized(b"Bearer abd", "Bearer abc"));
        assert!(!authorized(b"Basic abc", "Bearer abc"));
        assert!(!authorized(b"", "Bearer abc"));
    }
}

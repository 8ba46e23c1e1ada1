//! The status page: `GET /` (sources, tasks and their targets, build and config) and a page
//! per task (`GET /tasks/{name}`: its config, its targets, Enable/Disable).
//!
//! One source of truth: the pages are rendered from the very JSON `GET /api/v1/status`
//! serves ([`status_json`], whose tasks are [`super::api::task_json`]), never from the live
//! structures directly, so what a person reads and what a script reads cannot disagree.
//!
//! HTML is written by hand, every value taken from the JSON going through [`escape`] (a tested
//! function): a compile-time template crate would add a proc-macro dependency tree and its
//! build time for two small pages. No external assets, so it works offline; a few lines of
//! plain JavaScript refresh the page every 10 s and send the Enable/Disable requests.

use super::api::task_json;
use super::live::Live;
use super::rates::Series;
use crate::telemetry::build;
use serde_json::{Value, json};
use std::fmt::Write;

/// Everything the status page shows, as `GET /api/v1/status` serves it. `may_change`: whether
/// this caller may change things (the pages then show Enable/Disable on writable tasks).
pub fn status_json(live: &Live, may_change: bool) -> Value {
    let pipeline = live.pipeline();
    let rates = live.rates();
    let all = live.tasks();
    let sources: Vec<Value> = pipeline
        .source_names()
        .into_iter()
        .map(|name| {
            let tasks: Vec<&str> = all
                .iter()
                .filter(|t| t.source == name)
                .map(|t| t.name.as_str())
                .collect();
            let st = live.metrics().source_status(name);
            json!({
                "name": name,
                "requests_per_second": rates.per_second(&Series::Requests(name.to_owned())),
                "received_per_second": rates.per_second(&Series::Received(name.to_owned())),
                "refused": st.refused,
                "last_request_time": st.last_request.map(unix),
                "tasks": tasks,
                // A Kafka source: the partitions it owns here and their lag (else empty).
                "kafka_partitions": live.metrics().kafka_source.partitions(name),
            })
        })
        .collect();
    let tasks: Vec<Value> = all.iter().map(|t| task_json(live, t)).collect();
    let c = live.metrics().config();
    json!({
        "build": { "version": build::VERSION, "revision": build::REVISION },
        "config": {
            "file": live.config_path().map(|p| p.display().to_string()),
            "hash": format!("{:016x}", live.config_hash()),
            "last_reload_successful": c.last_reload_successful.get() == 1,
            "last_reload_success_time": c.last_reload_success_timestamp_seconds.get(),
        },
        "may_change": may_change,
        "sources": sources,
        "tasks": tasks,
    })
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `s` safe as HTML text and as a double- or single-quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one URL path segment: everything but `A-Z a-z 0-9 - _ . ~` percent-encoded.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The inverse of [`path_segment`]; `None` for a bad escape or bytes that are not UTF-8.
pub fn decode_segment(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A JSON string field, escaped; `""` when absent.
fn s(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

/// A rate, or `–` before the relay has two readings.
fn rate(v: &Value) -> String {
    v.as_f64().map_or("–".to_owned(), |r| format!("{r:.1}"))
}

/// A latency in seconds as `12.3 ms` (or `1.25 s`); `–` when absent.
fn latency(v: &Value) -> String {
    match v.as_f64() {
        None => "–".to_owned(),
        Some(x) if x >= 1.0 => format!("{x:.2} s"),
        Some(x) => format!("{:.1} ms", x * 1e3),
    }
}

/// `2026-11-25 09:30:00 UTC` from seconds since the epoch; `–` when absent or zero.
fn time(v: &Value) -> String {
    let Some(t) = v.as_f64().filter(|&t| t > 0.0) else {
        return "–".to_owned();
    };
    let secs = t as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

const STYLE: &str = "body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#212529}\
header{background:#343a40;color:#fff;padding:.6em 1em}header a{color:#fff;text-decoration:none;font-weight:bold}\
main{padding:0 1em 2em}h2{font-size:1.3em;margin-top:1.4em}table{border-collapse:collapse;width:100%;margin:.5em 0}\
th,td{border:1px solid #dee2e6;padding:.35em .5em;text-align:left;vertical-align:top}th{background:#f8f9fa}\
.wrap{overflow-x:auto}.state{padding:.1em .5em;border-radius:.25em;color:#fff;white-space:nowrap}\
.healthy{background:#28a745}.retrying{background:#fd7e14}.down{background:#dc3545}.refusing{background:#6f42c1}\
.disabled,.restarting{background:#6c757d}.bar{display:inline-block;width:6em;height:.8em;background:#e9ecef;border-radius:.2em}\
.bar span{display:block;height:100%;background:#007bff;border-radius:.2em}.err{color:#dc3545}\
pre{background:#f8f9fa;padding:.6em;overflow-x:auto}button{font-size:1em;padding:.3em .9em;margin-right:.5em}";

/// The page around `body`.
fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\">\
<title>{title}</title><style>{STYLE}</style></head>\
<body><header><a href=\"/\">promrelay</a></header><main>{body}</main>\
<script>\
function act(b){{b.disabled=true;fetch(b.dataset.url,{{method:'POST'}}).then(function(r){{return r.text().then(function(t){{if(!r.ok)alert(t);location.reload();}});}});}}\
var paused=false;\
function tap(b){{paused=true;b.disabled=true;var sel=document.getElementById('tap-target');\
fetch(b.dataset.url+'?limit=20&target='+encodeURIComponent(sel.value),{{headers:{{Accept:'application/x-ndjson'}}}})\
.then(function(r){{return r.text();}}).then(function(t){{var tb=document.getElementById('tap-rows');tb.textContent='';\
t.split('\\n').forEach(function(l){{if(!l)return;var o=JSON.parse(l);var tr=document.createElement('tr');\
if(o.trailer){{document.getElementById('tap-trailer').textContent=o.trailer.samples+' samples, '+o.trailer.skipped+' skipped';return;}}\
var ls=[];for(var k in o){{if(k!=='value'&&k!=='timestamp')ls.push(k+'=\\x22'+o[k]+'\\x22');}}\
[ls.join(', '),o.value,new Date(+o.timestamp).toISOString()].forEach(function(c){{var td=document.createElement('td');td.textContent=c;tr.appendChild(td);}});\
tb.appendChild(tr);}});b.disabled=false;}});}}\
setInterval(function(){{if(!document.hidden&&!paused)location.reload();}},10000);\
</script></body></html>\n",
        title = escape(title)
    )
}

/// The fill of a target's queue, or of its disk budget when it has one.
fn fill(t: &Value) -> String {
    let (used, cap, what) = match t["disk_budget_bytes"].as_f64() {
        Some(cap) => (t["disk_bytes"].as_f64(), cap, "disk"),
        None => (
            t["queue_samples"].as_f64(),
            t["queue_capacity"].as_f64().unwrap_or(0.0),
            "queue",
        ),
    };
    let Some(used) = used else {
        return "–".to_owned();
    };
    let pct = if cap > 0.0 {
        (used / cap * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!(
        "<span class=\"bar\" title=\"{what} {used} of {cap}\"><span style=\"width:{pct:.0}%\"></span></span> {pct:.0}%"
    )
}

/// The targets of one task as table rows.
fn target_rows(out: &mut String, task: &Value) {
    for t in task["status"]["targets"].as_array().into_iter().flatten() {
        let state = s(&t["state"]);
        let error = if t["last_error"].is_string() {
            format!(
                "<span class=\"err\">{}</span><br><small>{}</small>",
                s(&t["last_error"]),
                time(&t["last_error_time"])
            )
        } else {
            String::new()
        };
        let oldest = t["oldest_pending_seconds"]
            .as_f64()
            .map_or("–".to_owned(), |o| format!("{o:.1} s"));
        let _ = write!(
            out,
            "<tr class=\"target\" data-task=\"{task}\" data-target=\"{name}\"><td>{name}</td><td>{kind}</td>\
<td><span class=\"state {state}\">{state}</span></td><td class=\"last-error\">{error}</td><td>{fill}</td>\
<td>{oldest}</td><td class=\"delivered\">{delivered}</td><td class=\"p99\">{p99}</td></tr>",
            task = s(&task["name"]),
            name = s(&t["name"]),
            kind = s(&t["type"]),
            fill = fill(t),
            delivered = rate(&t["delivered_per_second"]),
            p99 = latency(&t["p99_send_seconds"]),
        );
    }
}

const TARGET_HEAD: &str = "<tr><th>target</th><th>type</th><th>state</th><th>last error</th>\
<th>queue / disk</th><th>oldest undelivered</th><th>delivered/s</th><th>p99 send</th></tr>";

/// Kept %: matched over matched + filtered, over the last minute.
fn kept(status: &Value) -> String {
    match (
        status["matched_per_second"].as_f64(),
        status["filtered_per_second"].as_f64(),
    ) {
        (Some(m), Some(f)) if m + f > 0.0 => format!("{:.1}%", m / (m + f) * 100.0),
        _ => "–".to_owned(),
    }
}

/// The filter as written: a string, or a list of matchers.
fn filter_text(config: &Value) -> String {
    match &config["filter"] {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        Value::String(f) => f.clone(),
        other => other.to_string(),
    }
}

/// Labels as written: `k=v, …`.
fn labels_text(config: &Value) -> String {
    match &config["labels"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

/// `GET /`: the page of the whole relay, from [`status_json`].
pub fn render_index(status: &Value) -> String {
    let mut b = String::new();
    b.push_str("<h2>Sources</h2><div class=\"wrap\"><table id=\"sources\"><tr><th>source</th><th>requests/s</th><th>received samples/s</th><th>refused (by reason, since start)</th><th>last request</th><th>tasks</th></tr>");
    for src in status["sources"].as_array().into_iter().flatten() {
        let tasks: Vec<String> = src["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        let refused: Vec<String> = src["refused"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(reason, n)| format!("{}: {n}", escape(reason)))
            .collect();
        let _ = write!(
            b,
            "<tr class=\"source\"><td>{}</td><td class=\"requests\">{}</td><td class=\"received\">{}</td>\
<td class=\"refused\">{}</td><td>{}</td><td>{}</td></tr>",
            s(&src["name"]),
            rate(&src["requests_per_second"]),
            rate(&src["received_per_second"]),
            if refused.is_empty() {
                "none".to_owned()
            } else {
                refused.join(", ")
            },
            time(&src["last_request_time"]),
            tasks.join(", ")
        );
    }
    b.push_str("</table></div><h2>Tasks</h2>");
    for task in status["tasks"].as_array().into_iter().flatten() {
        let name = task["name"].as_str().unwrap_or_default();
        let st = &task["status"];
        let _ = write!(
            b,
            "<div class=\"wrap\"><table class=\"task\" data-task=\"{ename}\"><tr><th colspan=\"7\">\
<a href=\"/tasks/{link}\">{ename}</a> {desc}</th></tr>\
<tr><td colspan=\"7\">enabled: <b class=\"enabled\">{enabled}</b> · source: {source} · \
filter: <code>{filter}</code> · labels: <code>{labels}</code> · \
matched/s: <b class=\"matched\">{matched}</b> · kept: {kept}</td></tr>{TARGET_HEAD}",
            ename = escape(name),
            link = path_segment(name),
            desc = s(&task["description"]),
            enabled = task["enabled"].as_bool().unwrap_or(false),
            source = s(&task["source"]),
            filter = escape(&filter_text(&task["config"])),
            labels = escape(&labels_text(&task["config"])),
            matched = rate(&st["matched_per_second"]),
            kept = kept(st),
        );
        target_rows(&mut b, task);
        b.push_str("</table></div>");
    }
    build_info(&mut b, status);
    document("promrelay status", &b)
}

/// Build and config info, at the foot of the index page.
fn build_info(b: &mut String, status: &Value) {
    let c = &status["config"];
    let _ = write!(
        b,
        "<h2>Build and config</h2><table id=\"build\"><tr><th>version</th><td>{} (revision {})</td></tr>\
<tr><th>config file</th><td>{}</td></tr><tr><th>config hash</th><td>{}</td></tr>\
<tr><th>last reload</th><td>{} at {}</td></tr></table>",
        s(&status["build"]["version"]),
        s(&status["build"]["revision"]),
        s(&c["file"]),
        s(&c["hash"]),
        if c["last_reload_successful"].as_bool() == Some(true) {
            "succeeded"
        } else {
            "<span class=\"err\">failed</span>"
        },
        time(&c["last_reload_success_time"]),
    );
}

/// The last verify result (`last_verify`, a [`super::verify::TaskReport`]) and a button to run it.
fn verify_section(b: &mut String, task: &Value, name: &str) {
    let _ = write!(
        b,
        "<h3>Verify</h3><p><button id=\"verify\" data-url=\"/api/v1/tasks/{}/verify\" onclick=\"act(this)\">Verify now</button></p>",
        path_segment(name)
    );
    let v = &task["last_verify"];
    if !v.is_object() {
        b.push_str("<p><small>Not verified since the relay started.</small></p>");
        return;
    }
    let _ = write!(
        b,
        "<p>Last run {}:</p><pre id=\"last-verify\">",
        time(&v["time"])
    );
    for t in v["targets"].as_array().into_iter().flatten() {
        let _ = writeln!(b, "target {} ({})", s(&t["name"]), s(&t["type"]));
        for c in t["checks"].as_array().into_iter().flatten() {
            let mark = match c["outcome"].as_str() {
                Some("ok") => "✓",
                Some("failed") => "✗",
                _ => "-",
            };
            let _ = write!(b, "  {mark} {}: {}", s(&c["check"]), s(&c["detail"]));
            if c["hint"].is_string() {
                let _ = write!(b, " — fix: {}", s(&c["hint"]));
            }
            b.push('\n');
        }
    }
    b.push_str("</pre>");
}

/// The tap: the next 20 samples a target receives, fetched by the page's script into a
/// table (cells filled with `textContent`, so nothing from the data becomes markup).
fn tap_section(b: &mut String, task: &Value, name: &str) {
    let _ = write!(b, "<h3>Tap</h3><p>target: <select id=\"tap-target\">");
    for t in task["status"]["targets"].as_array().into_iter().flatten() {
        let _ = write!(b, "<option>{}</option>", s(&t["name"]));
    }
    let _ = write!(
        b,
        "</select> <button id=\"tap\" data-url=\"/api/v1/tasks/{}/tap\" onclick=\"tap(this)\">Show the next 20 samples</button> \
<small id=\"tap-trailer\"></small></p><div class=\"wrap\"><table><thead><tr><th>labels</th><th>value</th><th>timestamp</th></tr></thead>\
<tbody id=\"tap-rows\"></tbody></table></div>",
        path_segment(name)
    );
}

/// `GET /tasks/{name}`: one task of [`status_json`] (`task` is one of its `tasks`).
pub fn render_task(task: &Value, may_change: bool) -> String {
    let name = task["name"].as_str().unwrap_or_default();
    let mut b = String::new();
    let enabled = task["enabled"].as_bool().unwrap_or(false);
    let _ = write!(
        b,
        "<h2>Task {ename}</h2><p>{desc}</p><p>enabled: <b class=\"enabled\">{enabled}</b> · \
source: {source} · file: <code>{file}</code> · matched/s: <b class=\"matched\">{matched}</b> · \
kept: {kept}</p>",
        ename = escape(name),
        desc = s(&task["description"]),
        source = s(&task["source"]),
        file = s(&task["file"]),
        matched = rate(&task["status"]["matched_per_second"]),
        kept = kept(&task["status"]),
    );
    if may_change && task["writable"].as_bool() == Some(true) {
        let (action, label) = if enabled {
            ("disable", "Disable")
        } else {
            ("enable", "Enable")
        };
        let _ = write!(
            b,
            "<p><button id=\"{action}\" data-url=\"/api/v1/tasks/{link}/{action}\" onclick=\"act(this)\">{label}</button></p>",
            link = path_segment(name),
        );
    } else if task["writable"].as_bool() != Some(true) {
        b.push_str("<p><small>Read-only here: this task is defined in a config file, not in <code>server.admin.tasks_dir</code>.</small></p>");
    } else {
        b.push_str("<p><small>Read-only for you: changes need the admin credentials or a loopback admin address.</small></p>");
    }
    b.push_str("<h3>Targets</h3><div class=\"wrap\"><table class=\"task\">");
    b.push_str(TARGET_HEAD);
    target_rows(&mut b, task);
    b.push_str("</table></div>");
    verify_section(&mut b, task, name);
    tap_section(&mut b, task, name);
    b.push_str("<h3>Config</h3>");
    let yaml = serde_yaml_ng::to_string(&task["config"]).unwrap_or_default();
    let _ = write!(b, "<pre id=\"config\">{}</pre>", escape(&yaml));
    document(&format!("promrelay task {name}"), &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_markup_and_quotes_inert() {
        let table = [
            ("plain", "plain"),
            ("<script>", "&lt;script&gt;"),
            ("a&b", "a&amp;b"),
            ("\"x\" 'y'", "&quot;x&quot; &#39;y&#39;"),
            ("é ✓", "é ✓"),
            ("&amp;", "&amp;amp;"),
        ];
        for (input, want) in table {
            assert_eq!(escape(input), want, "{input}");
        }
    }

    #[test]
    fn path_segments_round_trip() {
        for name in ["ecs-to-central", "a b/c?d#e%", "ünï", ""] {
            let seg = path_segment(name);
            assert!(!seg.contains(['/', ' ', '?', '#']), "{seg}");
            assert_eq!(decode_segment(&seg).as_deref(), Some(name));
        }
        assert_eq!(decode_segment("%zz"), None);
        assert_eq!(decode_segment("%4"), None);
    }

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(time(&json!(0)), "–");
        assert_eq!(time(&Value::Null), "–");
        assert_eq!(time(&json!(1_000_000_000.5)), "2001-09-09 01:46:40 UTC");
        assert_eq!(time(&json!(951_782_400)), "2000-02-29 00:00:00 UTC");
    }

    fn status() -> Value {
        json!({
            "build": {"version": "0.1.0", "revision": "abc"},
            "config": {"file": "/etc/p.yaml", "hash": "00ff", "last_reload_successful": true,
                       "last_reload_success_time": 1_000_000_000.0},
            "may_change": true,
            "sources": [{"name": "default", "received_per_second": 12.0, "requests_per_second": 2.0,
                         "refused": {"unauthorized": 3, "<x>": 1}, "last_request_time": 1_000_000_000.0,
                         "tasks": ["<t>"]}],
            "tasks": [{
                "name": "<t>", "description": "d<b>", "enabled": true, "source": "default",
                "file": "/x", "writable": true,
                "config": {"filter": ["up{job=\"a<b\"}"], "labels": {"k": "v&"}},
                "status": {"matched_per_second": 3.0, "filtered_per_second": 1.0, "targets": [
                    {"name": "rw", "type": "remote_write", "state": "down",
                     "last_error": "connect <refused>", "last_error_time": 1_000_000_000.0,
                     "queue_samples": 50, "queue_capacity": 100, "oldest_pending_seconds": 2.0,
                     "delivered_per_second": null, "p99_send_seconds": 0.0123}
                ]}
            }]
        })
    }

    #[test]
    fn the_index_shows_every_value_of_the_json_escaped() {
        let html = render_index(&status());
        assert!(!html.contains("<t>") && !html.contains("<b>") && !html.contains("<refused>"));
        for want in [
            "&lt;t&gt;",
            "d&lt;b&gt;",
            "up{job=&quot;a&lt;b&quot;}",
            "k=v&amp;",
            "<b class=\"matched\">3.0</b>",
            "kept: 75.0%",
            "<span class=\"state down\">down</span>",
            "connect &lt;refused&gt;",
            "2001-09-09 01:46:40 UTC",
            "width:50%",
            "<td class=\"received\">12.0</td>",
            "<td class=\"requests\">2.0</td>",
            "&lt;x&gt;: 1, unauthorized: 3",
            "href=\"/tasks/%3Ct%3E\"",
            "0.1.0 (revision abc)",
            "<td class=\"p99\">12.3 ms</td>",
        ] {
            assert!(html.contains(want), "{want} missing in {html}");
        }
    }

    #[test]
    fn buttons_only_for_writable_tasks_and_callers_who_may_change() {
        let task = &status()["tasks"][0];
        let html = render_task(task, true);
        assert!(
            html.contains("data-url=\"/api/v1/tasks/%3Ct%3E/disable\""),
            "{html}"
        );
        assert!(!render_task(task, false).contains("/disable"));
        let mut ro = task.clone();
        ro["writable"] = json!(false);
        assert!(!render_task(&ro, true).contains("/disable"));
        // Verify changes nothing: offered to every caller.
        assert!(render_task(&ro, false).contains("id=\"verify\""));
        let mut off = task.clone();
        off["enabled"] = json!(false);
        assert!(render_task(&off, true).contains("id=\"enable\""));
    }
}

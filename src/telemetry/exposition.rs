//! `/metrics` in the format the scraper asks for, chosen from its `Accept` header the way
//! Prometheus' own client libraries choose (client_golang's `expfmt.Negotiate`): OpenMetrics 1.0
//! when it is accepted with a higher or equal preference than the text format, the text format
//! 0.0.4 otherwise, including when there is no `Accept` header at all (curl, plain GETs).
//!
//! prometheus-client writes OpenMetrics only. The text format is derived from that output
//! line by line: the two share sample lines, and differ only in the descriptors (a counter's
//! `# TYPE` names the family without `_total` in OpenMetrics, with it in text 0.0.4; `info`
//! and `unknown` have no text equivalent), in `# UNIT` and in the closing `# EOF`, which a
//! text parser refuses. The OpenMetrics body ends with exactly one `# EOF\n`: a second newline
//! after it makes Prometheus mark the target down (`unexpected data after # EOF`).

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: Prometheus' classic text format.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` answered with this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Pick the format for an `Accept` header value (`None`: no header).
    ///
    /// Each media range is weighed by its `q` (default 1); OpenMetrics is chosen when
    /// `application/openmetrics-text` (version 1.0.0, 0.0.1 or none) is accepted at least as
    /// much as any range the text format satisfies. Prometheus 2.42 sends
    /// `application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut openmetrics = 0.0f32;
        let mut text = 0.0f32;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().trim_matches('"').to_owned()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if matches!(version.as_deref(), None | Some("1.0.0" | "0.0.1")) =>
                {
                    openmetrics = openmetrics.max(q);
                }
                "text/plain" if matches!(version.as_deref(), None | Some("0.0.4")) => {
                    text = text.max(q);
                }
                "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Turn prometheus-client's OpenMetrics output into the text format 0.0.4 (see the module docs).
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // `# HELP` comes before `# TYPE`, but its name depends on the type: hold it until then.
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.rsplit_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "gauge" => ("", "gauge"),
                "histogram" => ("", "histogram"),
                "summary" => ("", "summary"),
                "info" => ("_info", "gauge"),
                _ => ("", "untyped"),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
        } else if line.starts_with("# ") {
            // `# UNIT`, `# EOF`: OpenMetrics only.
        } else if !line.is_empty() {
            // An exemplar (` # {…} v`) has no place in the text format.
            let sample = line.split_once(" # {").map_or(line, |(s, _)| s);
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_like_the_prometheus_client_libraries() {
        let prometheus_2_42 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, want) in [
            (None, Format::Text),
            (Some(""), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain"), Format::Text),
            (Some("text/plain;version=0.0.4"), Format::Text),
            (Some(prometheus_2_42), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;version=2.0.0"),
                Format::Text,
            ),
            (
                Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"),
                Format::Text,
            ),
            (Some("application/json"), Format::Text),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn text_format_names_counters_with_total_and_drops_openmetrics_only_lines() {
        let om = "# HELP promrelay_requests Ingest requests.\n\
                  # TYPE promrelay_requests counter\n\
                  promrelay_requests_total{source=\"default\",code=\"204\"} 3\n\
                  # HELP promrelay_send_duration_seconds Time of one send.\n\
                  # TYPE promrelay_send_duration_seconds histogram\n\
                  # UNIT promrelay_send_duration_seconds seconds\n\
                  promrelay_send_duration_seconds_sum 0.5\n\
                  promrelay_send_duration_seconds_count 1\n\
                  promrelay_send_duration_seconds_bucket{le=\"+Inf\"} 1\n\
                  # HELP x An info.\n\
                  # TYPE x info\n\
                  x_info{v=\"1\"} 1\n\
                  # EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP promrelay_requests_total Ingest requests.\n\
             # TYPE promrelay_requests_total counter\n\
             promrelay_requests_total{source=\"default\",code=\"204\"} 3\n\
             # HELP promrelay_send_duration_seconds Time of one send.\n\
             # TYPE promrelay_send_duration_seconds histogram\n\
             promrelay_send_duration_seconds_sum 0.5\n\
             promrelay_send_duration_seconds_count 1\n\
             promrelay_send_duration_seconds_bucket{le=\"+Inf\"} 1\n\
             # HELP x_info An info.\n\
             # TYPE x_info gauge\n\
             x_info{v=\"1\"} 1\n"
        );
    }
}

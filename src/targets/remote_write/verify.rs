//! `promrelay verify` for a remote_write target, in the order a delivery fails: the host
//! resolves, its port accepts a connection, TLS (https) shakes hands and the receiver's
//! certificate is trusted, valid for the host and not expired, an empty `WriteRequest`
//! is accepted (receiver on, credentials good), and, when the receiver is a Prometheus
//! (`/api/v1/status/buildinfo` answers with the same credentials), its version is at least
//! 2.39 and it has an `out_of_order_time_window`. A failed step skips the ones after it.

use super::RemoteWriteConfig;
use super::service::RemoteWriteService;
use crate::targets::check::Check;
use bytes::Bytes;
use hyper::{StatusCode, Uri};
use std::time::Duration;

/// The oldest Prometheus that takes out-of-order samples (the delivery docs' minimum).
const MIN_VERSION: (u64, u64) = (2, 39);

/// Probe `cfg`; see the module docs.
/// (`_produce_test` is for Kafka; an empty write is always sent here.)
pub async fn verify(cfg: &RemoteWriteConfig, _produce_test: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    let url = &cfg.url;
    let https = url.scheme_str() == Some("https");
    let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let timeout = cfg.timeout.min(Duration::from_secs(10));
    let after = |checks: &mut Vec<Check>, from: &[&'static str], why: &str| {
        for c in from {
            checks.push(Check::skipped(c, why.to_owned()));
        }
    };
    const LATER: [&str; 6] = [
        "connect",
        "tls",
        "certificate",
        "remote_write receiver",
        "prometheus version",
        "out_of_order_time_window",
    ];

    // DNS.
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                checks.push(Check::failed(
                    "dns",
                    format!("{host}: {e}"),
                    "check the host name in the target's url",
                ));
                after(&mut checks, &LATER, "the host does not resolve");
                return checks;
            }
            Err(_) => {
                checks.push(Check::failed(
                    "dns",
                    format!("{host}: no answer within {timeout:?}"),
                    "check the host name in the target's url and this machine's DNS",
                ));
                after(&mut checks, &LATER, "the host does not resolve");
                return checks;
            }
        };
    let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    checks.push(Check::ok("dns", format!("{host} → {}", shown.join(", "))));

    // TCP.
    let stream = match connect(&addrs, timeout).await {
        Ok(s) => {
            checks.push(Check::ok(
                "connect",
                format!("{host}:{port} accepts connections"),
            ));
            s
        }
        Err(e) => {
            checks.push(Check::failed(
                "connect",
                format!("{host}:{port}: {e}"),
                "is the receiver running and listening on that port? check the url's host and port, and any firewall between",
            ));
            after(&mut checks, &LATER[1..], "no connection");
            return checks;
        }
    };

    // TLS: the handshake, then the certificate.
    if https {
        match super::certificate::probe(cfg, host, stream, timeout).await {
            Ok((tls, cert)) => {
                let bad = cert.outcome == crate::targets::check::Outcome::Failed;
                checks.push(tls);
                checks.push(cert);
                if bad {
                    after(&mut checks, &LATER[3..], "the certificate is refused");
                    return checks;
                }
            }
            Err(failed) => {
                checks.push(failed);
                after(&mut checks, &LATER[2..], "no TLS connection");
                return checks;
            }
        }
    } else {
        drop(stream);
        checks.push(Check::skipped("tls", "the url is http://"));
        checks.push(Check::skipped("certificate", "the url is http://"));
    }

    // An empty WriteRequest: what the receiver says to a write with these credentials.
    let service = match RemoteWriteService::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::failed(
                "remote_write receiver",
                e,
                "fix the target's TLS or credential settings",
            ));
            after(&mut checks, &LATER[4..], "no client");
            return checks;
        }
    };
    // Snappy block of zero bytes: the encoding of an empty WriteRequest.
    match service.post(Bytes::from_static(&[0])).await {
        Err(e) => {
            checks.push(Check::failed(
                "remote_write receiver",
                e,
                "the receiver accepted the connection but did not answer; check the url",
            ));
            after(&mut checks, &LATER[4..], "no answer to a write");
            return checks;
        }
        Ok((status, _, body)) => {
            checks.push(receiver_check(status, &body));
        }
    }

    // A Prometheus? Its version and out-of-order window.
    let base = api_base(url);
    let buildinfo = match base
        .as_ref()
        .map(|b| format!("{b}/api/v1/status/buildinfo"))
        .map(|u| u.parse::<Uri>())
    {
        Some(Ok(u)) => u,
        _ => {
            after(
                &mut checks,
                &LATER[4..],
                "the url does not end in /api/v1/write, so the Prometheus API cannot be found",
            );
            return checks;
        }
    };
    let version = match service.get(buildinfo).await {
        Ok((StatusCode::OK, body)) => serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["data"]["version"].as_str().map(str::to_owned)),
        Ok((status, _)) => {
            after(
                &mut checks,
                &LATER[4..],
                &format!(
                    "/api/v1/status/buildinfo answered {status}: not a Prometheus, or its API needs other credentials"
                ),
            );
            return checks;
        }
        Err(e) => {
            after(
                &mut checks,
                &LATER[4..],
                &format!("/api/v1/status/buildinfo did not answer ({e}): not a Prometheus"),
            );
            return checks;
        }
    };
    let Some(version) = version else {
        after(
            &mut checks,
            &LATER[4..],
            "/api/v1/status/buildinfo has no data.version: not a Prometheus",
        );
        return checks;
    };
    checks.push(version_check(&version));

    let config_url = format!("{}/api/v1/status/config", base.unwrap_or_default());
    let yaml = match config_url.parse::<Uri>() {
        Ok(u) => match service.get(u).await {
            Ok((StatusCode::OK, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["data"]["yaml"].as_str().map(str::to_owned)),
            _ => None,
        },
        Err(_) => None,
    };
    match yaml {
        None => checks.push(Check::skipped(
            "out_of_order_time_window",
            "/api/v1/status/config did not answer with the config",
        )),
        Some(y) => checks.push(window_check(&y)),
    }
    checks
}

async fn connect(
    addrs: &[std::net::SocketAddr],
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    let mut last = String::from("no address");
    for a in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no connection within {timeout:?}"),
        }
    }
    Err(last)
}

/// What the answer to an empty write means.
fn receiver_check(status: StatusCode, body: &[u8]) -> Check {
    const C: &str = "remote_write receiver";
    let said = String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_owned();
    let detail = if said.is_empty() {
        format!("an empty write was answered {status}")
    } else {
        format!("an empty write was answered {status}: {said}")
    };
    match status.as_u16() {
        200..=299 => Check::ok(C, format!("{detail} (receiver on, credentials accepted)")),
        401 | 403 => Check::failed(
            C,
            detail,
            "the receiver refuses these credentials: check the target's basic_auth, bearer_token or access_key",
        ),
        404 | 405 => Check::failed(
            C,
            detail,
            "the remote-write receiver is not enabled: start Prometheus with --web.enable-remote-write-receiver (and check the url's path, /api/v1/write)",
        ),
        _ => Check::failed(
            C,
            detail,
            "the receiver does not take writes here; check the url",
        ),
    }
}

/// `scheme://authority/prefix` of a url ending in `/api/v1/write`.
fn api_base(url: &Uri) -> Option<String> {
    let prefix = url.path().strip_suffix("/api/v1/write")?;
    Some(format!(
        "{}://{}{prefix}",
        url.scheme_str()?,
        url.authority()?
    ))
}

/// `2.53.1` (or `3.0.0-rc.0`) against [`MIN_VERSION`].
fn version_check(version: &str) -> Check {
    const C: &str = "prometheus version";
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= MIN_VERSION {
        Check::ok(C, format!("Prometheus {version}"))
    } else {
        Check::failed(
            C,
            format!("Prometheus {version}"),
            format!(
                "upgrade the receiving Prometheus to {}.{} or later: older ones refuse out-of-order samples",
                MIN_VERSION.0, MIN_VERSION.1
            ),
        )
    }
}

/// `storage.tsdb.out_of_order_time_window` in the config Prometheus runs (its YAML).
fn window_check(yaml: &str) -> Check {
    const C: &str = "out_of_order_time_window";
    let window = serde_yaml_ng::from_str::<serde_json::Value>(yaml)
        .ok()
        .and_then(|v| {
            v["storage"]["tsdb"]["out_of_order_time_window"]
                .as_str()
                .map(str::to_owned)
        });
    let positive = window.as_deref().is_some_and(|w| {
        w.split(|c: char| !c.is_ascii_digit())
            .any(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
    });
    match window {
        Some(w) if positive => Check::ok(C, format!("storage.tsdb.out_of_order_time_window: {w}")),
        w => Check::failed(
            C,
            format!(
                "storage.tsdb.out_of_order_time_window is {}",
                w.unwrap_or_else(|| "not set".to_owned())
            ),
            "set storage.tsdb.out_of_order_time_window (e.g. 30m) in the receiving Prometheus' config: without it, samples the relay retries or replays late are refused as out of order",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::check::Outcome;

    #[test]
    fn answers_to_an_empty_write_map_to_the_faq() {
        let table = [
            (204, Outcome::Ok, None),
            (401, Outcome::Failed, Some("credentials")),
            (403, Outcome::Failed, Some("credentials")),
            (
                404,
                Outcome::Failed,
                Some("--web.enable-remote-write-receiver"),
            ),
            (
                405,
                Outcome::Failed,
                Some("--web.enable-remote-write-receiver"),
            ),
            (500, Outcome::Failed, Some("check the url")),
        ];
        for (code, outcome, hint) in table {
            let c = receiver_check(StatusCode::from_u16(code).unwrap(), b"why");
            assert_eq!(c.outcome, outcome, "{code}");
            match hint {
                Some(h) => assert!(c.hint.unwrap().contains(h), "{code}"),
                None => assert!(c.hint.is_none()),
            }
        }
    }

    #[test]
    fn versions_from_2_39_on_pass() {
        for (v, ok) in [
            ("2.38.0", false),
            ("2.39.0", true),
            ("2.53.1", true),
            ("3.0.0-rc.0", true),
            ("1.8.2", false),
            ("", false),
        ] {
            assert_eq!(version_check(v).outcome == Outcome::Ok, ok, "{v}");
        }
    }

    #[test]
    fn the_window_must_be_set_and_positive() {
        let ok = "storage:\n  tsdb:\n    out_of_order_time_window: 30m\n";
        let zero = "storage:\n  tsdb:\n    out_of_order_time_window: 0s\n";
        assert_eq!(window_check(ok).outcome, Outcome::Ok);
        assert_eq!(window_check(zero).outcome, Outcome::Failed);
        assert_eq!(window_check("global: {}\n").outcome, Outcome::Failed);
    }

    #[test]
    fn the_api_base_is_the_write_url_without_its_path() {
        let u: Uri = "https://p:9090/prom/api/v1/write".parse().unwrap();
        assert_eq!(api_base(&u).as_deref(), Some("https://p:9090/prom"));
        let u: Uri = "http://p/receive".parse().unwrap();
        assert_eq!(api_base(&u), None);
    }
}

//! The remote_write target over TLS with basic auth, against a real Prometheus 2.42 serving
//! HTTPS with `basic_auth_users` (its `--web.config.file`): the right credentials deliver, the
//! wrong ones are answered 401, which the relay must drop (never retry) and count as refused.
//! And the other direction: promrelay serving HTTPS (rustls) with a bearer token read from an
//! environment variable and its admin endpoints on a separate address, written to by real
//! Prometheus senders with the right and a wrong token.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use promrelay::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// bcrypt of "s3cret" (made once with Python's `crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH))`).
const S3CRET_BCRYPT: &str = "$2b$12$ox2GqsHF/MRnksriMl9s2.4PVARwKGE3/xikwcO6aA.HtLdNHVkfK";

/// A client certificate (`client.pem`, `client.key`) signed by the CA of [`make_certs`].
fn make_client_cert(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=prometheus-sender",
        ],
    );
    std::fs::write(
        dir.join("client-ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client-ext.cnf",
        ],
    );
}

/// GET over TLS trusting `ca`, with basic auth.
async fn tls_get(url: &str, ca: &Path, user: &str, password: &str) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let auth = format!("Basic {}", base64(&format!("{user}:{password}")));
    let req = hyper::Request::get(url)
        .header("Authorization", auth)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_over_tls_with_basic_auth_and_drops_what_the_target_refuses() {
    let certs = TempDir::new("certs");
    make_certs(certs.path());
    let web = format!(
        "tls_server_config:\n  cert_file: {dir}/server.pem\n  key_file: {dir}/server.key\nbasic_auth_users:\n  relay: {S3CRET_BCRYPT}\n",
        dir = certs.path().display()
    );
    let receiver = Prometheus::start_with(RECEIVER_CONFIG, true, Some(&web)).await;
    std::fs::write(certs.path().join("good.pw"), "s3cret\n").unwrap();
    let url = format!("https://127.0.0.1:{}/api/v1/write", receiver.port);
    let ca = certs.path().join("ca.pem");
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: secure
    targets:
      - name: good
        type: remote_write
        url: {url}
        basic_auth: {{username: relay, password_file: "{pw}"}}
        tls: {{ca_file: "{ca}"}}
        queue: {{batch_send_deadline: 100ms}}
      - name: wrong-password
        type: remote_write
        url: {url}
        basic_auth: {{username: relay, password: nope}}
        tls: {{ca_file: "{ca}"}}
        queue: {{batch_send_deadline: 100ms}}
"#,
        pw = certs.path().join("good.pw").display(),
        ca = ca.display(),
    ))
    .await;
    let ts = now_ms() - 10_000;
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label::new("__name__", "tls_delivered"),
                Label::new("job", "secure"),
            ],
            samples: vec![Sample {
                value: 42.0,
                timestamp: ts,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
    assert_eq!(r.status, 204, "{}", r.text());

    let query = format!(
        "https://127.0.0.1:{}/api/v1/query?query=tls_delivered&time={}",
        receiver.port,
        now_ms() as f64 / 1000.0
    );
    let body = eventually(
        Duration::from_secs(30),
        "the sample at the TLS receiver",
        || async {
            let body = tls_get(&query, &ca, "relay", "s3cret").await?;
            if body.contains("\"42\"") {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
    .await;
    assert!(body.contains("\"job\":\"secure\""), "{body}");
    // Prometheus really checks the password: the query fails without it.
    assert!(
        tls_get(&query, &ca, "relay", "nope")
            .await
            .unwrap_err()
            .contains("401")
    );

    // The target with the wrong password got 401: dropped once, counted, not retried.
    relay
        .wait_metric(
            "promrelay_target_dropped_samples_total{task=\"secure\",target=\"wrong-password\",reason=\"refused\"}",
            "the refused batch to be counted",
            |n| n == 1.0,
        )
        .await;
    assert_eq!(
        relay
            .metric("promrelay_target_retries_total{task=\"secure\",target=\"wrong-password\"}")
            .await,
        Some(0.0)
    );
    assert_eq!(
        relay
            .metric("promrelay_target_delivered_samples_total{task=\"secure\",target=\"good\"}")
            .await,
        Some(1.0)
    );
    assert!(
        relay.proc.log_text().contains("401"),
        "the log names the status"
    );
}

/// Start the relay binary on `config`, written into `dir` (so relative TLS paths resolve
/// there), with extra environment variables.
fn spawn_relay_in(dir: &Path, config: &str, env: &[(&str, &str)]) -> Proc {
    let cfg = dir.join("promrelay.yaml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = std::process::Command::new(relay_bin());
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied());
    Proc::spawn("promrelay", &mut cmd, dir.join("promrelay.log"))
}

/// A self-scraping Prometheus config (external label `sender: who`) that remote-writes to the
/// relay over HTTPS trusting `ca`; `tls_extra` goes inside its `tls_config` map, `extra` is
/// more of the remote_write entry (indented lines).
fn https_sender(port: u16, ca: &Path, who: &str, tls_extra: &str, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  external_labels: {{sender: {who}}}\nscrape_configs:\n  - job_name: self\n    static_configs: [{{targets: [\"127.0.0.1:{{port}}\"]}}]\nremote_write:\n  - url: https://127.0.0.1:{port}/api/v1/write\n    tls_config: {{ca_file: {ca}{tls_extra}}}\n    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}\n{extra}",
        ca = ca.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_writes_to_promrelay_over_https_with_a_token_from_the_environment() {
    let certs = TempDir::new("server-certs");
    make_certs(certs.path());
    let ca = certs.path().join("ca.pem");
    let receiver = Prometheus::receiver().await;
    let (port, admin) = (free_port(), free_port());
    let token = "tok-5f3a9c-never-logged";
    let config = format!(
        r#"
server:
  listen: "127.0.0.1:{port}"
  admin_listen: "127.0.0.1:{admin}"
  tls: {{cert_file: server.pem, key_file: server.key}}
sources:
  - name: default
    bearer_token_env: PROMRELAY_TEST_INGEST_TOKEN
tasks:
  - name: relay-all
    targets:
      - name: central
        type: remote_write
        url: {url}
        queue: {{batch_send_deadline: 200ms}}
"#,
        url = receiver.write_url()
    );
    let relay = spawn_relay_in(
        certs.path(),
        &config,
        &[("PROMRELAY_TEST_INGEST_TOKEN", token)],
    );
    let admin_url = format!("https://127.0.0.1:{admin}");
    eventually(
        Duration::from_secs(30),
        "the relay's admin endpoint over TLS",
        || async { tls_get(&format!("{admin_url}/-/ready"), &ca, "x", "y").await },
    )
    .await;
    // Plain HTTP is not served, and the ingest address no longer serves /metrics.
    let plain = get(&format!("http://127.0.0.1:{admin}/-/ready")).await;
    assert!(!plain.is_ok_and(|r| r.status == hyper::StatusCode::OK));
    let moved = tls_get(&format!("https://127.0.0.1:{port}/metrics"), &ca, "x", "y").await;
    assert!(moved.unwrap_err().contains("404"));

    let sender = |who: &str, credentials: &str| {
        let auth = format!("    authorization: {{credentials: {credentials}}}\n");
        https_sender(port, &ca, who, "", &auth)
    };
    let _good = Prometheus::start(&sender("good", token), false).await;
    let _bad = Prometheus::start(&sender("bad", "wrong-token"), false).await;
    receiver
        .wait_for_any(
            "up{sender=\"good\"}",
            "the HTTPS sender's samples at the receiver",
        )
        .await;
    let refused = "promrelay_ingest_refused_total{source=\"default\",reason=\"unauthorized\"}";
    eventually(
        Duration::from_secs(60),
        "the wrong token refused",
        || async {
            let text = tls_get(&format!("{admin_url}/metrics"), &ca, "x", "y").await?;
            let n: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(refused)?.trim().parse().ok())
                .unwrap_or(0.0);
            if n > 0.0 {
                Ok(())
            } else {
                Err(format!("{refused} = {n}"))
            }
        },
    )
    .await;
    let log = relay.log_text();
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains(token), "the token must never be logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_ca_file_only_senders_with_a_client_certificate_get_through() {
    let certs = TempDir::new("mtls-certs");
    make_certs(certs.path());
    make_client_cert(certs.path());
    let ca = certs.path().join("ca.pem");
    let receiver = Prometheus::receiver().await;
    let port = free_port();
    let config = format!(
        r#"
server:
  listen: "127.0.0.1:{port}"
  tls: {{cert_file: server.pem, key_file: server.key, client_ca_file: ca.pem}}
tasks:
  - name: relay-all
    targets:
      - name: central
        type: remote_write
        url: {url}
        queue: {{batch_send_deadline: 200ms}}
"#,
        url = receiver.write_url()
    );
    let mut relay = spawn_relay_in(certs.path(), &config, &[]);
    wait_port(port, &mut relay).await;
    let sender = |who: &str, client_cert: bool| {
        let cert = if client_cert {
            format!(
                ", cert_file: {}, key_file: {}",
                certs.path().join("client.pem").display(),
                certs.path().join("client.key").display()
            )
        } else {
            String::new()
        };
        https_sender(port, &ca, who, &cert, "")
    };
    let _with = Prometheus::start(&sender("with-cert", true), false).await;
    let without = Prometheus::start(&sender("without-cert", false), false).await;
    receiver
        .wait_for_any(
            "up{sender=\"with-cert\"}",
            "the sender with a client certificate",
        )
        .await;
    // The other one is failing its handshakes (its own metric says so) and delivers nothing.
    eventually(
        Duration::from_secs(60),
        "the sender without one failing",
        || async {
            let failed = without
                .raw_series(
                    "prometheus_remote_storage_samples_failed_total",
                    "1m",
                    now_ms(),
                )
                .await?;
            let retried = without
                .raw_series(
                    "prometheus_remote_storage_samples_retried_total",
                    "1m",
                    now_ms(),
                )
                .await?;
            let any = |m: &SeriesMap| m.values().flatten().any(|&(_, v)| v > 0.0);
            if any(&failed) || any(&retried) {
                Ok(())
            } else {
                Err(format!("{failed:?} {retried:?}"))
            }
        },
    )
    .await;
    let leaked = receiver
        .raw_series("up{sender=\"without-cert\"}", "5m", now_ms())
        .await
        .unwrap();
    assert!(leaked.is_empty(), "{leaked:?}");
}

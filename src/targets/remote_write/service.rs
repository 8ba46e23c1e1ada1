//! The remote-write target: POST snappy-compressed `WriteRequest`s with the spec's headers.
//!
//! Classification follows the remote-write spec: 2xx delivered; 5xx and 429 retried (429 with
//! its `Retry-After`); any other status refused for good; connection errors and timeouts retried.

use super::RemoteWriteConfig;
use crate::decode::Protocol;
use crate::encode::remote_write_v2::V2Writer;
use crate::targets::queue::Batch;
use crate::targets::tls::TlsConfig;
use crate::targets::{Payload, SendResult};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const USER_AGENT: &str = concat!("promrelay/", env!("CARGO_PKG_VERSION"));

/// How much of an error answer's body is quoted in the log.
const ERROR_BODY_BYTES: usize = 512;

pub struct RemoteWriteService {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    encoder: snap::raw::Encoder,
    compressed: Vec<u8>,
    /// Remote-write 2.0 targets: the converter from the queued 1.0 body and its output.
    v2: Option<(V2Writer, Vec<u8>)>,
    /// Why the last prepared batch could not be converted (its send is then refused).
    convert_error: Option<String>,
    /// Shared by the target's lanes: a 2.0 target's 415 has been logged.
    refused_v2_logged: Arc<AtomicBool>,
    /// Remote-write 1.0 targets: a batch's series and metadata, split (reused).
    split: crate::encode::metadata::Split,
}

impl RemoteWriteService {
    /// A service sending to `cfg`'s first receiver.
    ///
    /// # Errors
    /// TLS files that do not parse, or no usable root certificates for an https URL.
    pub fn new(cfg: &RemoteWriteConfig) -> Result<Self, String> {
        Self::with_shared(cfg, &cfg.url, Arc::default())
    }

    /// A service sending to `url` (one of `cfg`'s receivers), with `cfg`'s credentials, TLS,
    /// headers and timeout; `refused_v2_logged` is shared by the target's lanes.
    fn with_shared(
        cfg: &RemoteWriteConfig,
        url: &Uri,
        refused_v2_logged: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        let tls = client_tls(&cfg.tls, url.scheme_str() == Some("https"))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        let (content_type, version) = match cfg.protocol {
            Protocol::V1 => ("application/x-protobuf", "0.1.0"),
            Protocol::V2 => (
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                "2.0.0",
            ),
        };
        let mut headers = vec![
            (header::CONTENT_ENCODING, HeaderValue::from_static("snappy")),
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                HeaderName::from_static("x-prometheus-remote-write-version"),
                HeaderValue::from_static(version),
            ),
            (header::USER_AGENT, HeaderValue::from_static(USER_AGENT)),
        ];
        if let Some(v) = cfg.auth.header_value() {
            headers.push((header::AUTHORIZATION, sensitive(&v)?));
        }
        headers.extend(cfg.headers.iter().cloned());
        Ok(RemoteWriteService {
            client,
            url: url.clone(),
            headers,
            timeout: cfg.timeout,
            encoder: snap::raw::Encoder::new(),
            compressed: Vec::new(),
            v2: (cfg.protocol == Protocol::V2).then(|| (V2Writer::default(), Vec::new())),
            convert_error: None,
            refused_v2_logged,
            split: Default::default(),
        })
    }

    /// Snappy (block format) through a reused buffer; for a 2.0 target, the queued 1.0 body
    /// converted to a 2.0 `Request` first; for a 1.0 target, a batch holding metadata split
    /// into a series request and a metadata request ([`Payload::Split`]).
    ///
    /// A batch passed through as its sender compressed it (`batch.snappy`, 1.0 targets only)
    /// goes as it is.
    pub fn prepare(&mut self, batch: &Batch) -> Payload {
        self.convert_error = None;
        let body = &batch.body[..];
        if batch.snappy {
            if self.v2.is_some() {
                // The pipeline passes requests through to 1.0 targets only: a bug if reached.
                self.convert_error = Some(
                    "internal error: a passed-through 1.0 request reached a 2.0 sender".into(),
                );
                return Payload::Bytes(Bytes::new());
            }
            return Payload::Bytes(Bytes::copy_from_slice(body));
        }
        if let Some((mut writer, mut out)) = self.v2.take() {
            let payload = match writer.convert(body, &mut out) {
                Ok(()) => Payload::Bytes(self.compress(&out)),
                Err(e) => {
                    // Queues only hold what the relay encoded, so this is a bug; the send
                    // refuses the batch (counted, logged) rather than send something wrong.
                    self.convert_error = Some(format!(
                        "internal error: the queued batch does not convert to remote-write 2.0: {e}"
                    ));
                    Payload::Bytes(Bytes::new())
                }
            };
            self.v2 = Some((writer, out));
            return payload;
        }
        if !batch.metadata {
            return Payload::Bytes(self.compress(body));
        }
        // A 1.0 batch holding metadata: series and metadata go as requests of their own.
        let mut split = std::mem::take(&mut self.split);
        let payload = match crate::encode::metadata::split(body, &mut split) {
            Ok(false) => Payload::Bytes(self.compress(body)),
            Ok(true) => {
                let series = if split.series.is_empty() {
                    None
                } else {
                    Some(self.compress(&split.series))
                };
                Payload::Split {
                    series,
                    metadata: Some(self.compress(&split.metadata)),
                    entries: split.entries,
                }
            }
            Err(e) => {
                // As for a failed conversion: refused (counted, logged), never sent wrong.
                self.convert_error = Some(format!(
                    "internal error: the queued batch does not split into series and \
                     metadata: {e}"
                ));
                Payload::Bytes(Bytes::new())
            }
        };
        self.split = split;
        payload
    }

    /// Snappy (block format) through the reused buffer.
    fn compress(&mut self, body: &[u8]) -> Bytes {
        self.compressed
            .resize(snap::raw::max_compress_len(body.len()), 0);
        match self.encoder.compress(body, &mut self.compressed) {
            Ok(n) => Bytes::copy_from_slice(&self.compressed[..n]),
            // Only for inputs over ~4 GiB, which the queue never builds; fail loudly in a send.
            Err(_) => Bytes::new(),
        }
    }

    /// One POST of a prepared batch.
    pub async fn send(&self, payload: &mut Payload, _dropped: &mut usize) -> SendResult {
        if let Some(why) = &self.convert_error {
            return SendResult::Reject { why: why.clone() };
        }
        if let Payload::Split {
            series, metadata, ..
        } = payload
        {
            // Series first, then metadata; a part delivered is not sent again on a retry.
            for part in [series, metadata] {
                if let Some(body) = part.clone() {
                    match self.send_one(body).await {
                        SendResult::Delivered => *part = None,
                        other => return other,
                    }
                }
            }
            return SendResult::Delivered;
        }
        let Payload::Bytes(payload) = payload else {
            return SendResult::Reject {
                why: "internal error: a remote_write target was handed Kafka messages".into(),
            };
        };
        self.send_one(payload.clone()).await
    }

    /// One POST of one request body, classified.
    async fn send_one(&self, payload: Bytes) -> SendResult {
        match self.post(payload).await {
            Err(why) => SendResult::Retry { after: None, why },
            Ok((status, _, _))
                if status == StatusCode::UNSUPPORTED_MEDIA_TYPE && self.v2.is_some() =>
            {
                // A configuration error, the same for every batch: logged once (by the lane,
                // as a refusal), counted every time.
                let why = "the receiver does not take remote-write 2.0 (HTTP 415): a \
                           configuration error; set protobuf_message: prometheus.WriteRequest \
                           for it"
                    .to_string();
                if self.refused_v2_logged.swap(true, Ordering::Relaxed) {
                    SendResult::RejectQuietly { why }
                } else {
                    SendResult::Reject { why }
                }
            }
            Ok((status, retry_after, body)) => classify(status, retry_after, &body),
        }
    }

    /// POST `payload` (snappy already) with the target's headers, within its timeout: the
    /// status, `Retry-After` and (a bounded part of) the body; why not, for a retry.
    pub(super) async fn post(
        &self,
        payload: Bytes,
    ) -> Result<(StatusCode, Option<Duration>, Bytes), String> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(payload))
            .map_err(|e| format!("cannot build request: {e}"))?;
        self.exchange(req).await
    }

    /// GET `uri` with the target's credentials and own headers (not the remote-write ones).
    pub(super) async fn get(&self, uri: Uri) -> Result<(StatusCode, Bytes), String> {
        let mut req = Request::builder().method(Method::GET).uri(uri);
        for (k, v) in &self.headers {
            if *k != header::CONTENT_ENCODING
                && *k != header::CONTENT_TYPE
                && k.as_str() != "x-prometheus-remote-write-version"
            {
                req = req.header(k, v);
            }
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("cannot build request: {e}"))?;
        let (status, _, body) = self.exchange(req).await?;
        Ok((status, body))
    }

    async fn exchange(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Option<Duration>, Bytes), String> {
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read (a bounded part of) the body so the connection can be reused.
            let body = match Limited::new(resp.into_body(), 64 << 10).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => Bytes::new(),
            };
            Ok::<_, String>((status, retry_after, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            Ok(r) => r,
        }
    }
}

/// One service per lane: each has its own connection pool, so lanes send in parallel.
///
/// # Errors
/// As [`RemoteWriteService::new`].
impl RemoteWriteConfig {
    /// With several `urls`, each receiver's URL without credentials (for its metrics and
    /// status); none with one.
    pub fn receivers(&self) -> Vec<String> {
        if self.urls.len() < 2 {
            return Vec::new();
        }
        self.urls
            .iter()
            .map(|u| {
                let host = u.host().unwrap_or_default();
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                let scheme = u.scheme_str().unwrap_or("http");
                format!("{scheme}://{host}{port}{}", u.path())
            })
            .collect()
    }

    pub fn services(&self, lanes: usize) -> Result<Vec<RemoteWriteService>, String> {
        // With several receivers, lane `i` belongs to receiver `i / (lanes / receivers)`
        // (see `encode.rs`).
        let receivers = self.urls.len().max(1);
        let per = (lanes / receivers).max(1);
        let logged = Arc::new(AtomicBool::new(false));
        (0..lanes)
            .map(|lane| {
                let url = self.urls.get(lane / per).unwrap_or(&self.url);
                RemoteWriteService::with_shared(self, url, logged.clone())
            })
            .collect()
    }
}

fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> SendResult {
    if status.is_success() {
        return SendResult::Delivered;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)]);
    let why = format!("HTTP {status}: {}", text.trim());
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        SendResult::Retry {
            after: retry_after.filter(|_| {
                status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            }),
            why,
        }
    } else {
        SendResult::Reject { why }
    }
}

fn sensitive(v: &str) -> Result<HeaderValue, String> {
    let mut h = HeaderValue::from_str(v)
        .map_err(|_| "credentials contain characters not allowed in a header".to_string())?;
    h.set_sensitive(true);
    Ok(h)
}

pub(super) fn client_tls(cfg: &TlsConfig, https: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = builder.with_root_certificates(root_store(cfg, https)?);
    let mut config = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("tls.key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    if cfg.insecure_skip_verify {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(insecure::AcceptAnyServerCert(provider)));
    }
    Ok(config)
}

/// The CAs a target trusts: `tls.ca_file`, else (for https) the system's.
///
/// # Errors
/// The CA file cannot be read or holds no certificate; no system roots and no
/// `insecure_skip_verify`.
pub(super) fn root_store(cfg: &TlsConfig, https: bool) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &cfg.ca_file {
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "tls.ca_file {}: no certificates found",
                ca.display()
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
        }
    } else if https {
        let found = rustls_native_certs::load_native_certs();
        for c in found.certs {
            let _ = roots.add(c);
        }
        if roots.is_empty() && !cfg.insecure_skip_verify {
            return Err("no system root certificates found; set tls.ca_file".into());
        }
    }
    Ok(roots)
}

/// `tls.insecure_skip_verify: true`: accept any server certificate, still checking that the
/// handshake signatures are valid. For test setups only; the docs say so.
mod insecure {
    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    #[derive(Debug)]
    pub struct AcceptAnyServerCert(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyServerCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classification_follows_the_spec() {
        let cases: &[(u16, Option<u64>, &str)] = &[
            (200, None, "delivered"),
            (204, None, "delivered"),
            (500, None, "retry"),
            (503, Some(7), "retry 7"),
            (429, Some(3), "retry 3"),
            (400, None, "reject"),
            (401, None, "reject"),
            (404, None, "reject"),
            (413, None, "reject"),
        ];
        for &(code, after, want) in cases {
            let got = match classify(
                StatusCode::from_u16(code).unwrap(),
                after.map(Duration::from_secs),
                b"why",
            ) {
                SendResult::Delivered => "delivered".to_string(),
                SendResult::Retry { after: Some(a), .. } => format!("retry {}", a.as_secs()),
                SendResult::Retry { after: None, .. } => "retry".to_string(),
                SendResult::Reject { why } => {
                    assert!(why.contains("why"), "{why}");
                    "reject".to_string()
                }
                SendResult::RejectQuietly { .. } => "reject quietly".to_string(),
            };
            assert_eq!(got, want, "HTTP {code}");
        }
    }
}

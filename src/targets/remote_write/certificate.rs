//! `promrelay verify`'s TLS probes for a remote_write target over https, as two lines: the
//! handshake (`tls`) and the receiver's certificate (`certificate`: trusted by the configured
//! CA, valid for the url's host, not expired, and when it expires).
//!
//! To tell the two apart the probe shakes hands with a verifier that records what the real
//! check (rustls' webpki verifier over the target's roots) says about the certificate and lets
//! the handshake finish either way; the connection is dropped unused. Delivery itself never
//! uses this verifier. The certificate's names and dates are read by a small DER walk
//! ([`CertInfo::parse`]): only what the report shows, never used to decide trust.

use super::RemoteWriteConfig;
use super::service::{client_tls, root_store};
use crate::targets::check::Check;
use crate::targets::tls::TlsConfig;
use rustls::CertificateError;
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fewer days than this left: the certificate line says to renew it soon.
const RENEW_WITHIN_DAYS: i64 = 14;

/// What the real check said about the certificate the receiver presented.
#[derive(Debug)]
struct Seen {
    end_entity: Vec<u8>,
    verdict: Result<(), rustls::Error>,
}

/// Verifies as `inner` would, records the verdict, and lets the handshake go on.
#[derive(Debug)]
struct Recording {
    /// The real check; `None` when there are no roots to check against.
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<Seen>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map(|_| ()),
            None => Err(rustls::Error::General("no root certificates".into())),
        };
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen {
            end_entity: end_entity.to_vec(),
            verdict,
        });
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The `tls` and `certificate` checks of a connection to `host`; `Err` holds the failed `tls`
/// check when no handshake happened (the certificate then cannot be judged).
pub(super) async fn probe(
    cfg: &RemoteWriteConfig,
    host: &str,
    stream: tokio::net::TcpStream,
    timeout: Duration,
) -> Result<(Check, Check), Check> {
    const TLS_HINT: &str = "check that the receiver serves TLS on this port, and the target's tls settings (ca_file, cert_file, key_file)";
    let fail = |detail: String| Check::failed("tls", detail, TLS_HINT);
    let mut tls = client_tls(&cfg.tls, true).map_err(fail)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = root_store(&cfg.tls, true).ok().and_then(|roots| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .ok()
    });
    let recording = Arc::new(Recording {
        inner,
        provider,
        seen: Mutex::new(None),
    });
    tls.dangerous().set_certificate_verifier(recording.clone());
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| fail(format!("{host:?} is not a TLS server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let done = tokio::time::timeout(timeout, connector.connect(name, stream)).await;
    let seen = recording
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match done {
        Ok(Ok(conn)) => {
            let (_, session) = conn.get_ref();
            let version = session
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS");
            let tls = Check::ok("tls", format!("handshake done ({version})"));
            let cert = match seen {
                Some(s) => certificate_check(&cfg.tls, host, &s, now_unix()),
                None => Check::skipped("certificate", "the receiver presented none"),
            };
            Ok((tls, cert))
        }
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!("no handshake within {timeout:?}"))),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The certificate line from what the real check said (at `now`, seconds since the epoch).
fn certificate_check(tls: &TlsConfig, host: &str, seen: &Seen, now: i64) -> Check {
    const C: &str = "certificate";
    let info = CertInfo::parse(&seen.end_entity);
    let about = info.as_ref().map_or_else(String::new, CertInfo::describe);
    let ca = tls.ca_file.as_ref().map_or_else(
        || "the system's root certificates".to_owned(),
        |f| format!("tls.ca_file {}", f.display()),
    );
    let verdict = match &seen.verdict {
        Ok(()) => {
            let expiry = info.as_ref().map_or_else(String::new, |i| {
                let days = (i.not_after_unix - now).div_euclid(86_400);
                let soon = if days < RENEW_WITHIN_DAYS {
                    " — renew it soon"
                } else {
                    ""
                };
                let unit = if days == 1 { "day" } else { "days" };
                format!("; expires in {days} {unit} ({}){soon}", i.not_after)
            });
            Ok(format!(
                "valid for {host}, signed by a CA in {ca}{expiry}{about}"
            ))
        }
        Err(rustls::Error::InvalidCertificate(e)) => Err(why(e, host, &ca, tls, info.as_ref())),
        Err(e) => Err((
            format!("not checked: {e}"),
            "set tls.ca_file to the CA that signed the receiver's certificate".to_owned(),
        )),
    };
    match (verdict, tls.insecure_skip_verify) {
        (Ok(detail), _) => Check::ok(C, detail),
        (Err((detail, _)), true) => Check::skipped(
            C,
            format!(
                "tls.insecure_skip_verify is set, so delivery does not check it; it would fail: {detail}{about}"
            ),
        ),
        (Err((detail, hint)), false) => Check::failed(C, format!("{detail}{about}"), hint),
    }
}

/// What is wrong with the certificate, and the fix.
fn why(
    e: &CertificateError,
    host: &str,
    ca: &str,
    tls: &TlsConfig,
    info: Option<&CertInfo>,
) -> (String, String) {
    let names = info.map_or_else(String::new, |i| i.names.join(", "));
    let until = info.map_or_else(String::new, |i| format!(" on {}", i.not_after));
    match e {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => (
            format!("signed by a CA not in {ca}"),
            if tls.ca_file.is_some() {
                "signed by an unknown CA: point tls.ca_file at the CA that signed the receiver's certificate".to_owned()
            } else {
                "signed by an unknown CA: set tls.ca_file to the CA that signed the receiver's certificate".to_owned()
            },
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
            format!("not valid for host {host} (it names: {names})"),
            format!(
                "not valid for host {host}: use a name the certificate holds in the url, or reissue it with {host} in its subjectAltName"
            ),
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
            format!("expired{until}"),
            "the receiver's certificate has expired: renew it".to_owned(),
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
            "not valid yet".to_owned(),
            "the certificate's validity starts in the future: check this machine's clock and the receiver's".to_owned(),
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => (
            "not issued for TLS servers".to_owned(),
            "reissue the receiver's certificate with extendedKeyUsage serverAuth".to_owned(),
        ),
        other => (
            format!("refused: {other:?}"),
            "check the receiver's certificate and tls.ca_file".to_owned(),
        ),
    }
}

/// What the report shows of a certificate: its names and when it expires.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CertInfo {
    pub subject_cn: Option<String>,
    pub issuer_cn: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_after: String,
    pub not_after_unix: i64,
    /// Its subjectAltName entries (DNS names and IP addresses).
    pub names: Vec<String>,
}

impl CertInfo {
    /// `; subject CN=…, issuer CN=…`, for the report.
    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(cn) = &self.subject_cn {
            s += &format!("; subject CN={cn}");
        }
        if !self.names.is_empty() {
            s += &format!("; names {}", self.names.join(", "));
        }
        if let Some(cn) = &self.issuer_cn {
            s += &format!("; issuer CN={cn}");
        }
        s
    }

    /// Read a DER certificate (X.509 v3): `None` when it is not one.
    pub fn parse(der: &[u8]) -> Option<CertInfo> {
        let (0x30, cert, _) = element(der)? else {
            return None;
        };
        let (0x30, tbs, _) = element(cert)? else {
            return None;
        };
        let (tag, _, after) = element(tbs)?;
        // The version is [0], optional; the serial follows it.
        let rest = if tag == 0xA0 {
            element(after)?.2
        } else {
            after
        };
        let (_, _, rest) = element(rest)?; // signature algorithm
        let (_, issuer, rest) = element(rest)?;
        let (_, validity, rest) = element(rest)?;
        let (_, subject, rest) = element(rest)?;
        let (_, _, mut rest) = element(rest)?; // public key
        let mut names = Vec::new();
        while let Some((tag, body, next)) = element(rest) {
            if tag == 0xA3 {
                names = alt_names(body).unwrap_or_default();
            }
            rest = next;
        }
        let (_, _, v) = element(validity)?; // notBefore
        let (tag, not_after, _) = element(v)?;
        let (date, unix) = time(tag, not_after)?;
        Some(CertInfo {
            subject_cn: common_name(subject),
            issuer_cn: common_name(issuer),
            not_after: date,
            not_after_unix: unix,
            names,
        })
    }
}

/// One DER element: tag, contents, what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The commonName (OID 2.5.4.3) of a Name.
fn common_name(mut name: &[u8]) -> Option<String> {
    while let Some((_, set, next)) = element(name) {
        if let Some((_, attr, _)) = element(set) {
            let (oid_tag, oid, value) = element(attr)?;
            if oid_tag == 0x06 && oid == [0x55, 0x04, 0x03] {
                let (_, v, _) = element(value)?;
                return Some(String::from_utf8_lossy(v).into_owned());
            }
        }
        name = next;
    }
    None
}

/// The subjectAltName (OID 2.5.29.17) DNS names and IP addresses of an extensions block.
fn alt_names(block: &[u8]) -> Option<Vec<String>> {
    let (_, mut exts, _) = element(block)?;
    while let Some((_, ext, next)) = element(exts) {
        let (_, oid, rest) = element(ext)?;
        if oid == [0x55, 0x1D, 0x11] {
            let (mut tag, mut value, after) = element(rest)?;
            if tag == 0x01 {
                // critical
                (tag, value, _) = element(after)?;
            }
            if tag != 0x04 {
                return None;
            }
            let (_, mut general, _) = element(value)?;
            let mut names = Vec::new();
            while let Some((tag, v, next)) = element(general) {
                match (tag, v.len()) {
                    (0x82, _) => names.push(String::from_utf8_lossy(v).into_owned()),
                    (0x87, 4) => {
                        names.push(std::net::Ipv4Addr::new(v[0], v[1], v[2], v[3]).to_string());
                    }
                    (0x87, 16) => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(v);
                        names.push(std::net::Ipv6Addr::from(b).to_string());
                    }
                    _ => {}
                }
                general = next;
            }
            return Some(names);
        }
        exts = next;
    }
    Some(Vec::new())
}

/// A UTCTime (tag 0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`): as
/// `YYYY-MM-DD HH:MM:SS UTC` and seconds since the epoch.
fn time(tag: u8, v: &[u8]) -> Option<(String, i64)> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let full = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            format!("{}{s}", if yy >= 50 { "19" } else { "20" })
        }
        (0x18, 14) => s.to_owned(),
        _ => return None,
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| full[r].parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(8..10)?,
        n(10..12)?,
        n(12..14)?,
    );
    let unix = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    Some((
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{sec:02} UTC"),
        unix,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::check::Outcome;
    use rustls::pki_types::pem::PemObject;

    /// Made once with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 3650
    /// -subj "/O=promrelay/CN=example.test"
    /// -addext "subjectAltName=DNS:example.test,DNS:*.example.test,IP:10.0.0.1"`;
    /// `openssl x509 -noout -enddate` says `notAfter=Nov 22 11:59:07 2036 GMT`.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIB3DCCAYKgAwIBAgIUFqG84bBGlo9HB1krtpI+YfkyBOswCgYIKoZIzj0EAwIw
KzESMBAGA1UECgwJcHJvbXJlbGF5MRUwEwYDVQQDDAxleGFtcGxlLnRlc3QwHhcN
MjYxMTI1MTE1OTA3WhcNMzYxMTIyMTE1OTA3WjArMRIwEAYDVQQKDAlwcm9tcmVs
YXkxFTATBgNVBAMMDGV4YW1wbGUudGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABOHv7KWZuA2ry7pIMVbNmOXip3y9AZKYb6FrhakcXtpDBFWYi37HCcSqYwkO
pmsX5InduiErI2t7k8VvdMlHGK2jgYMwgYAwHQYDVR0OBBYEFJLgsRned3KuKVqO
Q2ESoIrPDg/vMB8GA1UdIwQYMBaAFJLgsRned3KuKVqOQ2ESoIrPDg/vMA8GA1Ud
EwEB/wQFMAMBAf8wLQYDVR0RBCYwJIIMZXhhbXBsZS50ZXN0gg4qLmV4YW1wbGUu
dGVzdIcECgAAATAKBggqhkjOPQQDAgNIADBFAiEArxXgTsfQkQQOPyBJsC/O6t6Q
Nq+Q8q7APCjghje5+M8CIFqykK0Ylf0JCKFdOQNOjxRd1dfYPdgPq+DaYQppRwST
-----END CERTIFICATE-----
";

    fn der() -> Vec<u8> {
        CertificateDer::from_pem_slice(CERT.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn reads_names_and_expiry_of_a_certificate() {
        let info = CertInfo::parse(&der()).unwrap();
        assert_eq!(
            info,
            CertInfo {
                subject_cn: Some("example.test".into()),
                issuer_cn: Some("example.test".into()),
                not_after: "2036-11-22 11:59:07 UTC".into(),
                // `date -u -d "2036-11-22 11:59:07" +%s`
                not_after_unix: 2_110_967_947,
                names: vec![
                    "example.test".into(),
                    "*.example.test".into(),
                    "10.0.0.1".into()
                ],
            }
        );
    }

    #[test]
    fn a_cut_or_foreign_der_is_no_certificate() {
        let d = der();
        for cut in [0, 1, 10, 100, d.len() - 1] {
            assert_eq!(CertInfo::parse(&d[..cut]), None, "cut at {cut}");
        }
        assert_eq!(CertInfo::parse(b"\x04\x02hi"), None);
    }

    #[test]
    fn the_certificate_line_says_what_is_wrong_and_the_fix() {
        let not_after = 2_110_967_947;
        let ca = TlsConfig {
            ca_file: Some("ca.pem".into()),
            ..TlsConfig::default()
        };
        let system = TlsConfig::default();
        let insecure = TlsConfig {
            insecure_skip_verify: true,
            ..TlsConfig::default()
        };
        let seen = |verdict: Result<(), CertificateError>| Seen {
            end_entity: der(),
            verdict: verdict.map_err(rustls::Error::InvalidCertificate),
        };
        let day = 86_400;
        // (tls, host, verdict, now, outcome, in the detail, in the hint)
        type Row<'a> = (
            &'a TlsConfig,
            &'a str,
            Result<(), CertificateError>,
            i64,
            Outcome,
            &'a str,
            &'a str,
        );
        let table: Vec<Row> = vec![
            (
                &ca,
                "example.test",
                Ok(()),
                not_after - 100 * day,
                Outcome::Ok,
                "valid for example.test, signed by a CA in tls.ca_file ca.pem; expires in 100 days (2036-11-22 11:59:07 UTC); subject CN=example.test",
                "",
            ),
            (
                &ca,
                "example.test",
                Ok(()),
                not_after - 3 * day - 1,
                Outcome::Ok,
                "expires in 3 days (2036-11-22 11:59:07 UTC) — renew it soon",
                "",
            ),
            (
                &ca,
                "other.test",
                Err(CertificateError::NotValidForName),
                0,
                Outcome::Failed,
                "not valid for host other.test (it names: example.test, *.example.test, 10.0.0.1)",
                "reissue it with other.test in its subjectAltName",
            ),
            (
                &ca,
                "example.test",
                Err(CertificateError::Expired),
                0,
                Outcome::Failed,
                "expired on 2036-11-22 11:59:07 UTC",
                "renew it",
            ),
            (
                &system,
                "example.test",
                Err(CertificateError::UnknownIssuer),
                0,
                Outcome::Failed,
                "signed by a CA not in the system's root certificates",
                "signed by an unknown CA: set tls.ca_file",
            ),
            (
                &ca,
                "example.test",
                Err(CertificateError::BadSignature),
                0,
                Outcome::Failed,
                "signed by a CA not in tls.ca_file ca.pem",
                "point tls.ca_file at the CA that signed",
            ),
            (
                &insecure,
                "example.test",
                Err(CertificateError::UnknownIssuer),
                0,
                Outcome::Skipped,
                "tls.insecure_skip_verify is set, so delivery does not check it; it would fail: signed by a CA not in",
                "",
            ),
        ];
        for (tls, host, verdict, now, outcome, detail, hint) in table {
            let c = certificate_check(tls, host, &seen(verdict), now);
            assert_eq!(c.outcome, outcome, "{c:?}");
            assert!(c.detail.contains(detail), "{detail:?} not in {c:?}");
            assert!(
                c.hint.as_deref().unwrap_or_default().contains(hint),
                "{hint:?} not in {c:?}"
            );
        }
    }

    #[test]
    fn times_of_both_encodings() {
        type Row = (u8, &'static str, Option<(&'static str, i64)>);
        let table: &[Row] = &[
            (0x17, "700101000000Z", Some(("1970-01-01 00:00:00 UTC", 0))),
            (
                0x17,
                "000229120000Z",
                Some(("2000-02-29 12:00:00 UTC", 951_825_600)),
            ),
            (
                0x18,
                "20361122115907Z",
                Some(("2036-11-22 11:59:07 UTC", 2_110_967_947)),
            ),
            (0x17, "20361122115907Z", None),
            (0x18, "2036112211590Z", None),
            (0x18, "2036-122115907Z", None),
        ];
        for &(tag, s, want) in table {
            assert_eq!(
                time(tag, s.as_bytes()),
                want.map(|(d, u)| (d.to_owned(), u)),
                "{s}"
            );
        }
    }
}

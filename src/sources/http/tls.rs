//! HTTPS for the HTTP source's listeners: the server certificate, and optionally the CA that
//! client certificates must chain to. The handshake itself runs on each connection's task
//! (`conn.rs`), bounded by `server.header_read_timeout`.

use crate::config::ServerTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Why the server's TLS setup failed: the file and what was wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("server.tls: {0}")]
pub struct TlsError(pub String);

/// The server's TLS setup: certificate chain and key, optionally a CA that client
/// certificates must chain to.
///
/// # Errors
/// A file that cannot be read or parsed, or a key that does not match the certificate.
pub fn server_tls(t: &ServerTls) -> Result<TlsAcceptor, TlsError> {
    let err = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        TlsError(format!("{what} {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(&t.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err("cannot read certificates from", &t.cert_file, &e))?;
    if chain.is_empty() {
        return Err(err("no certificate in", &t.cert_file, &"empty"));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key_file)
        .map_err(|e| err("cannot read the private key from", &t.key_file, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match &t.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| err("cannot read", ca, &e))? {
                let cert = cert.map_err(|e| err("cannot read", ca, &e))?;
                roots
                    .add(cert)
                    .map_err(|e| err("bad CA certificate in", ca, &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| err("cannot use", ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| err("certificate and key do not match in", &t.cert_file, &e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

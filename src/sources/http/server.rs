//! The listener side of the HTTP source: TLS setup, and one task per accepted connection
//! (TLS handshake first, when configured), each watched by the graceful shutdown.

use super::{IngestState, Listener, serve};
use crate::config::ServerTls;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
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

/// Accept on `l`, or never when there is no such listener.
pub async fn accept_opt(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Serve one accepted connection on its own task (TLS handshake first, when configured).
pub fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    state: &Arc<IngestState>,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    role: Listener,
) {
    let _ = stream.set_nodelay(true);
    let st = state.clone();
    let svc = service_fn(move |req| serve(st.clone(), role, req));
    match tls {
        None => {
            let conn = graceful.watch(
                builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned(),
            );
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        Some(acceptor) => {
            // The handshake runs on the connection's task; the graceful watch starts once it
            // is done (a half-open handshake is cut off by the timeout below).
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
                let stream = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let conn = builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                let _ = watcher.watch(conn).await;
            });
        }
    }
}

//! The public listener's TLS configuration: certificate files from the
//! config, or a self-signed certificate generated at start for local use;
//! and the acceptor that serves it.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// TLS set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The PEM holds no certificate or no key.
    #[error("{0}")]
    Pem(String),
    /// rustls or rcgen refused the material.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The provider every rustls configuration of the node uses (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from PEM files, ALPN h2 and http/1.1.
pub fn server_config_from_files(
    cert_path: &Path,
    key_path: &Path,
) -> Result<rustls::ServerConfig, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("{}: {e}", cert_path.display())))?;
    if chain.is_empty() {
        return Err(TlsError::Pem(format!(
            "{} holds no certificate",
            cert_path.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Pem(format!("{}: {e}", key_path.display())))?
        .ok_or_else(|| TlsError::Pem(format!("{} holds no private key", key_path.display())))?;
    server_config(chain, key)
}

/// A self-signed certificate for `localhost`, the loopback addresses and the
/// listen address. Clients must skip verification (curl `-k`).
pub fn self_signed_server_config(listen_ip: IpAddr) -> Result<rustls::ServerConfig, TlsError> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !listen_ip.is_unspecified() {
        names.push(listen_ip.to_string());
    }
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Config(e.to_string()))?;
    let chain = vec![certified.cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    server_config(chain, key)
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The public listener's acceptor: TLS, on TCP connections with Nagle's
/// algorithm turned off (TCP_NODELAY). Without it an SSE chunk (one LLM
/// token) written while the previous one is unacknowledged waits for the
/// client's delayed ACK: at 20 ms between tokens, gaps had a p99 of 43 ms
/// instead of 22 ms.
pub fn public_acceptor(
    config: rustls::ServerConfig,
) -> axum_server::tls_rustls::RustlsAcceptor<axum_server::accept::NoDelayAcceptor> {
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    axum_server::tls_rustls::RustlsAcceptor::new(config)
        .acceptor(axum_server::accept::NoDelayAcceptor::new())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum_server::accept::Accept;

    use super::*;

    #[tokio::test]
    async fn the_public_acceptor_turns_nagle_off_on_every_connection() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let acceptor = public_acceptor(self_signed_server_config(loopback).unwrap());
        let listener = tokio::net::TcpListener::bind((loopback, 0)).await.unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        // A real TLS client; its request fails once the stream is dropped.
        let client = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap();
            let _ = client.get(url).send().await;
        });

        let (tcp, _) = listener.accept().await.unwrap();
        // Accepted sockets start with Nagle on: the acceptor must change that.
        assert!(!tcp.nodelay().unwrap());
        let (stream, _service) =
            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp, ()))
                .await
                .expect("the TLS handshake finishes within 10 s")
                .unwrap();
        assert!(
            stream.get_ref().0.nodelay().unwrap(),
            "TCP_NODELAY is off on an accepted public connection"
        );
        drop(stream);
        client.abort();
    }
}

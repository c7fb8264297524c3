//! TLS towards orchestrators.
//!
//! Orchestrator certificates are self-signed and regenerated on every
//! restart (protocol §1.1), and go-livepeer's gateway sets
//! `InsecureSkipVerify`. We do the same: any certificate chain is accepted,
//! but the handshake signatures are still verified with the ring provider's
//! algorithms, so the peer must hold the key of the certificate it shows.
//! This gives encryption against passive observers, not authentication.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The one crypto provider of the workspace: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config for orchestrators: any certificate, ALPN `h2` then
/// `http/1.1`.
pub fn orchestrator_client_config() -> ClientConfigResult {
    let mut config = client_config_without_alpn()?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The config [`orchestrator_client_config`] is made from, with no ALPN
/// (hyper-rustls's connector insists on setting ALPN itself).
pub(crate) fn client_config_without_alpn() -> ClientConfigResult {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyServerCert::new(&provider));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

/// A client config, or why the provider could not build one.
pub type ClientConfigResult = Result<rustls::ClientConfig, rustls::Error>;

/// Accepts any server certificate; checks handshake signatures.
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyServerCert {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_offers_h2_then_http1_and_ring_schemes() {
        let config = orchestrator_client_config().unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(
            client_config_without_alpn()
                .unwrap()
                .alpn_protocols
                .is_empty()
        );
        let verifier = AcceptAnyServerCert::new(&provider());
        assert!(
            verifier
                .supported_verify_schemes()
                .contains(&rustls::SignatureScheme::ECDSA_NISTP256_SHA256)
        );
    }

    #[test]
    fn any_certificate_is_accepted() {
        let verifier = AcceptAnyServerCert::new(&provider());
        let garbage = CertificateDer::from(vec![1, 2, 3]);
        let name = ServerName::try_from("orch.example").unwrap();
        assert!(
            verifier
                .verify_server_cert(&garbage, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
    }
}

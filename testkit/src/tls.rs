//! HTTPS for the emulators: a private CA and a server certificate for
//! `localhost` and `127.0.0.1`, generated per run.
//!
//! Tests give `TlsIdentity::ca_pem` to pipe as `tls.ca_file` (the way a
//! company CA is configured) and check that without it verification fails.
//! The leaf is signed by the CA rather than self-signed, as in the
//! deployments this stands for. Keys live in memory only.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Why a TLS identity could not be made (never expected on a sane system).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the test certificates failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the TLS server configuration was refused: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// A server certificate chain, its key, and the CA that signed it.
#[derive(Clone)]
pub struct TlsIdentity {
    ca_pem: String,
    server_config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").field("ca_pem", &self.ca_pem).finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A fresh CA and a server certificate for `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<TlsIdentity, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "pipe-testkit CA");
        let ca = ca_params.self_signed(&ca_key)?;

        let server_key = KeyPair::generate()?;
        let mut server_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        server_params.distinguished_name.push(DnType::CommonName, "localhost");
        let server = server_params.signed_by(&server_key, &ca, &ca_key)?;

        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(server.der().to_vec()), CertificateDer::from(ca.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity { ca_pem: ca.pem(), server_config: Arc::new(config) })
    }

    /// The CA certificate, PEM: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.server_config))
    }
}

//! TLS for `attache serve` (rustls, ring): the certificate chain and the
//! private key from PEM files, HTTP/1.1 over it. Plain HTTP is served only
//! on loopback addresses unless asked for.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// An acceptor for the chain in `cert` (leaf first) and the key in `key`.
pub(super) fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("the certificate {} is not PEM", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no certificate (PEM `BEGIN CERTIFICATE`)",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Refuses plain HTTP on `addr` unless it is a loopback address or
/// `insecure` says so.
pub(crate) fn check_plain(addr: std::net::SocketAddr, insecure: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        insecure || addr.ip().is_loopback(),
        "refusing to serve plain HTTP on {addr}, which is not a loopback address: \
         tokens and data would cross the network in the clear. Give --tls-cert and \
         --tls-key, or --insecure-http to accept that"
    );
    Ok(())
}

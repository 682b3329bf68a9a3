//! The TLS policy of the one HTTP client, as one rustls configuration that both of its paths use (reqwest, and the
//! lean connections of `connection`): the system's trust store through the platform verifier (as reqwest does on
//! its own), or only the CA certificates of a given bundle (a private PKI), or, only when the options say so
//! explicitly, no verification at all.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_platform_verifier::BuilderVerifierExt;

use crate::error::{Error, IoResultExt, Result};

/// Builds the client's TLS configuration: HTTP/1.1 only (the client speaks nothing else).
pub(crate) fn client_config(ca_file: Option<&Path>, verify: bool) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidInput(format!("cannot set up TLS: {e}")))?;
    let mut config = if !verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else if let Some(ca_file) = ca_file {
        builder.with_root_certificates(roots_from(ca_file)?).with_no_client_auth()
    } else {
        builder
            .with_platform_verifier()
            .map_err(|e| Error::InvalidInput(format!("cannot read the system's trusted certificates: {e}")))?
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The CA certificates of a PEM bundle; an unreadable file, a file that is not PEM, or one without a certificate
/// is refused with its name.
fn roots_from(ca_file: &Path) -> Result<RootCertStore> {
    let pem = std::fs::read(ca_file).at(ca_file)?;
    let refuse =
        |why: String| Error::InvalidInput(format!("{}: not a PEM bundle of CA certificates: {why}", ca_file.display()));
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| refuse(e.to_string()))?;
        roots.add(certificate).map_err(|e| refuse(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(Error::InvalidInput(format!("{}: holds no certificate", ca_file.display())));
    }
    Ok(roots)
}

/// `verify_tls = false`: any certificate for any name. Handshake signatures are still checked, so the peer holds
/// the key of the certificate it shows (it just may be anybody).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

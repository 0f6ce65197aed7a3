//! TLS settings for connections to `https://` backends.
//!
//! Backends are verified against the system's root certificates by default;
//! a backend may opt out with `tls_skip_verify` (self-signed lab setups).
//! The Go reference never verifies; we only skip when asked to.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The crypto provider used for every TLS connection (ring).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Client configuration for backends, built once per verification mode.
pub(crate) fn client_config(skip_verify: bool) -> Arc<ClientConfig> {
    static VERIFIED: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static UNVERIFIED: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let cell = if skip_verify { &UNVERIFIED } else { &VERIFIED };
    cell.get_or_init(|| Arc::new(build(skip_verify))).clone()
}

/// Client configuration for the operator's console (`influx-proxy ctl`): the system roots
/// plus the certificates in `extra_roots_pem` (the proxy's own `https_cert`, so a
/// self-signed certificate is trusted on the host that serves it), or no verification at
/// all when `insecure`.
pub(crate) fn console_client_config(
    insecure: bool,
    extra_roots_pem: Option<&str>,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = system_roots();
    if let Some(path) = extra_roots_pem.filter(|_| !insecure) {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("invalid certificate in {path}: {e}"))?;
            // A certificate webpki cannot take as an anchor still leaves the system roots.
            let _ = roots.add(cert);
        }
    }
    Ok(Arc::new(build_with(insecure, roots)))
}

fn build(skip_verify: bool) -> ClientConfig {
    let roots = if skip_verify {
        RootCertStore::empty()
    } else {
        system_roots()
    };
    build_with(skip_verify, roots)
}

fn build_with(skip_verify: bool, roots: RootCertStore) -> ClientConfig {
    let builder = match ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        // The ring provider supports the default versions; this branch
        // exists only to avoid a panic path.
        Err(_) => ClientConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS),
    };
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// The system's root certificates; problems are logged, not fatal, so an
/// install without CA certificates still serves plain-HTTP backends.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(error = %error, "Could not load some system root certificates.");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "Loaded system root certificates.");
    roots
}

/// Accepts any server certificate (still checks handshake signatures).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Server configuration for `https_enabled`: the PEM certificate chain and
/// private key (the key may sit in the certificate file, as with the
/// reference). `tls13_only` honours a `tls.min_version` of TLS 1.3.
pub(crate) fn server_config(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
    tls13_only: bool,
) -> Result<rustls::ServerConfig, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid certificate in {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", cert_path.display()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("invalid private key in {}: {e}", key_path.display()))?
        .ok_or_else(|| format!("no private key found in {}", key_path.display()))?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))
}

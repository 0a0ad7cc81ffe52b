//! [`TlsConfig`]: the TLS settings of `amqps://` connections.

use std::fmt;

use crate::error::{Error, Result};

/// TLS settings for `amqps://` connections.
///
/// By default the broker's certificate is checked against the system's roots and the host
/// name.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub(super) domain: Option<String>,
    pub(super) root_certificate_pem: Option<Vec<u8>>,
    pub(super) accept_invalid_certificates: bool,
    /// Client certificate chain and PKCS#8 key, PEM.
    pub(super) identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) use_sni: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            domain: None,
            root_certificate_pem: None,
            accept_invalid_certificates: false,
            identity_pem: None,
            use_sni: true,
        }
    }
}

/// The private key is never shown.
impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("domain", &self.domain)
            .field("root_certificate", &self.root_certificate_pem.is_some())
            .field(
                "accept_invalid_certificates",
                &self.accept_invalid_certificates,
            )
            .field("client_identity", &self.identity_pem.is_some())
            .field("use_sni", &self.use_sni)
            .finish()
    }
}

impl TlsConfig {
    /// Checks the certificate against this name instead of the configured host.
    #[must_use]
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// Trusts this CA certificate (PEM) in addition to the system's roots.
    #[must_use]
    pub fn root_certificate_pem(mut self, pem: Vec<u8>) -> Self {
        self.root_certificate_pem = Some(pem);
        self
    }

    /// Accepts any certificate. For tests against a self-signed broker only: it removes the
    /// protection TLS gives against a man in the middle.
    #[must_use]
    pub fn danger_accept_invalid_certificates(mut self, accept: bool) -> Self {
        self.accept_invalid_certificates = accept;
        self
    }

    /// Presents this client certificate (PEM, with its chain) and key (PEM, PKCS#8:
    /// `BEGIN PRIVATE KEY`) to the broker, for brokers that verify their peers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when native-tls cannot read the pair.
    pub fn client_identity_pem(mut self, certificate: Vec<u8>, key: Vec<u8>) -> Result<Self> {
        native_tls::Identity::from_pkcs8(&certificate, &key).map_err(|e| Error::InvalidConfig {
            field: "tls",
            message: format!(
                "the client certificate and key cannot be used ({e}); the key must be PKCS#8 PEM (BEGIN PRIVATE KEY): convert it with `openssl pkcs8 -topk8 -nocrypt`"
            ),
        })?;
        self.identity_pem = Some((certificate, key));
        Ok(self)
    }

    /// Whether to send the server name (SNI) in the handshake; on by default.
    #[must_use]
    pub fn use_sni(mut self, use_sni: bool) -> Self {
        self.use_sni = use_sni;
        self
    }

    pub(crate) fn server_name<'a>(&'a self, host: &'a str) -> &'a str {
        self.domain.as_deref().unwrap_or(host)
    }

    pub(crate) fn connector(&self) -> std::result::Result<native_tls::TlsConnector, String> {
        let mut builder = native_tls::TlsConnector::builder();
        if let Some(pem) = &self.root_certificate_pem {
            let cert = native_tls::Certificate::from_pem(pem)
                .map_err(|e| format!("invalid root certificate: {e}"))?;
            builder.add_root_certificate(cert);
        }
        if let Some((certificate, key)) = &self.identity_pem {
            let identity = native_tls::Identity::from_pkcs8(certificate, key)
                .map_err(|e| format!("invalid client certificate or key: {e}"))?;
            builder.identity(identity);
        }
        builder.danger_accept_invalid_certs(self.accept_invalid_certificates);
        builder.use_sni(self.use_sni);
        builder.build().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn tls_debug_hides_the_key() {
        let tls = TlsConfig {
            identity_pem: Some((b"CERT".to_vec(), b"SECRET-KEY".to_vec())),
            ..TlsConfig::default()
        };
        assert!(!format!("{tls:?}").contains("SECRET"));
    }
}

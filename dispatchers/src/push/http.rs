//! The HTTP/2 client both providers use, and how it connects.

use std::time::Duration;

/// How the providers' client connects: its timeout, and the certificate authorities it
/// trusts besides the system's (for an egress proxy that re-signs TLS, or a stand-in).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub timeout: Duration,
    extra_roots: Vec<reqwest::Certificate>,
}

/// A CA bundle that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the CA certificates are not usable: {0}")]
pub struct CaError(String);

/// The certificates of a PEM bundle: at least one, or the bundle is refused.
pub fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, CaError> {
    let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| CaError(e.to_string()))?;
    if roots.is_empty() {
        return Err(CaError("no PEM certificate in it".into()));
    }
    Ok(roots)
}

impl ClientSettings {
    /// The system's certificate authorities only.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            extra_roots: Vec::new(),
        }
    }

    /// Also trusts every certificate of `pem` (one or more PEM blocks).
    pub fn trusting_pem(self, pem: &[u8]) -> Result<Self, CaError> {
        Ok(self.trusting(parse_ca_bundle(pem)?))
    }

    /// Also trusts these certificates.
    pub fn trusting(mut self, roots: impl IntoIterator<Item = reqwest::Certificate>) -> Self {
        self.extra_roots.extend(roots);
        self
    }

    /// A client that speaks HTTP/2 to `base_url`: negotiated by ALPN over TLS for the real
    /// providers, by prior knowledge over plain `http://` (the stand-ins), since neither
    /// FCM nor APNs talks HTTP/1 on the connections we keep open.
    pub fn client(&self, base_url: &str) -> Result<reqwest::Client, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_while_idle(true)
            .pool_idle_timeout(Duration::from_secs(300));
        for root in &self.extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        if base_url.starts_with("http://") {
            builder = builder.http2_prior_knowledge();
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        for pem in [
            &b""[..],
            b"not a certificate",
            b"-----BEGIN CERTIFICATE-----\n!!\n",
        ] {
            let err = ClientSettings::new(Duration::from_secs(1))
                .trusting_pem(pem)
                .expect_err("refused");
            assert!(err.to_string().contains("not usable"), "{err}");
        }
    }
}

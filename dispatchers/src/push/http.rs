//! The HTTP/2 client both providers use.

use std::time::Duration;

/// A client that speaks HTTP/2 to `base_url`: negotiated by ALPN over TLS for the real
/// providers, by prior knowledge over plain `http://` (the stand-ins), since neither FCM nor
/// APNs talks HTTP/1 on the connections we keep open.
pub fn client(base_url: &str, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_while_idle(true)
        .pool_idle_timeout(Duration::from_secs(300));
    let builder = if base_url.starts_with("http://") {
        builder.http2_prior_knowledge()
    } else {
        builder
    };
    builder.build()
}

//! Local stand-ins for the push providers Postino cannot reach from here: `fake-fcm` (FCM
//! HTTP v1 with its OAuth2 token endpoint) and `fake-apns` (APNs' HTTP/2 API with
//! provider-token checks). They speak HTTP/2 over cleartext (prior knowledge), check the
//! credentials the real providers check, answer with the providers' documented errors on
//! demand ([`faults`]), and record what they received with timestamps, readable at
//! `GET /_standin/received`.

pub mod apns;
pub mod faults;
pub mod fcm;
pub mod recorder;

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::Response;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

/// Serves `app` on `listen` until the task is dropped; the bound address (port 0 picks one).
pub async fn spawn(
    app: Router,
    listen: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    // Like the real providers' front ends: answers leave at once instead of waiting behind
    // Nagle's algorithm for the client's delayed ACK, which would make a stand-in slow.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            eprintln!("stand-in: cannot set TCP_NODELAY: {err}");
        }
    });
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("stand-in stopped: {err}");
        }
    });
    Ok((addr, task))
}

/// Waits the configured delay (a slow provider), then answers; every answer but a success
/// is counted here, a success when the recorder accepts it.
async fn answer_slowly(
    faults: &faults::Faults,
    recorder: &recorder::Recorder,
    answer: impl std::future::Future<Output = Response>,
) -> Response {
    let delay = faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = answer.await;
    if response.status() != StatusCode::OK {
        recorder.answered(response.status().as_u16());
    }
    response
}

/// A public key that checks signatures; shown in debug output by kind only.
pub struct PublicKey(pub jsonwebtoken::DecodingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicKey(..)")
    }
}

/// Unix milliseconds now: what stand-ins stamp arrivals with and the load tool stamps sends with.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

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

use axum::Router;
use tokio::net::TcpListener;

/// Serves `app` on `listen` until the task is dropped; the bound address (port 0 picks one).
pub async fn spawn(
    app: Router,
    listen: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("stand-in stopped: {err}");
        }
    });
    Ok((addr, task))
}

/// A public key that checks signatures; shown in debug output by kind only.
pub struct PublicKey(pub jsonwebtoken::DecodingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicKey(..)")
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

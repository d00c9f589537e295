//! The client the load itself travels through when Postino is reached over plain `http`:
//! kept-alive HTTP/1.1 connections to one address, each driven by hyper's connection-level
//! API and lent to one request at a time.
//!
//! Why not reqwest, which the tool uses for everything else: per request it rebuilds the
//! URL, clones its client and checks a connection out of a keyed pool. On the machine the
//! generator shares with Postino, that CPU is taken from the figure being measured; this path
//! costs a fraction of it. `https` keeps reqwest (TLS, HTTP/2 by ALPN).

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A request on its way: the body is sent whole.
pub type Outgoing = Request<Full<Bytes>>;

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Why an exchange did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(#[from] hyper::Error),
}

impl SendError {
    /// What the failure is called in the error counts (the same names as the reqwest path's).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "transport",
        }
    }
}

/// Connections to one `host:port`. It keeps at most `max_idle` idle ones; the caller
/// bounds how many are busy at once (the load's connection count).
#[derive(Debug)]
pub struct Http1Pool {
    address: String,
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    max_idle: usize,
    timeout: Duration,
}

impl Http1Pool {
    /// `address` is what to connect to (`host:port`), `host` the `Host` header to send.
    pub fn new(address: String, host: HeaderValue, max_idle: usize, timeout: Duration) -> Self {
        Self {
            address,
            host,
            idle: Mutex::new(Vec::with_capacity(max_idle)),
            max_idle,
            timeout,
        }
    }

    /// Sends `request` (given a `Host` header if it has none) and reads the whole answer.
    pub async fn send(&self, mut request: Outgoing) -> Result<Reply, SendError> {
        request
            .headers_mut()
            .entry(HOST)
            .or_insert_with(|| self.host.clone());
        tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .unwrap_or(Err(SendError::Timeout(self.timeout)))
    }

    async fn exchange(&self, mut request: Outgoing) -> Result<Reply, SendError> {
        loop {
            let (mut connection, reused) = match self.checkout() {
                Some(connection) => (connection, true),
                None => (self.connect().await?, false),
            };
            match connection.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let body = body.collect().await?.to_bytes();
                    self.checkin(connection);
                    return Ok(Reply {
                        status: parts.status,
                        body,
                    });
                }
                Err(mut failed) => match failed.take_message() {
                    // A kept-alive connection the server closed while it sat idle fails
                    // before anything is written: the request goes again on another.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(failed.into_error().into()),
                },
            }
        }
    }

    fn checkout(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(connection) = idle.pop() {
            if !connection.is_closed() {
                return Some(connection);
            }
        }
        None
    }

    fn checkin(&self, connection: SendRequest<Full<Bytes>>) {
        if connection.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(connection);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let refused = |source| SendError::Connect {
            address: self.address.clone(),
            source,
        };
        let stream = TcpStream::connect(&self.address).await.map_err(refused)?;
        stream.set_nodelay(true).map_err(refused)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Its end (the server closing, or the last sender dropped) is what `is_closed`
            // reports to the pool; the error itself tells the load nothing more.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Where it connects (`host:port`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The `Host` header it sends.
    pub fn host(&self) -> &str {
        self.host.to_str().unwrap_or_default()
    }

    /// Idle connections kept now.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::routing::post;
    use axum::Router;
    use tokio::net::TcpListener;

    use super::*;

    /// A server on port 0 that echoes bodies and counts the connections it accepted;
    /// `close_after_each` makes it end every connection after one answer, as a server
    /// whose keep-alive ran out does.
    async fn echo_server(close_after_each: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let app = Router::new().route("/echo", post(|body: Bytes| async move { body }));
                tokio::spawn(async move {
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(!close_after_each)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (address, accepted)
    }

    fn pool(address: &str, max_idle: usize) -> Http1Pool {
        let host = HeaderValue::from_str(address).expect("host");
        Http1Pool::new(address.into(), host, max_idle, Duration::from_secs(10))
    }

    fn echo(text: &str) -> Outgoing {
        Request::post("/echo")
            .body(Full::new(Bytes::from(text.to_string())))
            .expect("request")
    }

    #[tokio::test]
    async fn answers_come_back_whole_and_one_connection_carries_a_sequence() {
        let (address, accepted) = echo_server(false).await;
        let pool = pool(&address, 4);
        for i in 0..20 {
            let reply = pool
                .send(echo(&format!("message {i}")))
                .await
                .expect("reply");
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body, format!("message {i}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "kept alive");
        assert_eq!(pool.idle_connections(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_use_a_connection_each_and_keep_only_max_idle() {
        let (address, accepted) = echo_server(false).await;
        let pool = Arc::new(pool(&address, 3));
        let sends = (0..8).map(|i| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.send(echo(&i.to_string())).await })
        });
        for (i, send) in sends.enumerate() {
            let reply = send.await.expect("task").expect("reply");
            assert_eq!(reply.body, i.to_string());
        }
        assert!(accepted.load(Ordering::SeqCst) <= 8);
        assert!(pool.idle_connections() <= 3);
    }

    #[tokio::test]
    async fn a_server_closing_its_connections_costs_no_request() {
        let (address, accepted) = echo_server(true).await;
        let pool = pool(&address, 4);
        for i in 0..5 {
            let reply = pool.send(echo(&i.to_string())).await.expect("reply");
            assert_eq!(reply.body, i.to_string());
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            5,
            "a new connection each time"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let held = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            // Holds the connection open without a word until the test ends.
            std::future::pending::<()>().await;
            drop(stream);
        });
        let host = HeaderValue::from_str(&address).expect("host");
        let impatient = Http1Pool::new(address, host, 1, Duration::from_millis(200));
        let err = impatient.send(echo("x")).await.expect_err("no answer");
        assert_eq!(err.kind(), "timeout");
        held.abort();
    }

    #[tokio::test]
    async fn nobody_listening_is_a_connect_failure_naming_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        drop(listener);
        let err = pool(&address, 1)
            .send(echo("x"))
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), "connect");
        assert!(err.to_string().contains(&address), "{err}");
    }
}

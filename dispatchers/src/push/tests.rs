//! The push dispatcher against the provider stand-ins of `loadtest` (real HTTP/2, real
//! token checks, the providers' documented failures), the embedded log and the store.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bus::embedded::EmbeddedBus;
use bus::stage::{Stage, StageConfig, StageError};
use bus::{Bus, Record};
use loadtest::standins::apns::FakeApns;
use loadtest::standins::faults::{self, FaultArgs, Faults};
use loadtest::standins::fcm::FakeFcm;
use loadtest::standins::recorder::Page;
use model::installation::{DeviceToken, Installation, InstallationId, Platform};
use model::pipeline::{encode, topics};
use model::push::PushJob;
use model::status::{Channel, ChannelStatus, MessageStatus};
use store::conformance::{fresh_fiscal_code, sample_record, sample_record_with_id};
use store::sqlite::SqliteStore;
use store::Store;

use super::apns::{ApnsCredentials, ApnsProvider};
use super::fcm::{FcmProvider, ServiceAccount};
use super::provider::{PushError, PushProvider};
use super::service::{ProviderLane, PushService};
use super::{ClientSettings, PushStage, GROUP};
use testkit::stages::{channel_status, dead_lettered, sorted_ids, spawn_stage};

const TIMEOUT: Duration = Duration::from_secs(5);
const TOPIC: &str = "it.pagopa.app.io";

/// Throw-away credentials from the same script a person uses for the stand-ins.
fn keys(dir: &Path) {
    let script = testkit::repo_file("scripts/stand-in-keys.sh");
    let status = std::process::Command::new(script)
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run scripts/stand-in-keys.sh");
    assert!(status.success());
}

/// Serves a stand-in on a free port; its base URL.
async fn serve(router: axum::Router) -> String {
    let (addr, _task) = loadtest::standins::spawn(router, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("listen");
    format!("http://{addr}")
}

/// A client for the stand-ins' own endpoints (they speak HTTP/2 only).
fn standin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client")
}

/// How a stand-in is reached: plain HTTP/2 by prior knowledge, or as the real providers
/// are, over TLS with HTTP/2 chosen by ALPN, presenting a certificate that only the
/// configured CA file makes trusted.
#[derive(Clone, Copy)]
enum Reached {
    Plain,
    Tls,
}

/// Serves a stand-in's `router` as `reached` says; its base URL, and the client settings
/// that reach it.
async fn expose(router: axum::Router, dir: &Path, reached: Reached) -> (String, ClientSettings) {
    match reached {
        Reached::Plain => (serve(router).await, ClientSettings::new(TIMEOUT)),
        Reached::Tls => {
            let (cert, key) = testkit::keys::self_signed_certificate(dir);
            let url = tls::serve(router, &cert, &key).await;
            let ca = std::fs::read(&cert).expect("certificate");
            let http = ClientSettings::new(TIMEOUT)
                .trusting_pem(&ca)
                .expect("CA file");
            (url, http)
        }
    }
}

struct Fcm {
    provider: FcmProvider,
    url: String,
    /// What reaches the stand-in (its CA, when it is served over TLS).
    http: ClientSettings,
    _dir: tempfile::TempDir,
}

async fn fake_fcm(token_ttl: Duration) -> Fcm {
    fake_fcm_reached(token_ttl, Reached::Plain).await
}

async fn fake_fcm_reached(token_ttl: Duration, reached: Reached) -> Fcm {
    let dir = tempfile::tempdir().expect("tempdir");
    keys(dir.path());
    let public = std::fs::read(dir.path().join("fcm-public.pem")).expect("public key");
    let fake = FakeFcm::new(
        &public,
        token_ttl,
        Faults::new(FaultArgs::default(), faults::FCM),
    )
    .expect("stand-in");
    let (url, http) = expose(Arc::new(fake).router(), dir.path(), reached).await;
    let mut account =
        ServiceAccount::from_file(&dir.path().join("fcm-service-account.json")).expect("account");
    account.token_uri = format!("{url}/token");
    let provider = FcmProvider::new(account, &url, &http).expect("provider");
    Fcm {
        provider,
        url,
        http,
        _dir: dir,
    }
}

struct Apns {
    provider: ApnsProvider,
    url: String,
    http: ClientSettings,
    _dir: tempfile::TempDir,
}

async fn fake_apns(topic: &str) -> Apns {
    fake_apns_reached(topic, Reached::Plain).await
}

async fn fake_apns_reached(topic: &str, reached: Reached) -> Apns {
    let dir = tempfile::tempdir().expect("tempdir");
    keys(dir.path());
    let public = std::fs::read(dir.path().join("apns-public.pem")).expect("public key");
    let fake = FakeApns::new(
        &public,
        "KEY1234567".into(),
        "TEAM123456".into(),
        TOPIC.into(),
        Faults::new(FaultArgs::default(), faults::APNS),
    )
    .expect("stand-in");
    let (url, http) = expose(Arc::new(fake).router(), dir.path(), reached).await;
    let credentials = ApnsCredentials::from_key_file(
        &dir.path().join("apns-key.p8"),
        "KEY1234567".into(),
        "TEAM123456".into(),
        topic.into(),
    )
    .expect("credentials");
    let provider = ApnsProvider::new(credentials, &url, &http).expect("provider");
    Apns {
        provider,
        url,
        http,
        _dir: dir,
    }
}

async fn received(url: &str) -> Page {
    received_via(&standin_client(), url).await
}

async fn received_via(client: &reqwest::Client, url: &str) -> Page {
    client
        .get(format!("{url}/_standin/received"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("page")
}

async fn expire_credentials(url: &str) {
    let r = standin_client()
        .post(format!("{url}/_standin/expire-credentials"))
        .send()
        .await
        .expect("post");
    assert!(r.status().is_success());
}

async fn grants(url: &str) -> u64 {
    let v: serde_json::Value = standin_client()
        .get(format!("{url}/_standin/grants"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    v["grants"].as_u64().expect("count")
}

fn job(platform: Platform, token: &str) -> PushJob {
    let fc = fresh_fiscal_code();
    let message = sample_record(&fc, 1, MessageStatus::Processed).message;
    PushJob {
        message_id: message.id,
        fiscal_code: fc,
        installation_id: InstallationId::parse("id", "phone").expect("id"),
        platform,
        token: DeviceToken::parse("t", token).expect("token"),
        title: "Hai un nuovo messaggio".into(),
        body: "Entra nell'app per leggerlo".into(),
        expires_at: time::OffsetDateTime::now_utc().unix_timestamp() + 3600,
        campaign_id: None,
        urgent: false,
        key: b"citizen".to_vec(),
        request_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_sends_with_one_access_token_and_renews_one_the_provider_refuses() {
    let fcm = fake_fcm(Duration::from_secs(3600)).await;
    let jobs: Vec<_> = (0..3)
        .map(|i| job(Platform::Fcm, &format!("device-{i}")))
        .collect();
    for j in &jobs {
        fcm.provider.send(j).await.expect("sent");
    }
    assert_eq!(grants(&fcm.url).await, 1, "the access token is cached");
    let page = received(&fcm.url).await;
    let ids: Vec<_> = page.received.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(
        ids,
        jobs.iter()
            .map(|j| j.message_id.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(page.received[0].title, "Hai un nuovo messaggio");
    assert_eq!(page.received[0].token, "device-0");

    expire_credentials(&fcm.url).await;
    fcm.provider
        .send(&jobs[0])
        .await
        .expect("sent after renewal");
    assert_eq!(grants(&fcm.url).await, 2, "a refused token is renewed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_renews_the_access_token_before_it_expires() {
    // With a margin as long as the token's life, every send finds it due for renewal,
    // while the provider would still take it.
    let fcm = fake_fcm(Duration::from_secs(3600)).await;
    let provider = fcm.provider.with_renewal_margin(Duration::from_secs(3600));
    for i in 0..3 {
        provider
            .send(&job(Platform::Fcm, &format!("device-{i}")))
            .await
            .expect("sent");
    }
    assert_eq!(grants(&fcm.url).await, 3);
    assert_eq!(
        received(&fcm.url).await.answers.get(&401),
        None,
        "never refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_errors_map_to_removal_retry_or_refusal() {
    let fcm = fake_fcm(Duration::from_secs(3600)).await;
    let send = |token: &'static str| {
        let j = job(Platform::Fcm, token);
        let p = &fcm.provider;
        async move { p.send(&j).await }
    };
    assert!(matches!(
        send("unregistered-a").await,
        Err(PushError::TokenGone(_))
    ));
    assert!(matches!(
        send("invalid-a").await,
        Err(PushError::TokenGone(_))
    ));
    assert_eq!(
        send("status-429-a").await.err().and_then(|e| match e {
            PushError::Retry { after, .. } => after,
            _ => None,
        }),
        Some(Duration::from_secs(1)),
        "429 honours Retry-After"
    );
    assert!(matches!(
        send("status-503-a").await,
        Err(PushError::Retry { .. })
    ));
    assert!(matches!(
        send("status-500-a").await,
        Err(PushError::Retry { .. })
    ));
    assert_eq!(received(&fcm.url).await.accepted, 0);
    let unreachable = FcmProvider::new(
        ServiceAccount::from_file(&fcm._dir.path().join("fcm-service-account.json"))
            .expect("account"),
        "http://127.0.0.1:9",
        &ClientSettings::new(TIMEOUT),
    )
    .expect("provider");
    assert!(matches!(
        unreachable.send(&job(Platform::Fcm, "x")).await,
        Err(PushError::Retry { .. })
    ));
}

const APNS_TOKEN: &str = "a3f1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_sends_with_its_headers_and_renews_an_expired_provider_token() {
    let apns = fake_apns(TOPIC).await;
    let j = job(Platform::Apns, APNS_TOKEN);
    apns.provider.send(&j).await.expect("sent");
    expire_credentials(&apns.url).await;
    apns.provider
        .send(&j)
        .await
        .expect("sent with a fresh provider token");
    let page = received(&apns.url).await;
    assert_eq!(page.accepted, 2);
    assert_eq!(
        page.answers.get(&403),
        Some(&1),
        "the expired token was refused once"
    );
    assert_eq!(page.received[0].message_id, j.message_id.to_string());
    assert_eq!(page.received[0].body, "Entra nell'app per leggerlo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_errors_map_to_removal_retry_or_refusal() {
    let apns = fake_apns(TOPIC).await;
    let send = |token: String| {
        let j = job(Platform::Apns, &token);
        let p = &apns.provider;
        async move { p.send(&j).await }
    };
    let hex = |prefix: &str| format!("{prefix}{}", &APNS_TOKEN[prefix.len()..]);
    assert!(matches!(
        send(hex("dead")).await,
        Err(PushError::TokenGone(_))
    ));
    assert!(matches!(
        send(hex("bad0")).await,
        Err(PushError::TokenGone(_))
    ));
    assert!(matches!(
        send(hex("0429")).await,
        Err(PushError::Retry { after: Some(_), .. })
    ));
    assert!(matches!(
        send(hex("0503")).await,
        Err(PushError::Retry { .. })
    ));
    // An unreachable provider is retried, and its reason never shows the device token
    // (the APNs URL carries it).
    let credentials = ApnsCredentials::from_key_file(
        &apns._dir.path().join("apns-key.p8"),
        "KEY1234567".into(),
        "TEAM123456".into(),
        TOPIC.into(),
    )
    .expect("credentials");
    let unreachable = ApnsProvider::new(
        credentials,
        "http://127.0.0.1:9",
        &ClientSettings::new(TIMEOUT),
    )
    .expect("provider");
    match unreachable.send(&job(Platform::Apns, APNS_TOKEN)).await {
        Err(PushError::Retry { reason, .. }) => {
            assert!(!reason.contains(APNS_TOKEN), "{reason}")
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    let wrong_topic = fake_apns("it.example.other").await;
    assert!(matches!(
        wrong_topic
            .provider
            .send(&job(Platform::Apns, APNS_TOKEN))
            .await,
        Err(PushError::Rejected(_))
    ));
}

/// A push service with only `provider` for FCM, at FCM's quota, `in_flight` at once.
fn fcm_only(provider: FcmProvider, in_flight: usize) -> Arc<PushService> {
    Arc::new(PushService {
        fcm: Some(ProviderLane::new(
            Arc::new(provider),
            NonZeroU32::new(600_000).expect("nonzero"),
            in_flight,
        )),
        apns: None,
    })
}

fn device(token: &str) -> (Installation, PushJob) {
    let j = job(Platform::Fcm, token);
    let installation = Installation {
        id: j.installation_id.clone(),
        platform: j.platform,
        token: j.token.clone(),
        app_version: None,
        updated_at: "2026-01-01T00:00:00.000Z".parse().expect("a timestamp"),
    };
    (installation, j)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_sends_each_device_once_retries_removes_and_expires_per_its_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    let fcm = fake_fcm(Duration::from_secs(3600)).await;
    let service = fcm_only(fcm.provider, 1);

    let (fine_device, fine) = device("fine-1");
    let (_, flaky) = device("flaky-1-a");
    let (gone_device, gone) = device("unregistered-1");
    let (_, down) = device("status-503-b");
    let (_, mut expired) = device("fine-2");
    expired.expires_at = 1;
    let (_, apns) = {
        let mut j = job(Platform::Apns, APNS_TOKEN);
        j.platform = Platform::Apns;
        (0, j)
    };
    let jobs = [fine, flaky, gone, down, expired, apns];
    let records = jobs
        .iter()
        .map(|j| sample_record_with_id(j.message_id, &j.fiscal_code, MessageStatus::Processed))
        .collect();
    store.deliver(records).await.expect("deliver");
    store
        .put_installation(&jobs[0].fiscal_code, &fine_device)
        .await
        .expect("put");
    store
        .put_installation(&jobs[2].fiscal_code, &gone_device)
        .await
        .expect("put");

    let records = jobs
        .iter()
        .map(|j| Record::new(j.fiscal_code.as_str().as_bytes().to_vec(), encode(j)))
        .collect();
    bus.publish(topics::DELIVERIES_PUSH, records)
        .await
        .expect("publish");
    let mut dlq = bus
        .subscribe("deliveries.push.dlq", "t")
        .await
        .expect("dlq");
    let (stop, runner) = spawn_stage(
        &bus,
        topics::DELIVERIES_PUSH,
        GROUP,
        PushStage::new(Arc::clone(&store), Arc::clone(&bus), service),
        StageConfig {
            poll_wait: Duration::from_millis(50),
            max_attempts: 2,
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(20),
            ..Default::default()
        },
    );
    // The always-503 device after its attempts, and the platform with no provider at once.
    let dead = bus::conformance::collect(&mut *dlq, 2).await;
    // The flaky device's retry is behind the 503 one's last attempt in the retry lane.
    let page = loop {
        let page = received(&fcm.url).await;
        if page.accepted >= 2 {
            break page;
        }
        tokio::task::yield_now().await;
    };
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");

    assert_eq!(
        sorted_ids(page.received.iter().map(|r| &r.message_id)),
        sorted_ids([jobs[0].message_id, jobs[1].message_id]),
        "each reachable device exactly once; nothing expired sent"
    );
    let dead_ids = dead_lettered(&dead, |j: &PushJob| j.message_id);
    assert!(dead_ids.contains(&jobs[3].message_id) && dead_ids.contains(&jobs[5].message_id));

    let status = |i: usize| channel_status(&store, jobs[i].message_id, Channel::Push);
    assert_eq!(status(0).await, Some(ChannelStatus::Sent));
    assert_eq!(
        status(1).await,
        Some(ChannelStatus::Sent),
        "sent on its retry"
    );
    assert_eq!(status(2).await, Some(ChannelStatus::Failed));
    assert_eq!(
        status(3).await,
        Some(ChannelStatus::Failed),
        "dead-lettered after its attempts"
    );
    assert_eq!(status(4).await, Some(ChannelStatus::Expired));
    assert_eq!(
        status(5).await,
        Some(ChannelStatus::Failed),
        "no APNs provider configured"
    );
    assert!(
        store
            .list_installations(&jobs[2].fiscal_code)
            .await
            .expect("list")
            .is_empty(),
        "the gone device is removed"
    );
    assert_eq!(
        store
            .list_installations(&jobs[0].fiscal_code)
            .await
            .expect("list")
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_both_providers_speak_http2_by_alpn_and_trust_the_configured_ca() {
    // The stand-ins answer 505 to anything but HTTP/2 here, as APNs does.
    let fcm = fake_fcm_reached(Duration::from_secs(3600), Reached::Tls).await;
    let j = job(Platform::Fcm, "device-tls");
    fcm.provider.send(&j).await.expect("sent to FCM over TLS");
    let fcm_client = fcm.http.client(&fcm.url).expect("client");
    let page = received_via(&fcm_client, &fcm.url).await;
    assert_eq!(page.accepted, 1);
    assert_eq!(page.received[0].message_id, j.message_id.to_string());

    let apns = fake_apns_reached(TOPIC, Reached::Tls).await;
    apns.provider
        .send(&job(Platform::Apns, APNS_TOKEN))
        .await
        .expect("sent to APNs over TLS");
    let apns_client = apns.http.client(&apns.url).expect("client");
    assert_eq!(received_via(&apns_client, &apns.url).await.accepted, 1);

    // Without the CA file the stand-in's certificate is not trusted: nothing is sent, and
    // the push is kept to be tried again.
    let untrusting = FcmProvider::new(
        ServiceAccount::from_file(&fcm._dir.path().join("fcm-service-account.json"))
            .map(|mut account| {
                account.token_uri = format!("{}/token", fcm.url);
                account
            })
            .expect("account"),
        &fcm.url,
        &ClientSettings::new(TIMEOUT),
    )
    .expect("provider");
    let refused = untrusting.send(&job(Platform::Fcm, "device-tls")).await;
    assert!(
        matches!(refused, Err(PushError::Retry { .. })),
        "{refused:?}"
    );
    assert_eq!(received_via(&fcm_client, &fcm.url).await.accepted, 1);
}

/// A TLS front for the stand-ins, as FCM's and APNs' own: HTTP/2 chosen by ALPN, and
/// only HTTP/2 served.
mod tls {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::pin::Pin;
    use std::sync::Arc;

    use axum::extract::Request;
    use axum::http::{StatusCode, Version};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use openssl::ssl::{AlpnError, Ssl, SslAcceptor, SslFiletype, SslMethod};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_openssl::SslStream;

    /// Serves `router` over TLS on a free port with `cert` and `key`; its base URL.
    pub async fn serve(router: axum::Router, cert: &Path, key: &Path) -> String {
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        acceptor
            .set_certificate_chain_file(cert)
            .expect("certificate");
        acceptor
            .set_private_key_file(key, SslFiletype::PEM)
            .expect("key");
        acceptor.set_alpn_select_callback(|_, offered| {
            openssl::ssl::select_next_proto(b"\x02h2", offered).ok_or(AlpnError::NOACK)
        });
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let port = tcp.local_addr().expect("address").port();
        let listener = Listener {
            tcp,
            acceptor: Arc::new(acceptor.build()),
        };
        let router = router.layer(axum::middleware::from_fn(http2_only));
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("https://localhost:{port}")
    }

    async fn http2_only(request: Request, next: Next) -> Response {
        if request.version() != Version::HTTP_2 {
            return StatusCode::HTTP_VERSION_NOT_SUPPORTED.into_response();
        }
        next.run(request).await
    }

    struct Listener {
        tcp: TcpListener,
        acceptor: Arc<SslAcceptor>,
    }

    impl axum::serve::Listener for Listener {
        type Io = SslStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                // A client that fails its handshake (one that does not trust the
                // certificate) is dropped; the next is served.
                let Ok((tcp, addr)) = self.tcp.accept().await else {
                    continue;
                };
                let Ok(ssl) = Ssl::new(self.acceptor.context()) else {
                    continue;
                };
                let Ok(mut stream) = SslStream::new(ssl, tcp) else {
                    continue;
                };
                if Pin::new(&mut stream).accept().await.is_ok() {
                    return (stream, addr);
                }
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            self.tcp.local_addr()
        }
    }
}

/// A job published or delivered twice (the inbox stage's batch replayed, a redelivery
/// after a crash) reaches its device once; a device being retried shows IO's THROTTLED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_delivered_twice_is_pushed_once_and_one_being_retried_is_throttled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let fcm = fake_fcm(Duration::from_secs(3600)).await;
    let service = fcm_only(fcm.provider, 4);
    let (_, fine) = device("fine-7");
    let (_, down) = device("status-503-c");
    // A second device of the same message: pushed on its own, not taken for the first.
    let mut tablet = fine.clone();
    tablet.installation_id = InstallationId::parse("id", "tablet").expect("id");
    for j in [&fine, &down] {
        store
            .deliver(vec![sample_record_with_id(
                j.message_id,
                &j.fiscal_code,
                MessageStatus::Processed,
            )])
            .await
            .expect("deliver");
    }
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    let stage = PushStage::new(Arc::clone(&store), bus, service);

    let first = stage.process(&[&fine, &down]).await;
    assert!(first[0].is_ok());
    assert!(
        matches!(first[1], Err(StageError::Retry { .. })),
        "{first:?}"
    );
    assert_eq!(
        channel_status(&store, down.message_id, Channel::Push).await,
        Some(ChannelStatus::Throttled)
    );
    // The same job again, as a replayed batch delivers it, and the tablet's.
    let again = stage.process(&[&fine, &tablet]).await;
    assert!(again.iter().all(Result::is_ok), "{again:?}");

    let page = received(&fcm.url).await;
    let tokens: Vec<_> = page
        .received
        .iter()
        .filter(|r| r.message_id == fine.message_id.to_string())
        .collect();
    assert_eq!(
        tokens.len(),
        2,
        "the phone once and the tablet once: {tokens:?}"
    );
    assert_eq!(
        channel_status(&store, fine.message_id, Channel::Push).await,
        Some(ChannelStatus::Sent)
    );
}

/// A job of a campaign its sender cancelled is not pushed: the channel shows why, and the
/// campaign's tally hears of it; another campaign's job goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_campaigns_job_is_not_pushed() {
    use model::progress::ProgressRecord;
    use model::status::{ChannelOutcome, SkipReason};

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    let fcm = fake_fcm(Duration::from_secs(3600)).await;
    let stage = PushStage::new(
        Arc::clone(&store),
        Arc::clone(&bus),
        fcm_only(fcm.provider, 4),
    );
    let mut jobs = Vec::new();
    for (campaign, cancelled) in [("stopped", true), ("going", false)] {
        store
            .put_campaign(&model::campaign::Campaign {
                id: campaign.into(),
                service_id: "svc".into(),
                name: "Bollo".into(),
                created_at: model::timestamp::Timestamp::now(),
                cancelled_at: cancelled.then(model::timestamp::Timestamp::now),
                schedule: None,
            })
            .await
            .expect("campaign");
        let (_, mut job) = device(&format!("token-{campaign}"));
        job.campaign_id = Some(campaign.into());
        store
            .deliver(vec![sample_record_with_id(
                job.message_id,
                &job.fiscal_code,
                MessageStatus::Processed,
            )])
            .await
            .expect("deliver");
        jobs.push(job);
    }
    let verdicts = stage.process(&[&jobs[0], &jobs[1]]).await;
    assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");

    let page = received(&fcm.url).await;
    let pushed: Vec<_> = page.received.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(pushed, [jobs[1].message_id.to_string()]);
    let stopped = store
        .get_message(&jobs[0].message_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        stopped.notification.webhook,
        Some(ChannelOutcome::Skipped(SkipReason::CampaignCancelled))
    );
    let mut reports = bus
        .subscribe(topics::CAMPAIGN_PROGRESS, "t")
        .await
        .expect("subscribe");
    let reports = bus::conformance::collect(&mut *reports, 2).await;
    let reports: Vec<ProgressRecord> = reports
        .iter()
        .map(|r| model::pipeline::decode(&r.record.payload).expect("report"))
        .collect();
    let of = |campaign: &str| {
        reports
            .iter()
            .find(|r| r.campaign_id == campaign)
            .map(|r| r.items[0].progress.push)
    };
    assert_eq!(
        of("stopped"),
        Some(Some(
            ChannelOutcome::Skipped(SkipReason::CampaignCancelled).into()
        ))
    );
    assert_eq!(of("going"), Some(Some(ChannelStatus::Sent.into())));
}

/// In quiet hours only an urgent message's push goes; another waits in the store, on its
/// lane's push topic and key, for their end (spread over the hour after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_quiet_hours_only_urgent_pushes_go_and_the_others_wait_for_their_end() {
    use model::schedule::DailyWindow;
    use model::timestamp::Timestamp;

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    let fcm = fake_fcm(Duration::from_secs(3600)).await;
    // Quiet from an hour ago to an hour from now, whatever time the test runs.
    let now = time::OffsetDateTime::now_utc();
    let hhmm = |t: time::OffsetDateTime| format!("{:02}:{:02}", t.hour(), t.minute());
    let hours = format!(
        "{}-{}",
        hhmm(now - time::Duration::hours(1)),
        hhmm(now + time::Duration::hours(1))
    );
    let quiet = DailyWindow::parse("quiet", &hours, "UTC").expect("window");
    let stage = PushStage::new(
        Arc::clone(&store),
        Arc::clone(&bus),
        fcm_only(fcm.provider, 4),
    )
    .with_quiet_hours(Some(quiet.clone()));
    let (_, mut urgent) = device("token-urgent");
    urgent.urgent = true;
    let (_, routine) = device("token-routine");
    for job in [&urgent, &routine] {
        store
            .deliver(vec![sample_record_with_id(
                job.message_id,
                &job.fiscal_code,
                MessageStatus::Processed,
            )])
            .await
            .expect("deliver");
    }
    let verdicts = stage.process(&[&routine, &urgent]).await;
    assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");

    let page = received(&fcm.url).await;
    let pushed: Vec<_> = page.received.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(pushed, [urgent.message_id.to_string()]);
    assert_eq!(
        channel_status(&store, routine.message_id, Channel::Push).await,
        None
    );

    // Held until the quiet hours end, within the hour after.
    let end = quiet.next_close(Timestamp::now());
    let mut held = Vec::new();
    for minute in end.unix_millis() / 60_000..=end.unix_millis() / 60_000 + 61 {
        for shard in 0..store::SCHEDULE_SHARDS {
            held.extend(store.scheduled_in(minute, shard).await.expect("read"));
        }
    }
    assert_eq!(held.len(), 1, "{held:?}");
    let held = &held[0];
    assert_eq!(held.topic, topics::DELIVERIES_PUSH);
    assert_eq!(held.key, routine.key);
    assert!(held.due_ms >= end.unix_millis() && held.due_ms < end.unix_millis() + 3_600_000);
    let again: PushJob = model::pipeline::decode(&held.payload).expect("a push job");
    assert_eq!(again.message_id, routine.message_id);
}

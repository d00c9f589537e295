//! Starting and stopping Postino: every role in one process on the embedded log and store
//! under the data directory. Tests start it on port 0 exactly as `postino serve` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bus::embedded::EmbeddedBus;
use bus::stage::{self, PipelineStage, StageSettings};
use bus::Bus;
use campaigns::schedule::{IntakeStage, Releaser};
use campaigns::tally::TallyStage;
use citizen::{CitizenState, JwtKey, JwtVerifier};
use dispatchers::email::mailer::{Mailer, OutboxMailer, SmtpMailer};
use dispatchers::email::EmailStage;
use dispatchers::inbox::InboxStage;
use dispatchers::push::PushStage;
use ingest::{IngestState, Keys};
use model::pipeline::{topics, Lane};
use model::secret::Secret;
use problem::Problem;
use router::cache::ProfileCache;
use router::changes::{ChangeFollower, GROUP_PREFIX};
use router::RouterStage;
use store::metered::Backend;
use store::sqlite::SqliteStore;
use store::{KeyOwner, Store, StoreAddress};
use telemetry::ProcessFigures;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{BusChoice, Config, MetricsListen};
use crate::roles::Role;
use crate::secrets::{parse_secret, random_hex, read_or_create};

/// The setting holding the hash of the manage key in force.
const MANAGE_KEY_SETTING: &str = "manage_key_hash";
/// File, under the data directory, of the generated development JWT secret.
pub const JWT_DEV_SECRET_FILE: &str = "jwt-dev-secret";

/// A running Postino.
#[derive(Debug)]
pub struct App {
    /// Where the HTTP APIs listen (the real port when configured with port 0).
    pub addr: SocketAddr,
    /// Where `/metrics` is served, unless `metrics_listen = "off"`.
    pub metrics_addr: Option<SocketAddr>,
    /// The manage key generated on this start, if one was (printed once by `serve`).
    pub generated_manage_key: Option<String>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    /// The metrics listener: it answers until the very end of shutdown.
    metrics: Option<JoinHandle<()>>,
    stages: Vec<JoinHandle<Result<(), bus::BusError>>>,
    /// Why a stage ended before shutdown was asked for.
    stage_failures: mpsc::UnboundedReceiver<String>,
    /// Tasks that finish their queued work once the server is gone (ACCEPTED rows).
    background: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl App {
    pub async fn start(config: &Config) -> anyhow::Result<App> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        // Without a listener nobody reads the figures: no recorder, so recording them costs
        // next to nothing.
        if config.metrics_listen != MetricsListen::Off {
            crate::telemetry::install();
        }
        let backend = match config.store {
            StoreAddress::Sqlite => Backend::Sqlite,
            StoreAddress::Scylla(_) => Backend::Scylla,
        };
        let store = store::metered::Metered::wrap(open_store(config).await?, backend);
        let bus: Arc<dyn Bus> = match config.bus_choice() {
            BusChoice::Embedded => EmbeddedBus::open(dir).context("cannot open the log")?,
            BusChoice::Kafka(kafka) => connect_kafka(kafka)?,
        };
        let bus = bus::metered::Metered::wrap(bus);

        let (stop, stopped) = watch::channel(false);
        // Metrics first, so that a process slow to join its groups is already seen.
        let (metrics_addr, metrics) = match config.metrics_listen {
            MetricsListen::Off => (None, None),
            MetricsListen::On(addr) => {
                let figures =
                    ProcessFigures::new(env!("CARGO_PKG_VERSION"), config.roles.to_string());
                let (bound, task) = crate::telemetry::serve(addr, figures, stopped.clone()).await?;
                tracing::info!("metrics on http://{bound}/metrics");
                (Some(bound), Some(task))
            }
        };
        let (stage_failed, stage_failures) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            bus: Arc::clone(&bus),
            stopped: stopped.clone(),
            failed: stage_failed,
        };
        // Every process serves /health and /openapi.json; the APIs only where their role
        // runs. Stages join their groups before the server listens.
        let mut routes = Router::new();
        let mut bulk_routes = Router::new();
        let mut generated_manage_key = None;
        let mut background = Vec::new();
        let mut stages = Vec::new();
        for role in config.roles.iter() {
            match role {
                Role::Router => {
                    let embedded = config.store == StoreAddress::Sqlite;
                    let citizens = Arc::new(ProfileCache::new(
                        Arc::clone(&store),
                        config.router.cache_mb(embedded),
                        config.router.cache_ttl(),
                    ));
                    let group = change_group(config);
                    let follower = ChangeFollower::join(&*bus, &group, Arc::clone(&citizens))
                        .await
                        .with_context(|| {
                            format!("cannot follow {} as group {group}", topics::PROFILE_CHANGES)
                        })?;
                    stages.push(supervisor.spawn(
                        format!("the profile-change follower ({group})"),
                        follower.run(stopped.clone()),
                    ));
                    let stage =
                        RouterStage::with_cache(Arc::clone(&store), Arc::clone(&bus), citizens);
                    stages.extend(supervisor.start(stage, &config.stage).await?);
                    // The scheduler sits before routing: it takes what waits for its time,
                    // and releases it (one releaser at a time, by a lease) when it is due.
                    let intake = IntakeStage::new(Arc::clone(&store), Arc::clone(&bus));
                    let lanes = [Lane::Priority];
                    stages.extend(supervisor.start_on(intake, &config.stage, &lanes).await?);
                    let releaser = Releaser::new(Arc::clone(&store), Arc::clone(&bus));
                    stages.push(supervisor.spawn(
                        "the scheduler's releaser".to_string(),
                        releaser.run(stopped.clone()),
                    ));
                }
                Role::Inbox => {
                    let push = config.push.platforms();
                    if !push.any() {
                        tracing::warn!(
                            "no push provider is configured: pushes are skipped (no_push_provider)"
                        );
                    }
                    let stage = InboxStage::new(Arc::clone(&store), Arc::clone(&bus), push);
                    stages.extend(supervisor.start(stage, &config.stage).await?);
                    // The campaigns' tally runs beside the inbox writes: both are store
                    // writers, and it has one topic, not one per lane.
                    let tally = TallyStage::new(Arc::clone(&store));
                    let lanes = [Lane::Priority];
                    stages.extend(supervisor.start_on(tally, &config.stage, &lanes).await?);
                }
                Role::Push => {
                    let service = Arc::new(config.push.service()?);
                    let quiet = config.push.quiet_hours().map_err(anyhow::Error::msg)?;
                    match &quiet {
                        Some(hours) => {
                            tracing::info!(%hours, "quiet hours: only urgent pushes go then")
                        }
                        None => tracing::info!("no quiet hours: pushes go at any hour"),
                    }
                    let stage = PushStage::new(Arc::clone(&store), Arc::clone(&bus), service)
                        .with_quiet_hours(quiet);
                    stages.extend(supervisor.start(stage, &config.stage).await?);
                }
                Role::Email => {
                    let stage = email_stage(config, Arc::clone(&store), Arc::clone(&bus))?;
                    stages.extend(supervisor.start(stage, &config.stage).await?);
                }
                Role::Ingest => {
                    let secret = deployment_secret(config)?;
                    generated_manage_key = bootstrap_manage_key(
                        &*store,
                        config.manage_key.as_ref().map(Secret::expose),
                    )
                    .await?;
                    let (ingest, accepted_rows) = IngestState::new(
                        Arc::clone(&store),
                        Arc::clone(&bus),
                        Keys::new(&secret),
                        Keys::partition_key(&secret),
                        &config.ingest,
                    );
                    background.push(accepted_rows);
                    bulk_routes = bulk_routes.merge(ingest::bulk_router(ingest.clone()));
                    routes = routes.merge(ingest::router(ingest));
                }
                Role::Citizen => {
                    let jwt = Arc::new(jwt_verifier(config)?);
                    let store = Arc::clone(&store);
                    let bus = Arc::clone(&bus);
                    routes = routes.merge(citizen::router(CitizenState { store, jwt, bus }));
                }
            }
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let server_stop = stopped.clone();
        let problem_type_base = Arc::<str>::from(config.problem_type_base.as_str());
        let readiness = Readiness {
            store: Arc::clone(&store),
            bus: Arc::clone(&bus),
        };
        let http_settings = config.http.clone();
        let server = tokio::spawn(async move {
            // Request ids around the whole router (cloning a router is one reference count),
            // so every answer, the fallback's included, carries one.
            let routes = http(
                routes,
                bulk_routes,
                &problem_type_base,
                readiness,
                &http_settings,
            );
            let tagged = tower::Layer::layer(&crate::request_id::TagLayer, routes);
            crate::server::serve(
                listener,
                tagged,
                &http_settings,
                problem_type_base,
                server_stop,
            )
            .await;
            Ok::<(), std::io::Error>(())
        });
        tracing::info!(%addr, data_dir = %dir.display(), roles = %config.roles, bus = %config.bus, store = %config.store, "Postino listening on http://{addr}");
        Ok(App {
            addr,
            metrics_addr,
            metrics,
            generated_manage_key,
            stop,
            server,
            stages,
            stage_failures,
            background,
            grace: Duration::from_secs(config.shutdown_grace_secs),
        })
    }

    /// Runs until SIGTERM or Ctrl-C (or a role fails), then shuts down gracefully.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        let failed = tokio::select! {
            _ = shutdown_signal() => None,
            r = &mut self.server => Some(format!("HTTP server stopped: {r:?}")),
            Some(why) = self.stage_failures.recv() => Some(why),
        };
        if let Some(why) = &failed {
            tracing::error!("{why}");
        }
        self.shutdown().await?;
        match failed {
            Some(why) => anyhow::bail!(why),
            None => Ok(()),
        }
    }

    /// Stops accepting requests, lets in-flight requests and batches finish (each stage
    /// commits what it processed), and waits for all of it up to the grace period.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!("shutting down: draining in-flight work");
        let _ = self.stop.send(true);
        let server = self.server;
        let stages = self.stages;
        let background = self.background;
        let metrics = self.metrics;
        let drained = tokio::time::timeout(self.grace, async move {
            if !server.is_finished() {
                let _ = server.await;
            }
            for task in background {
                let _ = task.await;
            }
            for stage in stages {
                match stage.await {
                    Ok(Err(err)) => tracing::error!(error = %err, "stage ended with an error"),
                    Err(err) => tracing::error!(error = %err, "stage panicked"),
                    Ok(Ok(())) => {}
                }
            }
            if let Some(metrics) = metrics {
                let _ = metrics.await;
            }
        })
        .await;
        match drained {
            Ok(()) => {
                tracing::info!("shut down cleanly");
                Ok(())
            }
            Err(_) => anyhow::bail!("in-flight work did not finish within {:?}", self.grace),
        }
    }
}

/// The largest request body taken: ten times the largest valid message.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What a process needs to be of use: the store and the log answering. (Its stages joined
/// their groups before it listened, and a stage that stops stops the process.)
#[derive(Debug, Clone)]
struct Readiness {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
}

/// How long a readiness probe waits for the store or the log.
const READY_WITHIN: Duration = Duration::from_secs(2);

impl Readiness {
    /// `200` when the store and the log both answer within [`READY_WITHIN`]; `503`
    /// problem+json naming the one that does not.
    async fn answer(self) -> Result<&'static str, Problem> {
        let not_ready =
            |what: &str| Problem::unavailable(format!("not ready: the {what} does not answer"), 1);
        let store = tokio::time::timeout(READY_WITHIN, self.store.get_setting(MANAGE_KEY_SETTING));
        if !matches!(store.await, Ok(Ok(_))) {
            return Err(not_ready("store"));
        }
        let log = tokio::time::timeout(READY_WITHIN, self.bus.check());
        if !matches!(log.await, Ok(Ok(()))) {
            return Err(not_ready("log"));
        }
        Ok("ready")
    }
}

/// Every route of the process with the layers around them. `bulk` (the campaigns' routes)
/// keeps its own body limit and has no whole-request timeout.
fn http(
    apis: Router,
    bulk: Router,
    problem_type_base: &Arc<str>,
    readiness: Readiness,
    settings: &crate::server::HttpSettings,
) -> Router {
    apis.route(
        "/openapi.json",
        get(|| async { Json(crate::openapi::document()) }),
    )
    // Alive: the process answers. `/health` is its older name.
    .route("/healthz", get(|| async { "ok" }))
    .route("/health", get(|| async { "ok" }))
    .route("/readyz", get(move || readiness.clone().answer()))
    .fallback(|| async { Problem::not_found("no such endpoint; see /openapi.json") })
    .method_not_allowed_fallback(|| async {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "this endpoint does not take that method; see /openapi.json",
        )
    })
    .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
    .layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        settings.request_timeout(),
    ))
    .merge(bulk)
    .layer(crate::telemetry::TrackLayer)
    .layer(axum::middleware::map_response_with_state(
        Arc::clone(problem_type_base),
        every_error_a_problem,
    ))
}

/// Every error answer as problem+json with the deployment's `type` base. Rejections
/// produced by the framework itself (a body over the limit, a path that is not valid
/// UTF-8…) come as plain text: they become problems like every other error, keeping the
/// framework's explanation as the detail.
async fn every_error_a_problem(
    axum::extract::State(base): axum::extract::State<Arc<str>>,
    response: Response,
) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem {
        return problem::with_type_base(response, &base);
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let reason = status.canonical_reason().unwrap_or("Error");
    let detail = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::REQUEST_TIMEOUT) => {
            "the request was not read and answered within http.request_timeout_secs; send it again"
                .to_string()
        }
        (true, _) => reason.to_string(),
    };
    let kind = reason.to_ascii_lowercase().replace(' ', "-");
    problem::with_type_base(Problem::new(status, &kind, detail).into_response(), &base)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the pipeline's stages: each joins its consumer groups first, and each reports
/// ending before shutdown was asked for.
#[derive(Debug, Clone)]
struct Supervisor {
    bus: Arc<dyn Bus>,
    stopped: watch::Receiver<bool>,
    failed: mpsc::UnboundedSender<String>,
}

impl Supervisor {
    /// Joins `stage`'s consumer groups, then runs it until shutdown. The join is awaited
    /// here so that start-up fails when a stage cannot subscribe, and so that once
    /// `App::start` returns every stage's group holds its place in the log.
    async fn start<S: PipelineStage>(
        &self,
        stage: S,
        settings: &StageSettings,
    ) -> anyhow::Result<Vec<JoinHandle<Result<(), bus::BusError>>>> {
        // One run per lane, each on its own topic and group: a campaign queued in the bulk
        // lane never stands in front of a one-off message.
        self.start_on(stage, settings, &Lane::ALL).await
    }

    /// [`Self::start`] on `on` lanes only.
    async fn start_on<S: PipelineStage>(
        &self,
        stage: S,
        settings: &StageSettings,
        on: &[Lane],
    ) -> anyhow::Result<Vec<JoinHandle<Result<(), bus::BusError>>>> {
        let stage = Arc::new(stage);
        let mut lanes = Vec::with_capacity(on.len());
        for &lane in on {
            let (topic, group) = (lane.topic(S::TOPIC), lane.group(S::GROUP));
            let joined = stage::join(&*self.bus, topic, &group)
                .await
                .with_context(|| format!("cannot subscribe to {topic} as group {group}"))?;
            let run = joined.run(
                Arc::clone(&self.bus),
                Arc::clone(&stage),
                settings.stage_config(),
                self.stopped.clone(),
            );
            lanes.push(self.spawn(format!("the stage on {topic} ({group})"), run));
        }
        Ok(lanes)
    }

    /// Runs `stage` as a task. Should it end before shutdown was asked for (an error it
    /// cannot retry), it reports why, so that the process stops (and is restarted) instead
    /// of running on without it.
    fn spawn(
        &self,
        name: String,
        stage: impl std::future::Future<Output = Result<(), bus::BusError>> + Send + 'static,
    ) -> JoinHandle<Result<(), bus::BusError>> {
        let (stopped, failed) = (self.stopped.clone(), self.failed.clone());
        tokio::spawn(async move {
            let ended = stage.await;
            if !*stopped.borrow() {
                let why = match &ended {
                    Err(err) => format!("{name} stopped: {err}"),
                    Ok(()) => format!("{name} stopped before shutdown"),
                };
                let _ = failed.send(why);
            }
            ended
        })
    }
}

/// The email dispatcher: to the SMTP relay, or without one to the outbox's mailbox files.
fn email_stage(
    config: &Config,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
) -> anyhow::Result<EmailStage> {
    let mailer: Arc<dyn Mailer> = match config.smtp.relay(config.email.max_in_flight) {
        Some(smtp) => {
            tracing::info!(relay = %smtp.host, port = smtp.port, "emails go to the SMTP relay");
            Arc::new(SmtpMailer::new(&smtp)?)
        }
        None => {
            let outbox = config.email_outbox();
            tracing::warn!(outbox = %outbox.display(), "no smtp.host: emails are appended to the outbox's hourly .mbox files, not sent");
            Arc::new(
                OutboxMailer::new(outbox.clone()).with_context(|| {
                    format!("cannot create the email outbox {}", outbox.display())
                })?,
            )
        }
    };
    Ok(EmailStage::new(
        store,
        bus,
        mailer,
        config.email.from.clone(),
        config.email.max_in_flight,
    ))
}

/// The consumer group of this process's profile-change follower: one of its own, since
/// every router process must read every change. On the embedded log (one process) a fixed
/// name; on Kafka, the process's static id when it has one (so a restart resumes), else a
/// fresh one.
fn change_group(config: &Config) -> String {
    match (&config.bus_choice(), &config.kafka.group_instance_id) {
        (BusChoice::Embedded, _) => GROUP_PREFIX.to_string(),
        (BusChoice::Kafka(_), Some(id)) => format!("{GROUP_PREFIX}.{id}"),
        (BusChoice::Kafka(_), None) => format!("{GROUP_PREFIX}.{}", random_hex(8)),
    }
}

/// The store `config` names: the SQLite file under the data directory, or the cluster.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match &config.store {
        StoreAddress::Sqlite => Ok(Arc::new(
            SqliteStore::open(&config.data_dir).context("cannot open the store")?,
        )),
        StoreAddress::Scylla(address) => connect_scylla(address, &config.scylla).await,
    }
}

#[cfg(feature = "scylla")]
async fn connect_scylla(
    address: &store::scylla::ScyllaAddress,
    settings: &store::scylla::ScyllaSettings,
) -> anyhow::Result<Arc<dyn Store>> {
    let store = store::scylla::ScyllaStore::connect(address, settings)
        .await
        .with_context(|| format!("cannot open the store at {address}"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "scylla"))]
async fn connect_scylla(
    _: &store::scylla::ScyllaAddress,
    _: &store::scylla::ScyllaSettings,
) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!("store: this build of Postino has no ScyllaDB client (built without the `scylla` feature); use store = \"sqlite\" or a build with it")
}

#[cfg(feature = "kafka")]
fn connect_kafka(kafka: bus::kafka::KafkaConfig) -> anyhow::Result<Arc<dyn Bus>> {
    Ok(bus::kafka::KafkaBus::connect(kafka).context("cannot set up Kafka")?)
}

#[cfg(not(feature = "kafka"))]
fn connect_kafka(_: bus::kafka::KafkaConfig) -> anyhow::Result<Arc<dyn Bus>> {
    anyhow::bail!("bus: this build of Postino has no Kafka client (built without the `kafka` feature); use bus = \"embedded\" or a build with it")
}

fn deployment_secret(config: &Config) -> anyhow::Result<[u8; 32]> {
    let text = match &config.secret {
        Some(s) => s.expose().to_string(),
        None => read_or_create(&config.data_dir.join("secret"), || random_hex(32))
            .context("cannot read or create the deployment secret")?,
    };
    parse_secret(&text).map_err(|e| anyhow::anyhow!("deployment secret: {e}"))
}

/// Makes the configured manage key the one in force (revoking a previous one), or on the
/// very first start without one, generates a key and returns it to be shown once.
pub async fn bootstrap_manage_key(
    store: &dyn Store,
    configured: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let current = store.get_setting(MANAGE_KEY_SETTING).await?;
    match configured {
        Some(key) => {
            let hash = Keys::hash(key);
            if current.as_deref() != Some(hash.as_str()) {
                store.put_key(&hash, &KeyOwner::Manage).await?;
                store.put_setting(MANAGE_KEY_SETTING, &hash).await?;
                if let Some(old) = current {
                    store.delete_key(&old).await?;
                    tracing::info!("manage key changed; the previous one is revoked");
                }
            }
            Ok(None)
        }
        None if current.is_some() => Ok(None),
        None => {
            let key = random_hex(16);
            let hash = Keys::hash(&key);
            store.put_key(&hash, &KeyOwner::Manage).await?;
            if store
                .put_setting_if_absent(MANAGE_KEY_SETTING, &hash)
                .await?
            {
                Ok(Some(key))
            } else {
                // Another process issued one first; keep only theirs.
                store.delete_key(&hash).await?;
                Ok(None)
            }
        }
    }
}

/// The HS256 secret for development tokens: configured, or the generated one.
pub fn dev_jwt_secret(config: &Config, create: bool) -> anyhow::Result<String> {
    if let Some(secret) = &config.jwt.secret {
        return Ok(secret.expose().to_string());
    }
    let path = config.data_dir.join(JWT_DEV_SECRET_FILE);
    if create {
        return read_or_create(&path, || random_hex(32))
            .context("cannot create the development JWT secret");
    }
    std::fs::read_to_string(&path).map(|s| s.trim().to_string()).with_context(|| {
        format!(
            "no JWT secret: set POSTINO_JWT_SECRET, or start `postino serve` once with --data-dir {} so it generates {}",
            config.data_dir.display(),
            path.display()
        )
    })
}

fn jwt_verifier(config: &Config) -> anyhow::Result<JwtVerifier> {
    let key = match config.jwt.public_key() {
        Some(key) => key,
        None => {
            if config.jwt.secret.is_none() {
                tracing::warn!(
                    "citizen tokens use a generated development HS256 secret ({}); configure jwt.public_key_file in production",
                    config.data_dir.join(JWT_DEV_SECRET_FILE).display()
                );
            }
            JwtKey::Hs256Secret(dev_jwt_secret(config, true)?)
        }
    };
    JwtVerifier::new(
        &key,
        config.jwt.issuer.as_deref(),
        config.jwt.audience.as_deref(),
    )
    .context("citizen JWT configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stage_ending_before_shutdown_is_reported_and_one_ended_by_shutdown_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("log");
        let (stop, stopped) = watch::channel(false);
        let (failed, mut failures) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            bus,
            stopped,
            failed,
        };

        let broken = supervisor.spawn("the stage on work (g)".into(), async {
            Err(bus::BusError::InvalidRecord(
                "too large for the topic".into(),
            ))
        });
        assert!(broken.await.expect("join").is_err());
        let why = failures.recv().await.expect("reported");
        assert!(
            why.contains("the stage on work (g)") && why.contains("too large for the topic"),
            "{why}"
        );

        stop.send(true).expect("stop");
        let drained = supervisor.spawn("the stage on work (g)".into(), async { Ok(()) });
        drained.await.expect("join").expect("ended cleanly");
        drop(supervisor);
        assert_eq!(failures.recv().await, None, "nothing more was reported");
    }
}

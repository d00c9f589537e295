//! Configuration, layered: built-in defaults, then a TOML file (`--config` or
//! `POSTINO_CONFIG`), then `POSTINO_*` environment variables, then command-line flags.
//! Unknown keys in the file are errors, so a typo is caught at start-up, not in production.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dispatchers::email::{SmtpSettings, SmtpTls};
use dispatchers::push::ClientSettings;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP APIs listen.
    pub listen: SocketAddr,
    /// Where the embedded log, the store and generated secrets live.
    pub data_dir: PathBuf,
    /// The operators' manage key. When unset, one is generated and printed on first start.
    pub manage_key: Option<String>,
    /// 64 hex characters: derives service keys and the citizen hash that partitions the
    /// bus. When unset, generated once into `<data_dir>/secret`.
    pub secret: Option<String>,
    /// HS256 secret for citizen tokens (development). When neither this nor
    /// `jwt_public_key_file` is set, one is generated into `<data_dir>/jwt-dev-secret`.
    pub jwt_secret: Option<String>,
    /// PEM public key verifying citizen tokens in production (RS256 or ES256).
    pub jwt_public_key_file: Option<PathBuf>,
    /// `RS256` or `ES256`, for `jwt_public_key_file`.
    pub jwt_algorithm: Option<String>,
    /// Required `iss` of citizen tokens, if set.
    pub jwt_issuer: Option<String>,
    /// Required `aud` of citizen tokens, if set.
    pub jwt_audience: Option<String>,
    /// Log filter, e.g. `info` or `postino=debug,info`.
    pub log: String,
    /// How long shutdown waits for in-flight work before giving up.
    pub shutdown_grace_secs: u64,
    /// Which roles this process runs: `all`, or a comma-separated subset of `ingest`,
    /// `citizen`, `router`, `inbox`, `push`, `email`.
    pub roles: String,
    /// The log between stages: `embedded` (under `data_dir`) or
    /// `kafka://host:port[,host:port…]`.
    pub bus: String,
    /// Partitions of each topic Postino creates on Kafka.
    pub kafka_partitions: i32,
    /// Replication factor of each topic Postino creates on Kafka.
    pub kafka_replication_factor: i32,
    /// How long a publish waits for Kafka before ingest answers 503.
    pub kafka_publish_timeout_ms: u64,
    /// How long Kafka keeps records of the pipeline topics (default 7 days, the longest
    /// `time_to_live`), for topics `postino kafka init` creates.
    pub kafka_retention_ms: u64,
    /// How long Kafka keeps dead-lettered records (default 30 days: time to look at them).
    pub kafka_dlq_retention_ms: u64,
    /// Static group membership (KIP-345): a stable id for this process, such as the pod
    /// name of a StatefulSet. A restarted consumer with the same id takes its predecessor's
    /// partitions at once instead of waiting for the group to notice the old one died.
    pub kafka_group_instance_id: Option<String>,
    /// librdkafka properties for every Kafka client: security (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`…) or tuning.
    pub kafka_properties: std::collections::BTreeMap<String, String>,
    /// Most a Kafka consumer fetches ahead of its stage, in KiB. When a stage falls behind,
    /// its consumer stops fetching at this bound instead of buffering without limit.
    pub kafka_prefetch_kbytes: u32,
    /// Attempts a record gets in a stage (the first one included) before it goes to
    /// `<topic>.dlq`.
    pub retry_max_attempts: u32,
    /// Delay before a failed record's second attempt, through `<topic>.retry`; it doubles
    /// with each further attempt.
    pub retry_initial_ms: u64,
    /// Longest delay between two attempts of a record.
    pub retry_max_ms: u64,
    /// How long a stage whose poll found less than a full batch waits for more before it
    /// processes the batch: fewer, fuller batches (each costs a few fsyncs) under a steady
    /// stream, for that much more latency per stage.
    pub stage_linger_ms: u64,
    /// FCM: the Google service-account key file (JSON). Without it, FCM devices get no
    /// push (the message shows `skipped_channels.webhook = no_push_provider`).
    pub fcm_service_account: Option<PathBuf>,
    /// FCM's base URL (a stand-in's in tests).
    pub fcm_base_url: String,
    /// FCM sends a minute: the project's quota (600,000 by default, FCM's own).
    pub fcm_per_minute: u32,
    /// APNs: the `.p8` signing key. With it, `apns_key_id`, `apns_team_id` and
    /// `apns_topic` (the app's bundle id) are required.
    pub apns_key_file: Option<PathBuf>,
    pub apns_key_id: Option<String>,
    pub apns_team_id: Option<String>,
    pub apns_topic: Option<String>,
    /// APNs' base URL (`https://api.sandbox.push.apple.com` for development builds).
    pub apns_base_url: String,
    /// APNs sends a minute.
    pub apns_per_minute: u32,
    /// Push requests in flight at once, per provider.
    pub push_max_in_flight: usize,
    /// How long one push request may take before it is retried.
    pub push_timeout_ms: u64,
    /// CA certificates (PEM) the push client trusts besides the system's: for an egress
    /// proxy that re-signs TLS on its way to FCM and APNs.
    pub push_ca_file: Option<PathBuf>,
    /// The SMTP relay's host. Without it, emails are appended to hourly `.mbox` files in
    /// `email_outbox` instead of being sent.
    pub smtp_host: Option<String>,
    /// The relay's port (default: 587 with `starttls`, 465 with `tls`, 25 with `none`).
    pub smtp_port: Option<u16>,
    /// `starttls` (required, not opportunistic), `tls` (implicit TLS) or `none` (only for a
    /// relay on the same host).
    pub smtp_tls: String,
    /// `AUTH` user, with `smtp_password`.
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// A CA certificate (PEM) to trust for the relay, besides the system's: for a relay
    /// whose certificate a private CA signed.
    pub smtp_ca_file: Option<PathBuf>,
    /// How long one SMTP exchange may take before the email is retried.
    pub smtp_timeout_ms: u64,
    /// The address emails come from; the sender's name is the service's and organisation's.
    pub email_from: String,
    /// Emails in flight at once (and SMTP connections kept open).
    pub email_max_in_flight: usize,
    /// Where emails go when no SMTP relay is configured (default `<data_dir>/outbox`).
    pub email_outbox: Option<PathBuf>,
    /// What every problem+json `type` starts with: an absolute URI, as IO's `ProblemJson`
    /// declares it; the kind of problem (`validation-error`) follows. Point it at the
    /// deployment's documentation of its errors.
    pub problem_type_base: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            manage_key: None,
            secret: None,
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_algorithm: None,
            jwt_issuer: None,
            jwt_audience: None,
            log: "info".into(),
            shutdown_grace_secs: 30,
            roles: "all".into(),
            bus: "embedded".into(),
            kafka_partitions: 12,
            kafka_replication_factor: 1,
            kafka_publish_timeout_ms: 10_000,
            kafka_retention_ms: 7 * 24 * 3600 * 1000,
            kafka_dlq_retention_ms: 30 * 24 * 3600 * 1000,
            kafka_group_instance_id: None,
            kafka_properties: Default::default(),
            kafka_prefetch_kbytes: 16 * 1024,
            retry_max_attempts: 5,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            stage_linger_ms: 5,
            fcm_service_account: None,
            fcm_base_url: "https://fcm.googleapis.com".into(),
            fcm_per_minute: 600_000,
            apns_key_file: None,
            apns_key_id: None,
            apns_team_id: None,
            apns_topic: None,
            apns_base_url: "https://api.push.apple.com".into(),
            apns_per_minute: 600_000,
            push_max_in_flight: 100,
            push_timeout_ms: 10_000,
            push_ca_file: None,
            smtp_host: None,
            smtp_port: None,
            smtp_tls: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            smtp_ca_file: None,
            smtp_timeout_ms: 30_000,
            email_from: "notifiche@postino.localhost".into(),
            email_max_in_flight: 16,
            email_outbox: None,
            problem_type_base: model::problem::DEFAULT_TYPE_BASE.into(),
        }
    }
}

/// Settings whose values never print.
const SECRET_KEYS: &[&str] = &["manage_key", "secret", "jwt_secret", "smtp_password"];

/// Every setting, with the secrets (and Kafka properties naming a password or secret)
/// shown as `<redacted>`, so a configuration can be logged whole.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut value = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        let redacted = || serde_json::Value::String("<redacted>".into());
        for key in SECRET_KEYS {
            if let Some(v) = value.get_mut(*key).filter(|v| !v.is_null()) {
                *v = redacted();
            }
        }
        if let Some(properties) = value
            .get_mut("kafka_properties")
            .and_then(serde_json::Value::as_object_mut)
        {
            for (name, v) in properties.iter_mut() {
                if name.contains("password") || name.contains("secret") {
                    *v = redacted();
                }
            }
        }
        write!(f, "Config {value}")
    }
}

/// Values given on the command line; they override everything else.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
}

const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "manage_key",
    "secret",
    "jwt_secret",
    "jwt_public_key_file",
    "jwt_algorithm",
    "jwt_issuer",
    "jwt_audience",
    "log",
    "shutdown_grace_secs",
    "roles",
    "bus",
    "kafka_partitions",
    "kafka_replication_factor",
    "kafka_publish_timeout_ms",
    "kafka_retention_ms",
    "kafka_dlq_retention_ms",
    "kafka_group_instance_id",
    "kafka_properties",
    "kafka_prefetch_kbytes",
    "retry_max_attempts",
    "retry_initial_ms",
    "retry_max_ms",
    "stage_linger_ms",
    "fcm_service_account",
    "fcm_base_url",
    "fcm_per_minute",
    "apns_key_file",
    "apns_key_id",
    "apns_team_id",
    "apns_topic",
    "apns_base_url",
    "apns_per_minute",
    "push_max_in_flight",
    "push_timeout_ms",
    "push_ca_file",
    "smtp_host",
    "smtp_port",
    "smtp_tls",
    "smtp_username",
    "smtp_password",
    "smtp_ca_file",
    "smtp_timeout_ms",
    "email_from",
    "email_max_in_flight",
    "email_outbox",
    "problem_type_base",
];

/// Every role `--roles` takes, in pipeline order.
pub const ROLE_NAMES: [&str; 6] = ["ingest", "citizen", "router", "inbox", "push", "email"];

/// The roles one process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    pub ingest: bool,
    pub citizen: bool,
    pub router: bool,
    pub inbox: bool,
    pub push: bool,
    pub email: bool,
}

impl Roles {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.trim() == "all" {
            return Ok(Self {
                ingest: true,
                citizen: true,
                router: true,
                inbox: true,
                push: true,
                email: true,
            });
        }
        let mut roles = Self::default();
        for role in text.split(',').map(str::trim) {
            match role {
                "ingest" => roles.ingest = true,
                "citizen" => roles.citizen = true,
                "router" => roles.router = true,
                "inbox" => roles.inbox = true,
                "push" => roles.push = true,
                "email" => roles.email = true,
                other => {
                    return Err(ConfigError(format!(
                        "roles: unknown role {other:?}; use all, or a comma-separated subset of {}",
                        ROLE_NAMES.join(", ")
                    )))
                }
            }
        }
        Ok(roles)
    }
}

/// Where the log lives.
#[derive(Debug, Clone, PartialEq)]
pub enum BusChoice {
    Embedded,
    Kafka(bus::kafka::KafkaConfig),
}

/// Why the configuration was refused; the message names the key.
#[derive(Debug)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

impl Config {
    /// Loads the layers. `file` is the `--config` path (or `POSTINO_CONFIG`); a named file
    /// that does not exist is an error.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(Env::prefixed("POSTINO_").only(ENV_KEYS))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError(format!("invalid configuration: {e}")))?;
        config.check()?;
        Ok(config)
    }

    /// The platforms with a push provider configured. The inbox role reads this too, to
    /// make push jobs only for devices some provider can reach: give it the same provider
    /// keys as the push role.
    pub fn push_platforms(&self) -> dispatchers::push::PushPlatforms {
        dispatchers::push::PushPlatforms {
            fcm: self.fcm_service_account.is_some(),
            apns: self.apns_key_file.is_some(),
        }
    }

    pub fn roles(&self) -> Result<Roles, ConfigError> {
        Roles::parse(&self.roles)
    }

    pub fn bus(&self) -> Result<BusChoice, ConfigError> {
        if self.bus == "embedded" {
            return Ok(BusChoice::Embedded);
        }
        let servers = self.bus.strip_prefix("kafka://").ok_or_else(|| {
            ConfigError(format!(
                "bus: {:?} is neither `embedded` nor `kafka://host:port[,host:port…]`",
                self.bus
            ))
        })?;
        let valid_server = |s: &str| {
            s.rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        };
        if servers.is_empty() || !servers.split(',').all(valid_server) {
            return Err(ConfigError(format!(
                "bus: {:?} must list host:port pairs after kafka://",
                self.bus
            )));
        }
        if self.kafka_partitions < 1 || self.kafka_replication_factor < 1 {
            return Err(ConfigError(
                "kafka_partitions and kafka_replication_factor must be at least 1".into(),
            ));
        }
        let mut kafka = bus::kafka::KafkaConfig::new(servers);
        kafka.partitions = self.kafka_partitions;
        kafka.replication_factor = self.kafka_replication_factor;
        kafka.publish_timeout = std::time::Duration::from_millis(self.kafka_publish_timeout_ms);
        kafka.properties = self.kafka_properties.clone();
        kafka.group_instance_id = self.kafka_group_instance_id.clone();
        kafka.prefetch_kbytes = self.kafka_prefetch_kbytes;
        Ok(BusChoice::Kafka(kafka))
    }

    /// How the push providers' client connects: `push_timeout_ms`, and `push_ca_file`'s
    /// certificates trusted besides the system's.
    pub fn push_client(&self) -> Result<ClientSettings, ConfigError> {
        let settings = ClientSettings::new(std::time::Duration::from_millis(self.push_timeout_ms));
        let Some(path) = &self.push_ca_file else {
            return Ok(settings);
        };
        let pem = std::fs::read(path).map_err(|e| {
            ConfigError(format!("push_ca_file: cannot read {}: {e}", path.display()))
        })?;
        settings
            .trusting_pem(&pem)
            .map_err(|e| ConfigError(format!("push_ca_file: {}: {e}", path.display())))
    }

    /// The SMTP relay, when one is configured.
    pub fn smtp(&self) -> Result<Option<SmtpSettings>, ConfigError> {
        let tls = match self.smtp_tls.as_str() {
            "starttls" => SmtpTls::StartTls,
            "tls" => SmtpTls::Implicit,
            "none" => SmtpTls::None,
            other => {
                return Err(ConfigError(format!(
                    "smtp_tls: {other:?} is not one of starttls, tls, none"
                )))
            }
        };
        let credentials = match (&self.smtp_username, &self.smtp_password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "smtp_username and smtp_password go together".into(),
                ))
            }
        };
        let Some(host) = self.smtp_host.clone() else {
            return Ok(None);
        };
        if host.trim().is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(ConfigError(format!(
                "smtp_host: {host:?} must be a host name or address, without scheme or port"
            )));
        }
        let ca_pem = match &self.smtp_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                ConfigError(format!("smtp_ca_file: cannot read {}: {e}", path.display()))
            })?),
            None => None,
        };
        Ok(Some(SmtpSettings {
            ca_pem,
            port: self.smtp_port.unwrap_or(tls.default_port()),
            host,
            tls,
            credentials,
            pool_size: u32::try_from(self.email_max_in_flight).unwrap_or(u32::MAX),
            timeout: std::time::Duration::from_millis(self.smtp_timeout_ms),
        }))
    }

    /// The address emails come from.
    pub fn email_from(&self) -> Result<lettre::Address, ConfigError> {
        self.email_from.parse().map_err(|e| {
            ConfigError(format!(
                "email_from: {:?} is not an email address ({e})",
                self.email_from
            ))
        })
    }

    /// Where emails go without a relay.
    pub fn email_outbox(&self) -> PathBuf {
        self.email_outbox
            .clone()
            .unwrap_or_else(|| self.data_dir.join("outbox"))
    }

    /// How every stage polls, batches and retries.
    pub fn stage(&self) -> bus::stage::StageConfig {
        use std::time::Duration;
        bus::stage::StageConfig {
            max_attempts: self.retry_max_attempts,
            retry_initial: Duration::from_millis(self.retry_initial_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            linger: Duration::from_millis(self.stage_linger_ms),
            ..Default::default()
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.roles()?;
        self.bus()?;
        if self.stage_linger_ms > 1000 {
            return Err(ConfigError(
                "stage_linger_ms must be at most 1000: a batch waits that long at every stage"
                    .into(),
            ));
        }
        if self.retry_max_attempts < 1 {
            return Err(ConfigError("retry_max_attempts must be at least 1".into()));
        }
        // A retry lane waits for its records while it holds the consumer: stay well inside
        // Kafka's default poll interval of 5 minutes.
        if self.retry_initial_ms > self.retry_max_ms || self.retry_max_ms > 240_000 {
            return Err(ConfigError(
                "retry_initial_ms must not exceed retry_max_ms, and retry_max_ms must be at most 240000 (4 minutes)".into(),
            ));
        }
        if self.fcm_per_minute < 1 || self.apns_per_minute < 1 || self.push_max_in_flight < 1 {
            return Err(ConfigError(
                "fcm_per_minute, apns_per_minute and push_max_in_flight must be at least 1".into(),
            ));
        }
        if self.apns_key_file.is_some()
            && (self.apns_key_id.is_none()
                || self.apns_team_id.is_none()
                || self.apns_topic.is_none())
        {
            return Err(ConfigError(
                "apns_key_file needs apns_key_id, apns_team_id and apns_topic (the app's bundle id)".into(),
            ));
        }
        self.push_client()?;
        self.smtp()?;
        self.email_from()?;
        if self.email_max_in_flight < 1 {
            return Err(ConfigError("email_max_in_flight must be at least 1".into()));
        }
        if self.kafka_prefetch_kbytes < 1024 {
            return Err(ConfigError(
                "kafka_prefetch_kbytes must be at least 1024 (1 MiB)".into(),
            ));
        }
        if !model::problem::is_absolute_uri(&self.problem_type_base) {
            return Err(ConfigError(format!(
                "problem_type_base must be an absolute URI (scheme:…), such as https://docs.example.org/problems/ or {}; got {:?}",
                model::problem::DEFAULT_TYPE_BASE,
                self.problem_type_base
            )));
        }
        if let Some(secret) = &self.secret {
            crate::secrets::parse_secret(secret)
                .map_err(|e| ConfigError(format!("secret: {e}")))?;
        }
        match (
            self.jwt_public_key_file.is_some(),
            self.jwt_algorithm.as_deref(),
        ) {
            (true, Some("RS256" | "ES256")) | (false, None) => {}
            (true, _) => {
                return Err(ConfigError(
                    "jwt_algorithm must be RS256 or ES256 when jwt_public_key_file is set".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(ConfigError(
                    "jwt_algorithm is set but jwt_public_key_file is not".into(),
                ))
            }
        }
        if self.manage_key.as_deref().is_some_and(|k| k.len() < 16) {
            return Err(ConfigError(
                "manage_key must be at least 16 characters".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_file(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("postino.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(Some(&path), Overrides::default())
    }

    #[test]
    fn roles_and_kafka_settings_parse() {
        let c = load_file("roles = \"router, inbox\"\nbus = \"kafka://10.0.0.1:9092,10.0.0.2:9092\"\nkafka_partitions = 24\n[kafka_properties]\n\"security.protocol\" = \"SASL_SSL\"\n").expect("load");
        assert_eq!(
            c.roles().expect("roles"),
            Roles {
                ingest: false,
                citizen: false,
                router: true,
                inbox: true,
                push: false,
                email: false,
            }
        );
        let BusChoice::Kafka(k) = c.bus().expect("bus") else {
            panic!("kafka expected")
        };
        assert_eq!(k.bootstrap_servers, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(k.partitions, 24);
        assert_eq!(
            k.properties.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!(Config::default().bus().expect("bus"), BusChoice::Embedded);
        assert!(Config::default().roles().expect("roles").ingest);
        let every = Roles::parse(&ROLE_NAMES.join(",")).expect("every named role parses");
        assert_eq!(every, Roles::parse("all").expect("all"));
    }

    #[test]
    fn retry_settings_reach_every_stage() {
        let c = load_file(
            "retry_max_attempts = 8\nretry_initial_ms = 250\nretry_max_ms = 30000\nstage_linger_ms = 20\n",
        )
        .expect("load");
        let stage = c.stage();
        assert_eq!(stage.linger, std::time::Duration::from_millis(20));
        assert_eq!(stage.max_attempts, 8);
        assert_eq!(stage.retry_initial, std::time::Duration::from_millis(250));
        assert_eq!(stage.retry_max, std::time::Duration::from_secs(30));
    }

    #[test]
    fn defaults_then_file_then_flags() {
        let c = load_file("listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/p\"\n").expect("load");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/p"));
        assert_eq!(c.log, "info");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("postino.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n").expect("write");
        let flags = Overrides {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9100))),
            ..Overrides::default()
        };
        assert_eq!(
            Config::load(Some(&path), flags)
                .expect("load")
                .listen
                .port(),
            9100
        );
    }

    #[test]
    fn secrets_never_print() {
        let c = load_file(
            "manage_key = \"manage-key-very-secret-1\"\njwt_secret = \"jwt-very-secret-2\"\nsmtp_password = \"smtp-very-secret-3\"\nsmtp_username = \"postino\"\n[kafka_properties]\n\"sasl.password\" = \"kafka-very-secret-4\"\n\"sasl.username\" = \"kafka-user\"\n",
        )
        .expect("load");
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(
            shown.contains("<redacted>")
                && shown.contains("kafka-user")
                && shown.contains("postino")
        );
    }

    #[test]
    fn smtp_settings_default_their_port_and_keep_the_password_out_of_debug() {
        assert!(
            Config::default().smtp().expect("smtp").is_none(),
            "no relay: the outbox"
        );
        let c = load_file(
            "smtp_host = \"relay.example\"\nsmtp_tls = \"tls\"\nsmtp_username = \"postino\"\nsmtp_password = \"s3cret-pass\"\n",
        )
        .expect("load");
        let smtp = c.smtp().expect("valid").expect("configured");
        assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Implicit));
        assert!(!format!("{smtp:?}").contains("s3cret-pass"));
        let c = load_file("smtp_host = \"relay.example\"\nsmtp_port = 2525\n").expect("load");
        let smtp = c.smtp().expect("valid").expect("configured");
        assert_eq!((smtp.port, smtp.tls), (2525, SmtpTls::StartTls));
        assert_eq!(
            Config::default().email_outbox(),
            PathBuf::from("data/outbox")
        );
    }

    #[test]
    fn malformed_configuration_is_refused_with_the_key_named() {
        let err = load_file("listne = \"127.0.0.1:9000\"\n").expect_err("typo");
        assert!(err.to_string().contains("listne"), "{err}");
        let err = load_file("listen = \"not an address\"\n").expect_err("bad address");
        assert!(err.to_string().contains("listen"), "{err}");
        let err = load_file("secret = \"abc\"\n").expect_err("short secret");
        assert!(err.to_string().contains("secret"), "{err}");
        // 64 bytes with a two-byte character among them: an error naming the key, not a
        // panic slicing through the character.
        let accented = format!("{}é{}", "a".repeat(31), "b".repeat(31));
        let err = load_file(&format!("secret = \"{accented}\"\n")).expect_err("not hex");
        assert!(err.to_string().contains("secret: must be hex"), "{err}");
        let err = load_file("jwt_public_key_file = \"/k.pem\"\n").expect_err("no algorithm");
        assert!(err.to_string().contains("jwt_algorithm"), "{err}");
        let err = load_file("listen = [1, 2\n").expect_err("not TOML");
        assert!(err.to_string().contains("invalid configuration"), "{err}");
        let err = load_file("roles = \"ingest,mailer\"\n").expect_err("unknown role");
        assert!(err.to_string().contains("mailer"), "{err}");
        let err = load_file("bus = \"kafka://\"\n").expect_err("no servers");
        assert!(err.to_string().contains("bus"), "{err}");
        let err = load_file("bus = \"rabbitmq://x:1\"\n").expect_err("unknown bus");
        assert!(err.to_string().contains("bus"), "{err}");
        let err = load_file("bus = \"kafka://host-without-port\"\n").expect_err("no port");
        assert!(err.to_string().contains("host:port"), "{err}");
        let err = load_file("stage_linger_ms = 5000\n").expect_err("linger too long");
        assert!(err.to_string().contains("stage_linger_ms"), "{err}");
        let err = load_file("retry_max_attempts = 0\n").expect_err("no attempts");
        assert!(err.to_string().contains("retry_max_attempts"), "{err}");
        let err = load_file("retry_max_ms = 600000\n").expect_err("longer than a poll");
        assert!(err.to_string().contains("retry_max_ms"), "{err}");
        let err = load_file("retry_initial_ms = 5000\nretry_max_ms = 1000\n")
            .expect_err("initial above max");
        assert!(err.to_string().contains("retry_initial_ms"), "{err}");
        let err = load_file("kafka_prefetch_kbytes = 10\n").expect_err("tiny prefetch");
        assert!(err.to_string().contains("kafka_prefetch_kbytes"), "{err}");
        let err = load_file("apns_key_file = \"/k.p8\"\napns_key_id = \"K\"\n")
            .expect_err("APNs key without team and topic");
        assert!(err.to_string().contains("apns_team_id"), "{err}");
        let err = load_file("fcm_per_minute = 0\n").expect_err("no quota");
        assert!(err.to_string().contains("fcm_per_minute"), "{err}");
        let err = load_file("push_max_in_flight = -3\n").expect_err("negative");
        assert!(err.to_string().contains("push_max_in_flight"), "{err}");
        let err = load_file("retry_max_attempts = -1\n").expect_err("negative");
        assert!(err.to_string().contains("retry_max_attempts"), "{err}");
        let err = load_file("smtp_tls = \"ssl\"\n").expect_err("unknown TLS mode");
        assert!(err.to_string().contains("smtp_tls"), "{err}");
        let err = load_file("smtp_host = \"smtp://relay.example\"\n").expect_err("a URL");
        assert!(err.to_string().contains("smtp_host"), "{err}");
        let err = load_file("smtp_host = \"relay.example\"\nsmtp_username = \"postino\"\n")
            .expect_err("user without password");
        assert!(err.to_string().contains("smtp_password"), "{err}");
        let err = load_file("email_from = \"postino\"\n").expect_err("not an address");
        assert!(err.to_string().contains("email_from"), "{err}");
        let err = load_file("smtp_port = 70000\n").expect_err("port out of range");
        assert!(err.to_string().contains("smtp_port"), "{err}");
        let err =
            load_file("smtp_host = \"relay.example\"\nsmtp_ca_file = \"/nonexistent/ca.pem\"\n")
                .expect_err("no CA file");
        assert!(err.to_string().contains("smtp_ca_file"), "{err}");
        let err = load_file("push_ca_file = \"/nonexistent/ca.pem\"\n").expect_err("no CA file");
        assert!(err.to_string().contains("push_ca_file"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").expect("write");
        let err = load_file(&format!(
            "push_ca_file = {:?}\n",
            not_pem.display().to_string()
        ))
        .expect_err("not a certificate");
        assert!(err.to_string().contains("push_ca_file"), "{err}");
        let err = load_file("problem_type_base = \"/problems/\"\n").expect_err("relative");
        assert!(err.to_string().contains("problem_type_base"), "{err}");
        let err = load_file("email_max_in_flight = 0\n").expect_err("none in flight");
        assert!(err.to_string().contains("email_max_in_flight"), "{err}");
        let err = Config::load(
            Some(Path::new("/nonexistent/postino.toml")),
            Overrides::default(),
        )
        .expect_err("missing");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}

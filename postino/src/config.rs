//! Configuration, layered: built-in defaults, then a TOML file (`--config` or
//! `POSTINO_CONFIG`), then `POSTINO_*` environment variables, then command-line flags.
//!
//! The file has a few top-level keys and one section per part of Postino (`[http]`, `[ingest]`, `[jwt]`,
//! `[kafka]`, `[scylla]`, `[router]`, `[stage]`, `[push]`, `[smtp]`, `[email]`), each a typed struct defined beside
//! the code that uses it. Every setting is also reachable by environment, by names derived
//! from the structure, never listed by hand:
//! - nested: `POSTINO_` + the path with `__` between levels (`POSTINO_PUSH__FCM__PER_MINUTE`);
//! - flat: `POSTINO_` + the setting's *flat name*, its section's last segment and its key
//!   joined by `_` (`POSTINO_FCM_PER_MINUTE`, `POSTINO_RETRY_MAX_ATTEMPTS`). Flat names are
//!   what every setting was called before the sections, so they also work at the top of a
//!   file (`smtp_host = "…"`).
//!
//! Unknown keys in the file are errors, so a typo is caught at start-up, not in production.
//! Files named by settings (CA bundles, the JWT public key) are read once, here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bus::kafka::KafkaSettings;
use bus::stage::StageSettings;
use citizen::JwtSettings;
use dispatchers::email::{EmailSettings, SmtpSettings};
use dispatchers::push::PushSettings;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use ingest::IngestSettings;
use model::secret::Secret;
use router::cache::RouterSettings;
use serde::{Deserialize, Serialize};
use store::scylla::ScyllaSettings;
use store::StoreAddress;

pub use crate::roles::{Role, Roles};
use crate::server::HttpSettings;

/// What environment variables of settings start with.
pub const ENV_PREFIX: &str = "POSTINO_";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP APIs listen.
    pub listen: SocketAddr,
    /// Where Prometheus scrapes `/metrics`: an address of its own, or `off`.
    pub metrics_listen: MetricsListen,
    /// Where the embedded log, the store and generated secrets live.
    pub data_dir: PathBuf,
    /// The operators' manage key. When unset, one is generated and printed on first start.
    pub manage_key: Option<Secret>,
    /// 64 hex characters: derives service keys and the citizen hash that partitions the
    /// bus. When unset, generated once into `<data_dir>/secret`.
    pub secret: Option<Secret>,
    /// Log filter, e.g. `info` or `postino=debug,info`.
    pub log: String,
    /// How log lines are written: for people, or one JSON object each for a collector.
    pub log_format: LogFormat,
    /// How long shutdown waits for in-flight work before giving up.
    pub shutdown_grace_secs: u64,
    /// What every problem+json `type` starts with: an absolute URI, as IO's `ProblemJson`
    /// declares it; the kind of problem (`validation-error`) follows. Point it at the
    /// deployment's documentation of its errors.
    pub problem_type_base: String,
    /// Which roles this process runs.
    pub roles: Roles,
    /// The log between stages.
    pub bus: BusAddress,
    /// Where state lives.
    pub store: StoreAddress,
    pub http: HttpSettings,
    pub ingest: IngestSettings,
    pub jwt: JwtSettings,
    pub kafka: KafkaSettings,
    pub scylla: ScyllaSettings,
    pub router: RouterSettings,
    pub stage: StageSettings,
    pub push: PushSettings,
    pub smtp: SmtpSettings,
    pub email: EmailSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: MetricsListen::DEFAULT,
            data_dir: PathBuf::from("data"),
            manage_key: None,
            secret: None,
            log: "info".into(),
            log_format: LogFormat::Text,
            shutdown_grace_secs: 30,
            problem_type_base: problem::DEFAULT_TYPE_BASE.into(),
            roles: Roles::ALL,
            bus: BusAddress::Embedded,
            store: StoreAddress::Sqlite,
            http: HttpSettings::default(),
            ingest: IngestSettings::default(),
            jwt: JwtSettings::default(),
            kafka: KafkaSettings::default(),
            scylla: ScyllaSettings::default(),
            router: RouterSettings::default(),
            stage: StageSettings::default(),
            push: PushSettings::default(),
            smtp: SmtpSettings::default(),
            email: EmailSettings::default(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, and the spans).
    Json,
}

/// Where a process serves its metrics: `host:port`, or `off` for nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MetricsListen {
    Off,
    On(SocketAddr),
}

impl MetricsListen {
    /// 127.0.0.1:9464: beside, not on, Prometheus's own 9090.
    pub const DEFAULT: Self = Self::On(SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        9464,
    ));
}

impl std::str::FromStr for MetricsListen {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        if text == "off" {
            return Ok(Self::Off);
        }
        text.parse().map(Self::On).map_err(|_| {
            ConfigError(format!(
                "metrics_listen: {text:?} is neither host:port (e.g. 0.0.0.0:9464) nor `off`"
            ))
        })
    }
}

impl TryFrom<String> for MetricsListen {
    type Error = ConfigError;
    fn try_from(text: String) -> Result<Self, ConfigError> {
        text.parse()
    }
}

impl From<MetricsListen> for String {
    fn from(listen: MetricsListen) -> String {
        listen.to_string()
    }
}

impl std::fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::On(addr) => write!(f, "{addr}"),
        }
    }
}

/// Values given on the command line; they override everything else.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<MetricsListen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// Where the log lives: `embedded` (under `data_dir`) or `kafka://host:port[,host:port…]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BusAddress {
    Embedded,
    Kafka { bootstrap_servers: String },
}

impl TryFrom<String> for BusAddress {
    type Error = ConfigError;
    fn try_from(text: String) -> Result<Self, ConfigError> {
        if text == "embedded" {
            return Ok(Self::Embedded);
        }
        let servers = text.strip_prefix("kafka://").ok_or_else(|| {
            ConfigError(format!(
                "bus: {text:?} is neither `embedded` nor `kafka://host:port[,host:port…]`"
            ))
        })?;
        if !model::net::is_host_port_list(servers) {
            return Err(ConfigError(format!(
                "bus: {text:?} must list host:port pairs after kafka://"
            )));
        }
        Ok(Self::Kafka {
            bootstrap_servers: servers.to_string(),
        })
    }
}

impl From<BusAddress> for String {
    fn from(bus: BusAddress) -> String {
        bus.to_string()
    }
}

impl std::fmt::Display for BusAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Kafka { bootstrap_servers } => write!(f, "kafka://{bootstrap_servers}"),
        }
    }
}

/// The log a process opens.
#[derive(Debug, Clone, PartialEq)]
pub enum BusChoice {
    Embedded,
    Kafka(bus::kafka::KafkaConfig),
}

/// Why the configuration was refused; the message names the key.
#[derive(Debug)]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

/// One setting: its dotted path in the file (`push.fcm.per_minute`) and its flat name
/// (`fcm_per_minute`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub path: String,
    pub flat: String,
    /// Whether its value is a table (`kafka.properties`) or a list
    /// (`ingest.trusted_proxies`), set whole: in the environment, written as TOML.
    pub table: bool,
}

impl Key {
    /// Its environment variables: the flat one, and the nested one when it differs.
    pub fn env_names(&self) -> Vec<String> {
        let flat = format!("{ENV_PREFIX}{}", self.flat.to_ascii_uppercase());
        let nested = format!(
            "{ENV_PREFIX}{}",
            self.path.replace('.', "__").to_ascii_uppercase()
        );
        if flat == nested {
            vec![flat]
        } else {
            vec![flat, nested]
        }
    }
}

/// Every setting, derived from [`Config`]'s structure: its leaves are the settings.
pub fn keys() -> Vec<Key> {
    fn walk(prefix: &str, section: &str, value: &serde_json::Value, out: &mut Vec<Key>) {
        let serde_json::Value::Object(fields) = value else {
            return;
        };
        for (name, value) in fields {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                // A non-empty object is a section; an empty one is a table-valued setting
                // (`kafka.properties`, empty by default).
                serde_json::Value::Object(inner) if !inner.is_empty() => {
                    walk(&path, name, value, out)
                }
                _ => out.push(Key {
                    flat: if section.is_empty() {
                        name.clone()
                    } else {
                        format!("{section}_{name}")
                    },
                    table: value.is_object() || value.is_array(),
                    path,
                }),
            }
        }
    }
    let mut out = Vec::new();
    match serde_json::to_value(Config::default()) {
        Ok(tree) => walk("", "", &tree, &mut out),
        Err(err) => unreachable!("the default configuration serialises: {err}"),
    }
    out
}

/// Where a name (a flat name, or a dotted path) points, if it is a setting.
fn resolve<'k>(keys: &'k [Key], name: &str) -> Option<&'k Key> {
    keys.iter()
        .find(|k| k.path == name)
        .or_else(|| keys.iter().find(|k| k.flat == name))
}

/// Puts `value` at the dotted `path` of `dict`, making the sections on the way.
fn insert_at(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.insert(path.to_string(), value);
        }
        Some((section, rest)) => {
            let entry = dict
                .entry(section.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_at(inner, rest, value);
            }
        }
    }
}

/// The configuration file, with flat names at its top moved into their sections.
struct File<'a> {
    path: &'a Path,
    keys: &'a [Key],
}

impl Provider for File<'_> {
    fn metadata(&self) -> Metadata {
        Toml::file_exact(self.path).metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = Toml::file_exact(self.path).data()?;
        for dict in data.values_mut() {
            let flat: Vec<(String, String)> = dict
                .keys()
                .filter_map(|name| {
                    let key = self.keys.iter().find(|k| &k.flat == name)?;
                    (key.path != *name).then(|| (name.clone(), key.path.clone()))
                })
                .collect();
            for (name, path) in flat {
                if let Some(value) = dict.remove(&name) {
                    insert_at(dict, &path, value);
                }
            }
        }
        Ok(data)
    }
}

/// The `POSTINO_*` variables that name a setting. Values stay strings (the extraction
/// reads numbers and booleans out of them where a setting wants one), so a secret or
/// user name made of digits is not turned into a number; a table setting is parsed as an
/// inline table (`{"security.protocol" = "SASL_SSL"}`), a list as an array (`["10.0.0.0/8"]`). Other `POSTINO_*` variables
/// (`POSTINO_CONFIG`, `POSTINO_URL`, a Kubernetes service's `POSTINO_PORT`…) are not
/// settings and are left alone.
struct Environment<'a> {
    vars: Vec<(String, String)>,
    keys: &'a [Key],
}

impl Provider for Environment<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{ENV_PREFIX}*` environment variable(s)"))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (name, text) in &self.vars {
            let Some(rest) = name
                .get(..ENV_PREFIX.len())
                .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
                .and_then(|_| name.get(ENV_PREFIX.len()..))
            else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some(key) = resolve(self.keys, &rest.replace("__", ".")) else {
                continue;
            };
            let value = if key.table {
                text.parse::<Value>().unwrap_or_else(|never| match never {})
            } else {
                Value::from(text.clone())
            };
            insert_at(&mut dict, &key.path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

impl Config {
    /// Loads the layers with this process's environment. `file` is the `--config` path
    /// (or `POSTINO_CONFIG`); a named file that does not exist is an error.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(file, overrides, std::env::vars())
    }

    /// Loads the layers with the environment `vars`.
    pub fn load_with_env(
        file: Option<&Path>,
        overrides: Overrides,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let keys = keys();
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(File { path, keys: &keys });
        }
        let mut config: Config = figment
            .merge(Environment {
                vars: vars.into_iter().collect(),
                keys: &keys,
            })
            .merge(Serialized::defaults(overrides))
            .extract_lossy()
            .map_err(|e| ConfigError(format!("invalid configuration: {e}")))?;
        config.check()?;
        config.read_files()?;
        Ok(config)
    }

    /// Reads the files settings name (CA bundles, the JWT public key), once. [`Config::load`]
    /// does it; call it on a configuration built in code that names such files.
    pub fn read_files(&mut self) -> Result<(), ConfigError> {
        self.push.read_files().map_err(ConfigError)?;
        self.smtp.read_files().map_err(ConfigError)?;
        self.jwt.read_files().map_err(ConfigError)?;
        self.scylla.read_files().map_err(ConfigError)?;
        Ok(())
    }

    /// The log this process opens.
    pub fn bus_choice(&self) -> BusChoice {
        match &self.bus {
            BusAddress::Embedded => BusChoice::Embedded,
            BusAddress::Kafka { bootstrap_servers } => {
                BusChoice::Kafka(self.kafka.config(bootstrap_servers.clone()))
            }
        }
    }

    /// Where emails go without a relay.
    pub fn email_outbox(&self) -> PathBuf {
        self.email
            .outbox
            .clone()
            .unwrap_or_else(|| self.data_dir.join("outbox"))
    }

    fn check(&self) -> Result<(), ConfigError> {
        let sections = [
            self.http.check(),
            self.ingest.check(),
            self.stage.check(),
            self.kafka.check(),
            self.scylla.check(),
            self.router.check(),
            self.push.check(),
            self.smtp.check(),
            self.email.check(),
            self.jwt.check(),
        ];
        for checked in sections {
            checked.map_err(ConfigError)?;
        }
        if !problem::is_absolute_uri(&self.problem_type_base) {
            return Err(ConfigError(format!(
                "problem_type_base must be an absolute URI (scheme:…), such as https://docs.example.org/problems/ or {}; got {:?}",
                problem::DEFAULT_TYPE_BASE,
                self.problem_type_base
            )));
        }
        if let Some(secret) = &self.secret {
            crate::secrets::parse_secret(secret.expose())
                .map_err(|e| ConfigError(format!("secret: {e}")))?;
        }
        if self
            .manage_key
            .as_ref()
            .is_some_and(|k| k.expose().len() < 16)
        {
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
    use dispatchers::email::SmtpTls;
    use serde_json::{json, Value as Json};

    fn load_file(text: &str) -> Result<Config, ConfigError> {
        load(text, &[])
    }

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("postino.toml");
        std::fs::write(&path, file).expect("write");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_with_env(Some(&path), Overrides::default(), env)
    }

    #[test]
    fn roles_and_kafka_settings_parse() {
        let c = load_file("roles = \"router, inbox\"\nbus = \"kafka://10.0.0.1:9092,10.0.0.2:9092\"\n[kafka]\npartitions = 24\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n").expect("load");
        assert_eq!(c.roles, Roles::from_iter([Role::Router, Role::Inbox]));
        let BusChoice::Kafka(k) = c.bus_choice() else {
            panic!("kafka expected")
        };
        assert_eq!(k.bootstrap_servers, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(k.partitions, 24);
        assert_eq!(k.properties.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(Config::default().bus_choice(), BusChoice::Embedded);
        assert_eq!(Config::default().roles, Roles::ALL);
    }

    #[test]
    fn retry_settings_reach_every_stage() {
        let c = load_file(
            "[stage]\nlinger_ms = 20\n[stage.retry]\nmax_attempts = 8\ninitial_ms = 250\nmax_ms = 30000\n",
        )
        .expect("load");
        let stage = c.stage.stage_config();
        assert_eq!(stage.linger, std::time::Duration::from_millis(20));
        assert_eq!(stage.max_attempts, 8);
        assert_eq!(stage.retry_initial, std::time::Duration::from_millis(250));
        assert_eq!(stage.retry_max, std::time::Duration::from_secs(30));
    }

    #[test]
    fn defaults_then_file_then_environment_then_flags() {
        let c = load_file("listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/p\"\n").expect("load");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/p"));
        assert_eq!(c.log, "info");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("postino.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nlog = \"debug\"\n").expect("write");
        let env = || [("POSTINO_LISTEN".to_string(), "127.0.0.1:9050".to_string())];
        let c = Config::load_with_env(Some(&path), Overrides::default(), env()).expect("load");
        assert_eq!((c.listen.port(), c.log.as_str()), (9050, "debug"));
        let flags = Overrides {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9100))),
            ..Overrides::default()
        };
        let c = Config::load_with_env(Some(&path), flags, env()).expect("load");
        assert_eq!(c.listen.port(), 9100);
    }

    #[test]
    fn variables_that_name_no_setting_are_left_alone() {
        // POSTINO_CONFIG and POSTINO_URL belong to the command line; Kubernetes gives a
        // Service named postino POSTINO_PORT and POSTINO_SERVICE_HOST.
        let c = load(
            "",
            &[
                ("POSTINO_CONFIG", "/etc/postino.toml"),
                ("POSTINO_URL", "http://127.0.0.1:8080"),
                ("POSTINO_PORT", "tcp://10.0.0.1:8080"),
                ("POSTINO_SERVICE_HOST", "10.0.0.1"),
                ("OTHER_LISTEN", "127.0.0.1:1"),
            ],
        )
        .expect("load");
        assert_eq!(c.listen, Config::default().listen);
    }

    #[test]
    fn a_secret_made_of_digits_stays_a_string() {
        let digits = "1".repeat(64);
        let c = load(
            "",
            &[
                ("POSTINO_SECRET", &digits),
                ("POSTINO_SMTP_USERNAME", "12345"),
                ("POSTINO_SMTP_PASSWORD", "67890"),
            ],
        )
        .expect("load");
        assert_eq!(c.secret.as_ref().map(Secret::expose), Some(digits.as_str()));
        assert_eq!(c.smtp.username.as_deref(), Some("12345"));
    }

    #[test]
    fn secrets_never_print() {
        let c = load_file(
            "manage_key = \"manage-key-very-secret-1\"\njwt_secret = \"jwt-very-secret-2\"\nsmtp_password = \"smtp-very-secret-3\"\nsmtp_username = \"postino\"\n[kafka.properties]\n\"sasl.password\" = \"kafka-very-secret-4\"\n\"sasl.username\" = \"kafka-user\"\n",
        )
        .expect("load");
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(
            shown.contains("<redacted>")
                && shown.contains("kafka-user")
                && shown.contains("postino")
        );
        let BusChoice::Kafka(kafka) = Config {
            bus: BusAddress::Kafka {
                bootstrap_servers: "k:9092".into(),
            },
            ..c.clone()
        }
        .bus_choice() else {
            panic!("kafka expected")
        };
        assert!(!format!("{kafka:?}").contains("very-secret"));
        let dumped = serde_json::to_string(&c).expect("serialises");
        assert!(!dumped.contains("very-secret"), "{dumped}");
    }

    #[test]
    fn smtp_settings_default_their_port_and_keep_the_password_out_of_debug() {
        assert!(
            Config::default().smtp.relay(16).is_none(),
            "no relay: the outbox"
        );
        let c = load_file(
            "[smtp]\nhost = \"relay.example\"\ntls = \"tls\"\nusername = \"postino\"\npassword = \"s3cret-pass\"\n",
        )
        .expect("load");
        let smtp = c.smtp.relay(c.email.max_in_flight).expect("configured");
        assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Implicit));
        assert!(!format!("{smtp:?}").contains("s3cret-pass"));
        let c = load_file("smtp_host = \"relay.example\"\nsmtp_port = 2525\n").expect("load");
        let smtp = c.smtp.relay(16).expect("configured");
        assert_eq!((smtp.port, smtp.tls), (2525, SmtpTls::StartTls));
        assert_eq!(
            Config::default().email_outbox(),
            PathBuf::from("data/outbox")
        );
    }

    #[test]
    fn every_setting_has_one_flat_name_and_the_sections_own_them() {
        let keys = keys();
        let mut flat: Vec<_> = keys.iter().map(|k| k.flat.as_str()).collect();
        flat.sort_unstable();
        let before = flat.len();
        flat.dedup();
        assert_eq!(
            before,
            flat.len(),
            "two settings share a flat name: {flat:?}"
        );
        let find = |path: &str| keys.iter().find(|k| k.path == path).cloned();
        assert_eq!(
            find("push.fcm.per_minute").map(|k| k.env_names()),
            Some(vec![
                "POSTINO_FCM_PER_MINUTE".to_string(),
                "POSTINO_PUSH__FCM__PER_MINUTE".to_string()
            ])
        );
        assert_eq!(
            find("stage.retry.max_attempts").map(|k| k.flat),
            Some("retry_max_attempts".to_string())
        );
        assert_eq!(
            find("listen").map(|k| k.env_names()),
            Some(vec!["POSTINO_LISTEN".to_string()])
        );
        assert!(find("kafka.properties").is_some_and(|k| k.table));
    }

    /// A value each setting may take (and what else it needs to be valid), as the file
    /// writes it.
    fn sample(path: &str, files: &Path) -> (Json, Vec<(&'static str, Json)>) {
        let file = |name: &str| json!(files.join(name).display().to_string());
        match path {
            "listen" => (json!("127.0.0.1:9000"), vec![]),
            "metrics_listen" => (json!("0.0.0.0:9465"), vec![]),
            "data_dir" | "email.outbox" => (json!("/var/lib/postino-x"), vec![]),
            "manage_key" => (json!("a-manage-key-of-some-length"), vec![]),
            "secret" => (json!("ab".repeat(32)), vec![]),
            "log" => (json!("postino=debug,info"), vec![]),
            "log_format" => (json!("json"), vec![]),
            "problem_type_base" => (json!("https://docs.example.org/problems/"), vec![]),
            "roles" => (json!("router,inbox"), vec![]),
            "bus" => (json!("kafka://10.0.0.1:9092"), vec![]),
            "store" => (
                json!("scylla://10.0.0.1:9042,10.0.0.2:9042/postino"),
                vec![],
            ),
            "scylla.consistency" => (json!("QUORUM"), vec![]),
            "scylla.serial_consistency" => (json!("SERIAL"), vec![]),
            "scylla.replication" => (json!("dc1:3,dc2:3"), vec![]),
            "scylla.tls" => (json!(true), vec![]),
            "scylla.ca_file" => (file("ca.pem"), vec![("scylla.tls", json!(true))]),
            "scylla.username" => (json!("postino"), vec![("scylla.password", json!("pw"))]),
            "scylla.password" => (
                json!("a-password"),
                vec![("scylla.username", json!("postino"))],
            ),
            "jwt.secret" => (json!("a-jwt-secret-of-at-least-32-bytes!"), vec![]),
            "jwt.public_key_file" => (file("jwt.pem"), vec![("jwt.algorithm", json!("ES256"))]),
            "jwt.algorithm" => (
                json!("RS256"),
                vec![("jwt.public_key_file", file("jwt.pem"))],
            ),
            "jwt.issuer"
            | "jwt.audience"
            | "kafka.group_instance_id"
            | "scylla.local_datacenter"
            | "push.apns.key_id"
            | "push.apns.team_id"
            | "push.apns.topic" => (json!("some-value"), vec![]),
            "kafka.properties" => (json!({"security.protocol": "SASL_SSL"}), vec![]),
            "kafka.prefetch_kbytes" => (json!(2048), vec![]),
            "stage.linger_ms" => (json!(20), vec![]),
            "stage.retry.initial_ms" | "stage.retry.max_ms" => (json!(3000), vec![]),
            "push.ca_file" => (file("ca.pem"), vec![]),
            "push.quiet_hours" => (json!("22:30-07:00"), vec![]),
            "push.quiet_hours_time_zone" => (json!("Europe/Lisbon"), vec![]),
            "push.fcm.service_account" => (file("fcm.json"), vec![]),
            "push.apns.key_file" => (
                file("apns.p8"),
                vec![
                    ("push.apns.key_id", json!("K")),
                    ("push.apns.team_id", json!("T")),
                    ("push.apns.topic", json!("it.example.app")),
                ],
            ),
            "push.fcm.base_url" | "push.apns.base_url" => (json!("http://127.0.0.1:9011"), vec![]),
            "smtp.host" => (json!("relay.example.org"), vec![]),
            "smtp.port" => (json!(2525), vec![]),
            "smtp.tls" => (json!("tls"), vec![]),
            "smtp.username" => (json!("postino"), vec![("smtp.password", json!("pw"))]),
            "smtp.password" => (
                json!("a-password"),
                vec![("smtp.username", json!("postino"))],
            ),
            "smtp.ca_file" => (
                file("relay.pem"),
                vec![("smtp.host", json!("relay.example.org"))],
            ),
            "email.from" => (json!("avvisi@example.org"), vec![]),
            "ingest.trusted_proxies" => (json!(["10.0.0.0/8", "192.0.2.7"]), vec![]),
            // Every other setting is a count or a duration.
            _ => (json!(7), vec![]),
        }
    }

    fn toml_value(value: &Json) -> String {
        match value {
            Json::Object(table) => {
                let entries: Vec<_> = table
                    .iter()
                    .map(|(k, v)| format!("{k:?} = {}", toml_value(v)))
                    .collect();
                format!("{{ {} }}", entries.join(", "))
            }
            other => other.to_string(),
        }
    }

    fn env_value(value: &Json) -> String {
        match value {
            Json::String(text) => text.clone(),
            other => toml_value(other),
        }
    }

    /// A file line setting `path` in its section (a dotted TOML key, which is the same
    /// as the key under its `[section]` header).
    fn nested(path: &str, value: &Json) -> String {
        format!("{path} = {}\n", toml_value(value))
    }

    fn documented_settings() -> Vec<String> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let table = readme
            .split("<!-- settings -->")
            .nth(1)
            .expect("README.md marks its settings table with <!-- settings -->");
        table
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_documented_setting_is_settable_by_file_and_by_environment() {
        let files = tempfile::tempdir().expect("tempdir");
        for name in ["jwt.pem", "relay.pem", "fcm.json", "apns.p8"] {
            std::fs::write(files.path().join(name), "not read until use").expect("write");
        }
        let (certificate, _) = testkit::keys::self_signed_certificate(files.path());
        std::fs::rename(certificate, files.path().join("ca.pem")).expect("rename");

        let keys = keys();
        let documented = documented_settings();
        let mut paths: Vec<_> = keys.iter().map(|k| k.path.clone()).collect();
        let mut documented_sorted = documented.clone();
        documented_sorted.sort();
        paths.sort();
        assert_eq!(
            documented_sorted, paths,
            "README.md's settings table lists every setting once"
        );
        let secrets = [
            "manage_key",
            "secret",
            "jwt.secret",
            "smtp.password",
            "scylla.password",
        ];
        for key in &keys {
            let (value, companions) = sample(&key.path, files.path());
            let base: String = companions.iter().map(|(p, v)| nested(p, v)).collect();
            let expected = if secrets.contains(&key.path.as_str()) {
                json!(model::secret::REDACTED)
            } else {
                value.clone()
            };
            assert_ne!(
                setting(&Config::default(), &key.path),
                expected,
                "{}: the sample is the default",
                key.path
            );
            let flat_file = format!("{} = {}\n{base}", key.flat, toml_value(&value));
            let ways = [
                (
                    "file, in its section",
                    format!("{base}{}", nested(&key.path, &value)),
                    None,
                ),
                ("file, by its flat name", flat_file, None),
                ("environment", base.clone(), Some(0)),
                ("environment, nested", base.clone(), Some(1)),
            ];
            for (way, file, env) in ways {
                let names = key.env_names();
                let env: Vec<(&str, String)> = env
                    .and_then(|i| names.get(i).or(names.first()))
                    .map(|name| vec![(name.as_str(), env_value(&value))])
                    .unwrap_or_default();
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let config =
                    load(&file, &env).unwrap_or_else(|e| panic!("{} by {way}: {e}", key.path));
                assert_eq!(
                    setting(&config, &key.path),
                    expected,
                    "{} by {way}",
                    key.path
                );
            }
        }
    }

    fn setting(config: &Config, path: &str) -> Json {
        let tree = serde_json::to_value(config).expect("serialises");
        let pointer = format!("/{}", path.replace('.', "/"));
        tree.pointer(&pointer).cloned().unwrap_or(Json::Null)
    }

    #[test]
    fn metrics_are_served_on_their_own_port_unless_turned_off() {
        assert_eq!(
            Config::default().metrics_listen.to_string(),
            "127.0.0.1:9464"
        );
        let c = load_file("metrics_listen = \"off\"\n").expect("load");
        assert_eq!(c.metrics_listen, MetricsListen::Off);
        let c = load("", &[("POSTINO_METRICS_LISTEN", "0.0.0.0:9999")]).expect("load");
        assert_eq!(c.metrics_listen.to_string(), "0.0.0.0:9999");
        for bad in ["nowhere", "9464", "on", ""] {
            let err = load_file(&format!("metrics_listen = {bad:?}\n")).expect_err(bad);
            assert!(err.to_string().contains("metrics_listen"), "{err}");
        }
    }

    #[test]
    fn malformed_configuration_is_refused_with_the_key_named() {
        let err = load_file("listne = \"127.0.0.1:9000\"\n").expect_err("typo");
        assert!(err.to_string().contains("listne"), "{err}");
        let err = load_file("[smtp]\nhots = \"relay\"\n").expect_err("typo in a section");
        assert!(err.to_string().contains("hots"), "{err}");
        let err = load_file("listen = \"not an address\"\n").expect_err("bad address");
        assert!(err.to_string().contains("listen"), "{err}");
        let err = load("", &[("POSTINO_LISTEN", "not an address")]).expect_err("bad address");
        assert!(err.to_string().contains("listen"), "{err}");
        let err = load_file("secret = \"abc\"\n").expect_err("short secret");
        assert!(err.to_string().contains("secret"), "{err}");
        // 64 bytes with a two-byte character among them: an error naming the key, not a
        // panic slicing through the character.
        let accented = format!("{}é{}", "a".repeat(31), "b".repeat(31));
        let err = load_file(&format!("secret = \"{accented}\"\n")).expect_err("not hex");
        assert!(err.to_string().contains("secret: must be hex"), "{err}");
        let err = load_file("jwt_public_key_file = \"/k.pem\"\n").expect_err("no algorithm");
        assert!(err.to_string().contains("jwt.algorithm"), "{err}");
        let err = load_file("[jwt]\nalgorithm = \"HS512\"\n").expect_err("unknown algorithm");
        assert!(err.to_string().contains("HS512"), "{err}");
        let err =
            load_file("jwt_public_key_file = \"/nonexistent/k.pem\"\njwt_algorithm = \"ES256\"\n")
                .expect_err("no key file");
        assert!(err.to_string().contains("jwt.public_key_file"), "{err}");
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
        assert!(err.to_string().contains("stage.linger_ms"), "{err}");
        let err = load_file("retry_max_attempts = 0\n").expect_err("no attempts");
        assert!(
            err.to_string().contains("stage.retry.max_attempts"),
            "{err}"
        );
        let err = load_file("retry_max_ms = 600000\n").expect_err("longer than a poll");
        assert!(err.to_string().contains("stage.retry.max_ms"), "{err}");
        let err = load_file("retry_initial_ms = 5000\nretry_max_ms = 1000\n")
            .expect_err("initial above max");
        assert!(err.to_string().contains("stage.retry.initial_ms"), "{err}");
        let err = load_file("kafka_prefetch_kbytes = 10\n").expect_err("tiny prefetch");
        assert!(err.to_string().contains("kafka.prefetch_kbytes"), "{err}");
        let err = load_file("kafka_partitions = 0\n").expect_err("no partitions");
        assert!(err.to_string().contains("kafka.partitions"), "{err}");
        for (hours, zone) in [("22-7", "Europe/Rome"), ("21:00-08:00", "Europe/Nowhere")] {
            let file =
                format!("[push]\nquiet_hours = \"{hours}\"\nquiet_hours_time_zone = \"{zone}\"\n");
            let err = load_file(&file).expect_err("bad quiet hours");
            assert!(err.to_string().contains("push.quiet_hours"), "{err}");
        }
        let err = load_file("apns_key_file = \"/k.p8\"\napns_key_id = \"K\"\n")
            .expect_err("APNs key without team and topic");
        assert!(err.to_string().contains("push.apns.team_id"), "{err}");
        let err = load_file("fcm_per_minute = 0\n").expect_err("no quota");
        assert!(err.to_string().contains("push.fcm.per_minute"), "{err}");
        let err = load_file("push_max_in_flight = -3\n").expect_err("negative");
        assert!(err.to_string().contains("max_in_flight"), "{err}");
        let err = load_file("retry_max_attempts = -1\n").expect_err("negative");
        assert!(err.to_string().contains("max_attempts"), "{err}");
        let err = load("", &[("POSTINO_RETRY_MAX_ATTEMPTS", "many")]).expect_err("not a number");
        assert!(err.to_string().contains("max_attempts"), "{err}");
        let err = load_file("smtp_tls = \"ssl\"\n").expect_err("unknown TLS mode");
        assert!(err.to_string().contains("ssl"), "{err}");
        let err = load_file("smtp_host = \"smtp://relay.example\"\n").expect_err("a URL");
        assert!(err.to_string().contains("smtp.host"), "{err}");
        let err = load_file("smtp_host = \"relay.example\"\nsmtp_username = \"postino\"\n")
            .expect_err("user without password");
        assert!(err.to_string().contains("smtp.password"), "{err}");
        let err = load_file("email_from = \"postino\"\n").expect_err("not an address");
        assert!(err.to_string().contains("from"), "{err}");
        let err = load_file("smtp_port = 70000\n").expect_err("port out of range");
        assert!(err.to_string().contains("port"), "{err}");
        let err =
            load_file("smtp_host = \"relay.example\"\nsmtp_ca_file = \"/nonexistent/ca.pem\"\n")
                .expect_err("no CA file");
        assert!(err.to_string().contains("smtp.ca_file"), "{err}");
        let err = load_file("push_ca_file = \"/nonexistent/ca.pem\"\n").expect_err("no CA file");
        assert!(err.to_string().contains("push.ca_file"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").expect("write");
        let err = load_file(&format!(
            "push_ca_file = {:?}\n",
            not_pem.display().to_string()
        ))
        .expect_err("not a certificate");
        assert!(err.to_string().contains("push.ca_file"), "{err}");
        let err = load_file("problem_type_base = \"/problems/\"\n").expect_err("relative");
        assert!(err.to_string().contains("problem_type_base"), "{err}");
        let err = load_file("email_max_in_flight = 0\n").expect_err("none in flight");
        assert!(err.to_string().contains("email.max_in_flight"), "{err}");
        let err = load_file("manage_key = \"short\"\n").expect_err("short manage key");
        assert!(err.to_string().contains("manage_key"), "{err}");
        let err = Config::load(
            Some(Path::new("/nonexistent/postino.toml")),
            Overrides::default(),
        )
        .expect_err("missing");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}

//! `postino`: the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use postino::admin::AdminArgs;
use postino::app::App;
use postino::config::{Config, LogFormat, MetricsListen, Overrides};
use tracing_subscriber::EnvFilter;

// glibc's allocator showed as ~13 % of Postino's CPU under load (perf, BENCHMARKS.md);
// mimalloc's thread-local free lists make the many short-lived request and record buffers cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "postino",
    version,
    about = "Notification pipeline for public services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every role in one process on the embedded log and store.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, env = "POSTINO_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory [default: ./data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8080]
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where Prometheus scrapes /metrics: host:port, or off [default: 127.0.0.1:9464]
        #[arg(long)]
        metrics_listen: Option<MetricsListen>,
        #[arg(long, help = format!(
            "Roles to run: all, or a comma-separated subset of {} [default: all]",
            postino::roles::Role::ALL.map(postino::roles::Role::name).join(",")
        ))]
        roles: Option<String>,
        /// The log: embedded, or kafka://host:port[,host:port…] [default: embedded]
        #[arg(long)]
        bus: Option<String>,
        /// The store: sqlite, or scylla://host:port[,host:port…]/keyspace [default: sqlite]
        #[arg(long)]
        store: Option<String>,
        /// Log lines as text or as JSON objects [default: text]
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Operator commands: services, keys, development tokens.
    Admin(AdminArgs),
    /// Kafka administration.
    Kafka {
        #[command(subcommand)]
        command: KafkaCommand,
    },
    /// The ScyllaDB store's schema.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// The embedded log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Prints the OpenAPI document of every API served.
    Openapi,
    /// Lists every metric Postino exports (a Markdown table: name, type, labels, meaning).
    Metrics,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Prints each topic's oldest and newest offsets and each consumer group's committed
    /// offset and lag. Reads the files only, so it is safe while Postino runs.
    Status {
        /// Configuration file (TOML).
        #[arg(long, env = "POSTINO_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory [default: ./data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Creates the keyspace (replication from `scylla.replication`) and its tables, or
    /// brings an older keyspace up to this build's schema; reports what it applied. Safe to
    /// run again. The embedded SQLite store needs none: it is brought up to date on open.
    Migrate {
        /// Configuration file (TOML).
        #[arg(long, env = "POSTINO_CONFIG")]
        config: Option<PathBuf>,
        /// scylla://host:port[,host:port…]/keyspace
        #[arg(long)]
        store: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KafkaCommand {
    /// Creates every topic Postino uses, with partitions, replication, retention and cleanup
    /// policy from the configuration; reports what it created. Safe to run again.
    Init {
        /// Configuration file (TOML).
        #[arg(long, env = "POSTINO_CONFIG")]
        config: Option<PathBuf>,
        /// kafka://host:port[,host:port…]
        #[arg(long)]
        bus: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            metrics_listen,
            roles,
            bus,
            store,
            log_format,
        } => {
            let overrides = Overrides {
                listen,
                metrics_listen,
                data_dir,
                roles,
                bus,
                store,
                log_format,
            };
            let config = Config::load(config.as_deref(), overrides)?;
            let filter =
                EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&config.log))?;
            match config.log_format {
                LogFormat::Text => {
                    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
                    tracing_subscriber::fmt()
                        .with_env_filter(filter)
                        .with_ansi(ansi)
                        .init();
                }
                LogFormat::Json => tracing_subscriber::fmt()
                    .json()
                    .with_env_filter(filter)
                    .init(),
            }
            let app = App::start(&config).await?;
            if let Some(key) = &app.generated_manage_key {
                println!("Bootstrap manage key (shown only this once; keep it safe): {key}");
            }
            app.run_until_signal().await
        }
        Command::Admin(args) => postino::admin::run(args).await,
        Command::Kafka {
            command: KafkaCommand::Init { config, bus },
        } => {
            let overrides = Overrides {
                bus,
                ..Overrides::default()
            };
            postino::kafka_init::init(&Config::load(config.as_deref(), overrides)?).await
        }
        Command::Store {
            command: StoreCommand::Migrate { config, store },
        } => {
            let overrides = Overrides {
                store,
                ..Overrides::default()
            };
            let config = Config::load(config.as_deref(), overrides)?;
            print!("{}", postino::migrate::migrate(&config).await?);
            Ok(())
        }
        Command::Log {
            command: LogCommand::Status { config, data_dir },
        } => {
            let overrides = Overrides {
                data_dir,
                ..Overrides::default()
            };
            let config = Config::load(config.as_deref(), overrides)?;
            print!("{}", postino::logstatus::render(&config.data_dir)?);
            Ok(())
        }
        Command::Openapi => {
            print!("{}", postino::openapi::json());
            Ok(())
        }
        Command::Metrics => {
            print!("{}", postino::telemetry::table());
            Ok(())
        }
    }
}

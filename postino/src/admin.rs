//! `postino admin …`: the manage API for a person at a terminal, and development tokens.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use model::service::{RateLimit, ServiceLimits};
use model::FiscalCode;
use serde_json::{json, Value};

use crate::config::{Config, Overrides};

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Mints a development citizen token (HS256) for a fiscal code.
    Token {
        #[arg(long)]
        fiscal_code: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Configuration file, as for `serve`.
        #[arg(long, env = "POSTINO_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory of the Postino whose generated secret to use.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Services and their keys, through the manage API.
    Service {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Organisations and their manage keys, through the manage API (the platform's key
    /// registers them; an organisation's key may read and regenerate its own).
    Organization {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: OrganizationCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrganizationCommand {
    /// Registers an organisation; prints it with its two manage keys.
    Create {
        /// Its fiscal code (11 digits), as in its services' `organization.fiscal_code`.
        #[arg(long)]
        fiscal_code: String,
        #[arg(long)]
        name: String,
    },
    /// Shows an organisation's manage keys.
    Keys { fiscal_code: String },
    /// Replaces one of its manage keys; the old one stops working at once.
    Regenerate {
        fiscal_code: String,
        /// primary or secondary
        key_type: String,
    },
}

#[derive(Debug, Args)]
pub struct Remote {
    /// Base URL of a running Postino.
    #[arg(
        long,
        env = "POSTINO_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// The manage key.
    #[arg(
        long,
        env = "POSTINO_MANAGE_KEY",
        hide_env_values = true,
        global = true
    )]
    pub manage_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Creates a service; prints it, then its keys.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: String,
        #[arg(long)]
        organization: String,
        /// The organization's fiscal code (11 digits).
        #[arg(long)]
        organization_fiscal_code: String,
        #[arg(long)]
        department: Option<String>,
        /// LOCAL or NATIONAL.
        #[arg(long, default_value = "NATIONAL")]
        scope: String,
        /// Highest payment notice amount, in euro cents.
        #[arg(long, default_value_t = 0)]
        max_payment: u64,
        /// Never email about this service's messages; anonymous push only.
        #[arg(long)]
        require_secure_channel: bool,
    },
    /// Lists the services the key may see, a page at a time (IO `cmsGetServices`).
    List {
        /// How many, 1 to 100.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// How many to skip first.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Shows a service.
    Get { id: String },
    /// Replaces a service's payload with the JSON in a file (IO `cmsUpdateService`).
    Update {
        id: String,
        /// A file holding the service payload (as `get` prints it, edited).
        #[arg(long)]
        file: PathBuf,
    },
    /// Shows a service's primary and secondary keys.
    Keys { id: String },
    /// Replaces one key; the old one stops working.
    Regenerate {
        id: String,
        /// primary or secondary
        key_type: String,
    },
    /// Deletes a service; its keys stop working.
    Delete { id: String },
    /// Sets a service's mode and limits (what is not given stays); prints the service.
    /// Mode, rate and weekly quota need the platform's manage key.
    Limits {
        id: String,
        /// `test` (only its authorized recipients, 1000 requests per key a week) or
        /// `production`.
        #[arg(long)]
        mode: Option<String>,
        /// Its own rate limit, `REQUESTS/SECONDS` (e.g. `600/60`), or `default` for the
        /// deployment's `ingest.rate_limit`.
        #[arg(long)]
        rate: Option<String>,
        /// Requests per ISO week for the whole service, or `none`.
        #[arg(long)]
        weekly_quota: Option<String>,
        /// Whether its messages may be `urgent` (pushed even in quiet hours).
        #[arg(long)]
        allow_urgent: Option<bool>,
        /// The addresses or CIDRs it may call from, comma-separated; `""` for anywhere.
        #[arg(long)]
        authorized_cidrs: Option<String>,
    },
}

/// `--mode`: `test` or `production`.
fn parse_mode(text: &str) -> anyhow::Result<Value> {
    match text {
        "test" | "production" => Ok(json!(text)),
        _ => anyhow::bail!("--mode {text:?}: give test or production"),
    }
}

/// `--weekly-quota`: a number of requests, or `none`.
fn parse_weekly_quota(text: &str) -> anyhow::Result<Value> {
    if text == "none" {
        return Ok(Value::Null);
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=ServiceLimits::MAX_WEEKLY_QUOTA).contains(&n) => Ok(json!(n)),
        _ => anyhow::bail!(
            "--weekly-quota {text:?}: give 1 to {} requests, or `none`",
            ServiceLimits::MAX_WEEKLY_QUOTA
        ),
    }
}

/// `--rate`: `REQUESTS/SECONDS` as the service's own limit, or `default` (none of its own).
fn parse_rate(text: &str) -> anyhow::Result<Option<RateLimit>> {
    if text == "default" {
        return Ok(None);
    }
    let bad =
        || anyhow::anyhow!("--rate {text:?}: give REQUESTS/SECONDS (e.g. 600/60) or `default`");
    let (requests, seconds) = text.split_once('/').ok_or_else(bad)?;
    let limit = RateLimit {
        requests: requests.trim().parse().map_err(|_| bad())?,
        period_seconds: seconds
            .trim()
            .trim_end_matches('s')
            .parse()
            .map_err(|_| bad())?,
    };
    limit
        .check("--rate")
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    Ok(Some(limit))
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Token {
            fiscal_code,
            ttl,
            config,
            data_dir,
        } => {
            let fc = FiscalCode::parse("--fiscal-code", &fiscal_code)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let config = Config::load(
                config.as_deref(),
                Overrides {
                    data_dir,
                    ..Overrides::default()
                },
            )?;
            let secret = crate::app::dev_jwt_secret(&config, false)?;
            let token =
                citizen::auth::mint_hs256(&secret, &fc, ttl).map_err(|e| anyhow::anyhow!(e))?;
            println!("{token}");
            Ok(())
        }
        AdminCommand::Service { remote, command } => service(remote, command).await,
        AdminCommand::Organization { remote, command } => organization(remote, command).await,
    }
}

/// A client of the manage API at `remote`, calling with its manage key.
struct ManageClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl ManageClient {
    fn new(remote: Remote) -> anyhow::Result<Self> {
        let key = remote
            .manage_key
            .context("the manage key is needed: pass --manage-key or set POSTINO_MANAGE_KEY")?;
        Ok(Self {
            base: format!("{}/api/v1/manage", remote.url.trim_end_matches('/')),
            key,
            http: reqwest::Client::new(),
        })
    }

    fn call(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(ingest::auth::KEY_HEADER, self.key.as_str())
    }
}

async fn organization(remote: Remote, command: OrganizationCommand) -> anyhow::Result<()> {
    let client = ManageClient::new(remote)?;
    use reqwest::Method;
    let answer = match command {
        OrganizationCommand::Create { fiscal_code, name } => {
            let body = json!({"fiscal_code": fiscal_code, "name": name});
            send(client.call(Method::POST, "/organizations").json(&body)).await?
        }
        OrganizationCommand::Keys { fiscal_code } => {
            send(client.call(Method::GET, &format!("/organizations/{fiscal_code}/keys"))).await?
        }
        OrganizationCommand::Regenerate {
            fiscal_code,
            key_type,
        } => {
            let path = format!("/organizations/{fiscal_code}/keys/{key_type}");
            send(client.call(Method::PUT, &path)).await?
        }
    };
    print_json(&answer);
    Ok(())
}

async fn service(remote: Remote, command: ServiceCommand) -> anyhow::Result<()> {
    let client = ManageClient::new(remote)?;
    let call = |method: reqwest::Method, path: String| client.call(method, &path);
    let base = "/services".to_string();
    use reqwest::Method;
    match command {
        ServiceCommand::Create {
            name,
            description,
            organization,
            organization_fiscal_code,
            department,
            scope,
            max_payment,
            require_secure_channel,
        } => {
            let mut org = json!({"name": organization, "fiscal_code": organization_fiscal_code});
            if let Some(d) = department {
                org["department_name"] = json!(d);
            }
            let body = json!({
                "name": name,
                "description": description,
                "organization": org,
                "metadata": {"scope": scope},
                "max_allowed_payment_amount": max_payment,
                "require_secure_channel": require_secure_channel,
            });
            let created = send(call(Method::POST, base.clone()).json(&body)).await?;
            print_json(&created);
            let id = created["id"]
                .as_str()
                .context("the answer has no service id")?;
            print_json(&send(call(Method::GET, format!("{base}/{id}/keys"))).await?);
        }
        ServiceCommand::List { limit, offset } => print_json(
            &send(call(
                Method::GET,
                format!("{base}?limit={limit}&offset={offset}"),
            ))
            .await?,
        ),
        ServiceCommand::Get { id } => {
            print_json(&send(call(Method::GET, format!("{base}/{id}"))).await?)
        }
        ServiceCommand::Update { id, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let payload: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            print_json(&send(call(Method::PUT, format!("{base}/{id}")).json(&payload)).await?);
        }
        ServiceCommand::Keys { id } => {
            print_json(&send(call(Method::GET, format!("{base}/{id}/keys"))).await?)
        }
        ServiceCommand::Regenerate { id, key_type } => {
            print_json(&send(call(Method::PUT, format!("{base}/{id}/keys/{key_type}"))).await?)
        }
        ServiceCommand::Delete { id } => {
            send(call(Method::DELETE, format!("{base}/{id}"))).await?;
            eprintln!("service {id} deleted");
        }
        ServiceCommand::Limits {
            id,
            mode,
            rate,
            weekly_quota,
            allow_urgent,
            authorized_cidrs,
        } => {
            // Everything is checked before anything is sent.
            let mut change = serde_json::Map::new();
            if let Some(mode) = mode.as_deref().map(parse_mode).transpose()? {
                change.insert("mode".into(), mode);
            }
            if let Some(rate) = rate.as_deref().map(parse_rate).transpose()? {
                change.insert("rate_limit".into(), json!(rate));
            }
            if let Some(quota) = weekly_quota
                .as_deref()
                .map(parse_weekly_quota)
                .transpose()?
            {
                change.insert("weekly_quota".into(), quota);
            }
            if let Some(allow) = allow_urgent {
                change.insert("allow_urgent".into(), json!(allow));
            }
            let mut service = if change.is_empty() {
                send(call(Method::GET, format!("{base}/{id}"))).await?
            } else {
                let path = format!("{base}/{id}/limits");
                send(call(Method::PATCH, path).json(&change)).await?
            };
            if let Some(cidrs) = authorized_cidrs {
                let cidrs: Vec<&str> = cidrs
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                service["authorized_cidrs"] = json!(cidrs);
                service = send(call(Method::PUT, format!("{base}/{id}")).json(&service)).await?;
            }
            print_json(&service);
        }
    }
    Ok(())
}

/// Sends a request; a problem answer becomes an error carrying its detail.
async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .context("cannot reach Postino (is `postino serve` running? see --url)")?;
    let status = response.status();
    let text = response.text().await.context("cannot read the answer")?;
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status.is_success() {
        Ok(body)
    } else {
        let detail = body["detail"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        anyhow::bail!("{status}: {detail}")
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

//! `postino admin …`: the manage API for a person at a terminal, and development tokens.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use model::service::RateLimit;
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
    /// Shows a service.
    Get { id: String },
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
    /// Sets a service's limits (what is not given stays); prints the service.
    Limits {
        id: String,
        /// Its own rate limit, `REQUESTS/SECONDS` (e.g. `600/60`), or `default` for the
        /// deployment's `ingest.rate_limit`.
        #[arg(long)]
        rate: Option<String>,
        /// The addresses or CIDRs it may call from, comma-separated; `""` for anywhere.
        #[arg(long)]
        authorized_cidrs: Option<String>,
    },
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
    }
}

async fn service(remote: Remote, command: ServiceCommand) -> anyhow::Result<()> {
    let key = remote
        .manage_key
        .context("the manage key is needed: pass --manage-key or set POSTINO_MANAGE_KEY")?;
    let base = format!(
        "{}/api/v1/manage/services",
        remote.url.trim_end_matches('/')
    );
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, url: String| {
        client
            .request(method, url)
            .header(ingest::auth::KEY_HEADER, key.as_str())
    };
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
        ServiceCommand::Get { id } => {
            print_json(&send(call(Method::GET, format!("{base}/{id}"))).await?)
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
            rate,
            authorized_cidrs,
        } => {
            // Checked before anything is sent.
            let rate = rate.as_deref().map(parse_rate).transpose()?;
            let mut service = send(call(Method::GET, format!("{base}/{id}"))).await?;
            if let Some(rate) = rate {
                service["rate_limit"] = json!(rate);
            }
            if let Some(cidrs) = authorized_cidrs {
                let cidrs: Vec<&str> = cidrs
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                service["authorized_cidrs"] = json!(cidrs);
            }
            print_json(&send(call(Method::PUT, format!("{base}/{id}")).json(&service)).await?);
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

//! The `postino` command line as an operator uses it: `admin service …` against a running
//! Postino, `admin token`, `store migrate` on the run's CQL server, and start-up refusing a
//! bad configuration or a keyspace without the schema.

use std::process::{Command, Output};

use postino::app::App;
use postino::config::Config;
use serde_json::Value;

const MANAGE_KEY: &str = "cli-test-manage-key-000000";
const JWT_SECRET: &str = "cli test secret for citizen tokens!!";

fn postino(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_postino"));
    cmd.args(args)
        .env_remove("POSTINO_MANAGE_KEY")
        .env_remove("POSTINO_URL")
        .env_remove("POSTINO_JWT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run postino")
}

fn json_documents(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("JSON output")
}

async fn running() -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: postino::config::MetricsListen::On("127.0.0.1:0".parse().expect("addr")),
        data_dir: dir.path().to_path_buf(),
        manage_key: Some(MANAGE_KEY.into()),
        ..Config::default()
    };
    config.jwt.secret = Some(JWT_SECRET.into());
    (App::start(&config).await.expect("start"), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_manages_a_service_from_the_terminal() {
    let (app, dir) = running().await;
    let url = format!("http://{}", app.addr);
    let env = [
        ("POSTINO_URL", url.as_str()),
        ("POSTINO_MANAGE_KEY", MANAGE_KEY),
    ];

    let created = json_documents(&postino(
        &[
            "admin",
            "service",
            "create",
            "--name",
            "TARI",
            "--description",
            "Tassa rifiuti",
            "--organization",
            "Comune di Roma",
            "--organization-fiscal-code",
            "02438750586",
            "--max-payment",
            "50000",
        ],
        &env,
    ));
    let (service, keys) = (&created[0], &created[1]);
    let id = service["id"].as_str().expect("id");
    assert_eq!(service["max_allowed_payment_amount"], 50000);
    assert_eq!(
        json_documents(&postino(&["admin", "service", "keys", id], &env))[0],
        *keys
    );

    let regenerated = json_documents(&postino(
        &["admin", "service", "regenerate", id, "secondary"],
        &env,
    ));
    assert_eq!(regenerated[0]["primary_key"], keys["primary_key"]);
    assert_ne!(regenerated[0]["secondary_key"], keys["secondary_key"]);

    let limited = json_documents(&postino(
        &[
            "admin",
            "service",
            "limits",
            id,
            "--mode",
            "production",
            "--rate",
            "600/60",
            "--weekly-quota",
            "5000",
            "--authorized-cidrs",
            "10.0.0.0/8, 192.0.2.7",
        ],
        &env,
    ));
    assert_eq!(service["mode"], "test", "a new service starts in test mode");
    assert_eq!(limited[0]["mode"], "production");
    assert_eq!(limited[0]["weekly_quota"], 5000);
    assert_eq!(
        limited[0]["rate_limit"],
        serde_json::json!({"requests": 600, "period_seconds": 60})
    );
    assert_eq!(
        limited[0]["authorized_cidrs"],
        serde_json::json!(["10.0.0.0/8", "192.0.2.7"])
    );
    let refused = postino(&["admin", "service", "limits", id, "--rate", "0/60"], &env);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--rate.requests: must be 1 to"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let cleared = json_documents(&postino(
        &[
            "admin",
            "service",
            "limits",
            id,
            "--rate",
            "default",
            "--weekly-quota",
            "none",
            "--authorized-cidrs",
            "",
        ],
        &env,
    ));
    assert!(cleared[0].get("rate_limit").is_none(), "{}", cleared[0]);
    assert!(cleared[0].get("weekly_quota").is_none(), "{}", cleared[0]);
    assert_eq!(cleared[0]["mode"], "production", "what is not given stays");
    for bad in [["--mode", "sandbox"], ["--weekly-quota", "0"]] {
        let refused = postino(&["admin", "service", "limits", id, bad[0], bad[1]], &env);
        assert!(!refused.status.success(), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains(bad[0]),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }

    let listed = json_documents(&postino(
        &["admin", "service", "list", "--limit", "10"],
        &env,
    ));
    assert_eq!(listed[0]["pagination"]["count"], 1);
    assert_eq!(listed[0]["value"][0]["id"], id);

    let mut edited = cleared[0].clone();
    edited["description"] = serde_json::json!("Tassa sui rifiuti 2027");
    let file = dir.path().join("service.json");
    std::fs::write(&file, edited.to_string()).expect("write");
    let updated = json_documents(&postino(
        &[
            "admin",
            "service",
            "update",
            id,
            "--file",
            &file.to_string_lossy(),
        ],
        &env,
    ));
    assert_eq!(updated[0]["description"], "Tassa sui rifiuti 2027");

    let organization = json_documents(&postino(
        &[
            "admin",
            "organization",
            "create",
            "--fiscal-code",
            "02438750586",
            "--name",
            "Comune di Roma",
        ],
        &env,
    ));
    let org_key = organization[0]["primary_key"].as_str().expect("key");
    let org_env: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| {
            if *k == "POSTINO_MANAGE_KEY" {
                (*k, org_key)
            } else {
                (*k, *v)
            }
        })
        .collect();
    let own = json_documents(&postino(&["admin", "service", "list"], &org_env));
    assert_eq!(own[0]["value"][0]["id"], id, "its organisation's service");
    let rotated = json_documents(&postino(
        &[
            "admin",
            "organization",
            "regenerate",
            "02438750586",
            "secondary",
        ],
        &org_env,
    ));
    assert_eq!(rotated[0]["primary_key"], org_key);
    assert_ne!(
        rotated[0]["secondary_key"],
        organization[0]["secondary_key"]
    );
    let no_lifting = postino(
        &["admin", "service", "limits", id, "--mode", "test"],
        &org_env,
    );
    assert!(!no_lifting.status.success());
    assert!(
        String::from_utf8_lossy(&no_lifting.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&no_lifting.stderr)
    );
    assert_eq!(cleared[0]["authorized_cidrs"], serde_json::json!([]));
    assert_eq!(
        cleared[0]["max_allowed_payment_amount"], 50000,
        "the rest stays"
    );

    let got = json_documents(&postino(&["admin", "service", "get", id], &env));
    assert_eq!(got[0]["name"], "TARI");
    assert!(postino(&["admin", "service", "delete", id], &env)
        .status
        .success());
    let gone = postino(&["admin", "service", "get", id], &env);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    app.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_explain_what_is_missing() {
    let no_key = postino(&["admin", "service", "get", "x"], &[]);
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("POSTINO_MANAGE_KEY"));

    let nowhere = postino(
        &[
            "admin",
            "service",
            "get",
            "x",
            "--url",
            "http://127.0.0.1:9",
        ],
        &[("POSTINO_MANAGE_KEY", MANAGE_KEY)],
    );
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("cannot reach Postino"));

    let bad_code = postino(
        &["admin", "token", "--fiscal-code", "RSSMRA85T10A562T"],
        &[("POSTINO_JWT_SECRET", JWT_SECRET)],
    );
    assert!(!bad_code.status.success());
    assert!(String::from_utf8_lossy(&bad_code.stderr).contains("check character"));

    let empty = tempfile::tempdir().expect("tempdir");
    let no_secret = postino(
        &[
            "admin",
            "token",
            "--fiscal-code",
            "RSSMRA85T10A562S",
            "--data-dir",
            &empty.path().to_string_lossy(),
        ],
        &[],
    );
    assert!(!no_secret.status.success());
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("POSTINO_JWT_SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_opens_the_citizen_api() {
    let (app, dir) = running().await;
    // Without POSTINO_JWT_SECRET in the environment the token command must agree with the
    // server some other way: here the server was configured with the secret, so pass it.
    let out = postino(
        &[
            "admin",
            "token",
            "--fiscal-code",
            "RSSMRA85T10A562S",
            "--data-dir",
            &dir.path().to_string_lossy(),
        ],
        &[("POSTINO_JWT_SECRET", JWT_SECRET)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = reqwest::Client::new()
        .get(format!("http://{}/citizen/v1/profile", app.addr))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        reqwest::StatusCode::NOT_FOUND,
        "authenticated; no profile yet"
    );
    app.shutdown().await.expect("stop");
}

#[test]
fn serve_refuses_a_bad_configuration_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = postino(&["serve", "--config", "/nonexistent/postino.toml"], &[]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));

    let file = dir.path().join("postino.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").expect("write");
    let typo = postino(&["serve", "--config", &file.to_string_lossy()], &[]);
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("lisen"));

    let bad_env = postino(
        &["serve", "--data-dir", &dir.path().to_string_lossy()],
        &[("POSTINO_LISTEN", "nowhere")],
    );
    assert!(!bad_env.status.success());
    assert!(String::from_utf8_lossy(&bad_env.stderr)
        .to_lowercase()
        .contains("listen"));
}

#[test]
fn serve_help_names_every_role_it_takes() {
    let help = postino(&["serve", "--help"], &[]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Roles to run"))
        .unwrap_or_else(|| panic!("no --roles help in {text}"));
    for role in postino::roles::Role::ALL.map(postino::roles::Role::name) {
        assert!(line.contains(role), "--roles help lacks {role}: {line}");
    }
    assert!(line.contains("push") && line.contains("email"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_status_shows_each_stages_group_while_postino_runs() {
    let (_app, dir) = running().await;
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let out = postino(&["log", "status", "--data-dir", data_dir], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The table's layout has its unit test; here, what the running stages wrote.
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec!["messages", "1", "0", "router", "0", "0"]),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r[0] == "deliveries.inbox" && r[3] == "inbox"),
        "{text}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let out = postino(
        &[
            "log",
            "status",
            "--data-dir",
            empty.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("no embedded log under"));
}

#[test]
fn store_migrate_brings_the_keyspace_to_this_schema_and_serve_refuses_one_without_it() {
    let cql = store::test_cql::address().nodes.join(",");
    let keyspace = format!("scylla://{cql}/{}", store::test_cql::KEYSPACE);
    let replication = [("POSTINO_SCYLLA_REPLICATION", "simple:1")];
    for _ in 0..2 {
        let out = postino(&["store", "migrate", "--store", &keyspace], &replication);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = String::from_utf8_lossy(&out.stdout);
        let newest = store::scylla::schema::MIGRATIONS
            .last()
            .map_or("", |m| m.name);
        assert!(
            report.ends_with(&format!("keyspace postino_test is at schema {newest}\n")),
            "{report}"
        );
    }

    let data = tempfile::tempdir().expect("tempdir");
    let unmigrated = format!("scylla://{cql}/postino_never_migrated");
    let data_dir = data.path().to_string_lossy().to_string();
    let out = postino(
        &[
            "serve",
            "--store",
            &unmigrated,
            "--data-dir",
            &data_dir,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!out.status.success(), "serve must refuse it");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(
            "postino_never_migrated holds no Postino schema: run `postino store migrate` first"
        ),
        "{said}"
    );

    let out = postino(&["store", "migrate", "--store", "sqlite"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("brought up to date when it opens"));
}

#[test]
fn serve_can_log_one_json_object_per_line() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_postino"))
        .args([
            "serve",
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .env("POSTINO_MANAGE_KEY", MANAGE_KEY)
        .env("POSTINO_LOG", "info")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start postino");
    let stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read");
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON object per line ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["timestamp"].is_string(),
            "{line}"
        );
        let message = event["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        seen.push(message.clone());
        if message.starts_with("Postino listening on http://") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|m| m.starts_with("stage started")),
        "the stages' start-up lines are JSON too: {seen:?}"
    );
}

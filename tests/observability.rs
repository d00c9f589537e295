//! `deploy/observability/`, checked offline with Debian's `promtool`: the rules load, every
//! alert is unit-tested firing and not firing and has its runbook section, and the rules and
//! the Grafana dashboard name only series Postino exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use telemetry::Kind;

fn observability(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/observability")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(observability(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn yaml(file: &str) -> Value {
    serde_norway::from_str(&read(file)).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"))
}

/// Runs promtool; it must succeed.
fn promtool(args: &[&str], file: &str) {
    let out = Command::new("promtool")
        .args(args)
        .arg(observability(file))
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool cannot run ({e}): install Debian's prometheus package (scripts/test.sh does)")
        });
    assert!(
        out.status.success(),
        "promtool {args:?} {file}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every rule of the rules file.
fn rules() -> Vec<Value> {
    yaml("prometheus/postino-rules.yml")["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn alerts() -> Vec<Value> {
    rules()
        .into_iter()
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// The series names an expression uses: identifiers outside strings and label matchers
/// that name Postino's, the process's or Prometheus's own series.
fn series_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    let (mut in_string, mut in_braces) = (false, false);
    for c in expr.chars().chain(std::iter::once(' ')) {
        if in_string {
            in_string = c != '"';
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        let is_series = word.starts_with("postino") || word.starts_with("process_") || word == "up";
        if !in_braces && is_series {
            names.insert(std::mem::take(&mut word));
        }
        word.clear();
        match c {
            '"' => in_string = true,
            '{' => in_braces = true,
            '}' => in_braces = false,
            _ => {}
        }
    }
    names
}

/// What Prometheus holds of Postino: every declared series (histograms as their three
/// parts), the recording rules, and `up`.
fn exported() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = postino::telemetry::catalogue()
        .iter()
        .flat_map(|m| match m.kind {
            Kind::Histogram => ["_bucket", "_count", "_sum"]
                .iter()
                .map(|s| format!("{}{s}", m.name))
                .collect::<Vec<_>>(),
            _ => vec![m.name.to_string()],
        })
        .collect();
    for rule in rules() {
        if let Some(record) = rule["record"].as_str() {
            names.insert(record.to_string());
        }
    }
    names.insert("up".into());
    names
}

#[test]
fn the_rules_and_the_example_configuration_load() {
    promtool(&["check", "rules"], "prometheus/postino-rules.yml");
    promtool(&["check", "config"], "prometheus/prometheus.yml");
}

#[test]
fn every_alert_fires_and_stays_quiet_as_its_unit_tests_say() {
    promtool(&["test", "rules"], "prometheus/postino-rules.test.yml");
    let tests = yaml("prometheus/postino-rules.test.yml");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    for alert in alerts() {
        let name = alert["alert"].as_str().expect("name");
        let of_it = cases.iter().filter(|c| c["alertname"] == name);
        let (firing, quiet): (Vec<&&Value>, Vec<&&Value>) =
            of_it.partition(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        assert!(!firing.is_empty(), "{name} has no test where it fires");
        assert!(!quiet.is_empty(), "{name} has no test where it stays quiet");
    }
}

#[test]
fn every_alert_has_a_runbook_section_it_links_to() {
    let runbook = read("RUNBOOK.md");
    for alert in alerts() {
        let name = alert["alert"].as_str().expect("name");
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "RUNBOOK.md has no section for {name}"
        );
        let link = format!(
            "deploy/observability/RUNBOOK.md#{}",
            name.to_ascii_lowercase()
        );
        assert_eq!(
            alert["annotations"]["runbook_url"].as_str(),
            Some(link.as_str()),
            "{name}'s runbook_url"
        );
        for needed in ["summary", "description"] {
            assert!(
                alert["annotations"][needed].is_string(),
                "{name} has no {needed}"
            );
        }
    }
}

#[test]
fn the_rules_name_only_series_postino_exports() {
    let exported = exported();
    for rule in rules() {
        let expr = rule["expr"].as_str().expect("expr");
        for name in series_in(expr) {
            assert!(
                exported.contains(&name),
                "a rule uses {name}, which Postino does not export: {expr}"
            );
        }
    }
}

#[test]
fn the_dashboard_has_a_row_per_stage_and_names_only_series_postino_exports() {
    let dashboard: Value =
        serde_json::from_str(&read("grafana/postino-dashboard.json")).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    for stage in [
        "Campaign", "Ingest", "Router", "Inbox", "Push", "Email", "Log", "Store",
    ] {
        assert!(
            rows.iter().any(|r| r.starts_with(stage)),
            "no {stage} row: {rows:?}"
        );
    }
    let exported = exported();
    let mut used = BTreeSet::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            for name in series_in(expr) {
                assert!(
                    exported.contains(&name),
                    "panel {} uses {name}, which Postino does not export",
                    panel["title"]
                );
                used.insert(name);
            }
        }
    }
    assert!(used.len() > 20, "the dashboard shows only {used:?}");
}

#[test]
fn series_names_are_read_out_of_expressions() {
    let names = series_in(
        r#"sum by (topic) (rate(postino_log_records_published_total{topic="postino_x", job="up"}[5m])) / up"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["postino_log_records_published_total", "up"]
    );
}

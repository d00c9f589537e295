//! `postino log status`: how far each consumer group of the embedded log has come, read from
//! the log's files (safe while Postino runs). Lag is what a group has still to process.

use std::fmt::Write as _;
use std::path::Path;

use bus::embedded::status::{self, TopicStatus};

/// The status table of the embedded log under the data directory `dir`.
pub fn render(dir: &Path) -> anyhow::Result<String> {
    let topics = status::read(dir)?;
    if topics.is_empty() {
        return Ok(format!("no embedded log under {}\n", dir.display()));
    }
    Ok(table(&topics))
}

fn table(topics: &[TopicStatus]) -> String {
    let width = topics
        .iter()
        .map(|t| t.topic.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let group_width = topics
        .iter()
        .flat_map(|t| t.groups.iter().map(|(g, _)| g.len()))
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!(
        "{:width$} {:>12} {:>12}  {:group_width$} {:>12} {:>12}\n",
        "topic", "first", "last", "group", "committed", "lag"
    );
    for t in topics {
        let line = |out: &mut String, group: &str, committed: &str, lag: &str| {
            let _ = writeln!(
                out,
                "{:width$} {:>12} {:>12}  {:group_width$} {:>12} {:>12}",
                t.topic, t.first, t.last, group, committed, lag
            );
        };
        if t.groups.is_empty() {
            line(&mut out, "-", "-", "-");
        }
        for (group, committed) in &t.groups {
            let lag = (t.last - committed).max(0);
            line(&mut out, group, &committed.to_string(), &lag.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_gets_a_line_with_its_lag_and_a_topic_without_groups_one_line() {
        let topics = vec![
            TopicStatus {
                topic: "messages".into(),
                first: 1,
                last: 1000,
                groups: vec![("router".into(), 990)],
            },
            TopicStatus {
                topic: "deliveries.push".into(),
                first: 1,
                last: 0,
                groups: Vec::new(),
            },
        ];
        let text = table(&topics);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            ["topic", "first", "last", "group", "committed", "lag"]
        );
        assert_eq!(rows[1], ["messages", "1", "1000", "router", "990", "10"]);
        assert_eq!(rows[2], ["deliveries.push", "1", "0", "-", "-", "-"]);
    }
}

//! Reading Prometheus's text exposition format: the samples of a `/metrics` answer, and the
//! sum of a series by its labels. The load tool reads Postino's metrics with it during a run;
//! tests read them to check values.

/// One sample: its series name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A line that is no sample of the text format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} is not a sample of the Prometheus text format: {text:?}")]
pub struct ExpositionError {
    pub line: usize,
    pub text: String,
}

/// The samples of an exposition (comments and blank lines skipped).
pub fn parse(exposition: &str) -> Result<Vec<Sample>, ExpositionError> {
    exposition
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, line)| {
            parse_line(line).ok_or_else(|| ExpositionError {
                line: i + 1,
                text: line.chars().take(200).collect(),
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.trim_end().rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return valid_name(series).then(|| Sample {
            name: series.to_string(),
            labels: Vec::new(),
            value,
        });
    };
    if !valid_name(name) {
        return None;
    }
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let label: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if !valid_name(&label) || chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((label, value));
        match chars.next() {
            Some(',') | None => {}
            Some(_) => return None,
        }
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The sum of series `name`'s samples whose labels include every one of `labels`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_quoted_commas_and_escapes() {
        let text = "# HELP x y\n# TYPE x gauge\npostino_build_info{version=\"0.1.0\",roles=\"ingest,citizen\"} 1\nup 0\nq{a=\"say \\\"hi\\\"\"} 2.5\nh_bucket{le=\"+Inf\"} +Inf\n\n";
        let all = parse(text).expect("parses");
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].label("roles"), Some("ingest,citizen"));
        assert_eq!(all[2].label("a"), Some("say \"hi\""));
        assert_eq!(
            sum(&all, "postino_build_info", &[("roles", "ingest,citizen")]),
            1.0
        );
        assert_eq!(sum(&all, "up", &[]), 0.0);
        assert_eq!(sum(&all, "absent", &[]), 0.0);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        for bad in [
            "no_value",
            "x{a=\"1\"",
            "x{a=1} 2",
            "x{a=\"unterminated} 2",
            "x 1 2 three",
            "x abc",
            "9lives 1",
            "x{a=\"1\"b=\"2\"} 3",
            "<html>",
        ] {
            let err = parse(&format!("ok 1\n{bad}\n")).expect_err(bad);
            assert_eq!(err.line, 2, "{bad}");
        }
    }
}

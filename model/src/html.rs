//! Text from outside (service names, subjects, a load test's target) placed in HTML that
//! Postino writes: emails and loadtest's report.

/// `text` with the characters that HTML or an attribute value would read as markup
/// replaced by entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_become_entities_and_the_rest_stays() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>Tom & Jerry</a> è"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;Tom &amp; Jerry&lt;/a&gt; è"
        );
    }
}

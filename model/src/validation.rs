//! The one error every parser in this crate returns: which field broke which rule.

use std::fmt;

/// A value from outside that broke a rule. `field` is a dotted path into the input
/// (`content.payment_data.amount`), `rule` says what was expected in words a sender can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub field: String,
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// The same error seen from one level up (`subject` inside `content` becomes `content.subject`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.rule)
        } else {
            write!(f, "{}: {}", self.field, self.rule)
        }
    }
}

/// Deserializes JSON into `T`, reporting the path of the first field that did not fit, so a
/// type error says `content.subject: invalid type: integer` rather than only a column number.
pub fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationError> {
    // Tracking the path allocates for every key, and almost every input is valid: parse
    // plainly first, and parse again with the path only to explain a failure (the same
    // bytes fail the same way).
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => {
            de.end()
                .map_err(|e| ValidationError::new("", format!("invalid JSON: {e}")))?;
            Ok(value)
        }
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let field = if path == "." { String::new() } else { path };
            let rule = if inner.is_syntax() || inner.is_eof() {
                format!("invalid JSON: {inner}")
            } else {
                strip_position(&inner.to_string())
            };
            Err(ValidationError::new(field, rule))
        }
    }
}

/// serde_json appends "at line L column C" to data errors; the field path already locates it.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Checks a string's length in characters (not bytes) against an inclusive range.
pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ValidationError::new(
            field,
            format!("must be {min} to {max} characters long, got {n}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Outer {
        #[allow(dead_code)]
        content: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    struct Inner {
        #[allow(dead_code)]
        subject: String,
    }

    #[test]
    fn type_errors_name_the_nested_field() {
        let err = from_json::<Outer>(br#"{"content":{"subject":12}}"#).unwrap_err();
        assert_eq!(err.field, "content.subject");
        assert!(err.rule.contains("invalid type"), "{}", err.rule);
    }

    #[test]
    fn missing_fields_and_broken_json_are_reported() {
        let err = from_json::<Outer>(br#"{"content":{}}"#).unwrap_err();
        assert!(err.rule.contains("missing field `subject`"), "{err}");
        let err = from_json::<Outer>(br#"{"content":"#).unwrap_err();
        assert!(err.rule.starts_with("invalid JSON"), "{err}");
        let err = from_json::<Outer>(br#"{"content":{"subject":"x"}} trailing"#).unwrap_err();
        assert!(err.rule.starts_with("invalid JSON"), "{err}");
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(check_len("s", "àààààààààà", 10, 12).is_ok());
        let err = check_len("s", "short", 10, 120).unwrap_err();
        assert_eq!(
            err.to_string(),
            "s: must be 10 to 120 characters long, got 5"
        );
    }
}

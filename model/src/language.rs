//! The languages Postino writes its own texts in (push and email), picked from the
//! citizen's `preferred_languages`.

use serde::{Deserialize, Serialize};

/// The languages Postino writes fixed texts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Italian,
    English,
    German,
}

/// The first of the citizen's preferred languages (IO `PreferredLanguage`, e.g. `en_GB`)
/// that Postino writes; Italian when none is.
pub fn language(preferred: &[String]) -> Language {
    preferred
        .iter()
        .find_map(|tag| match tag.get(..2) {
            Some("it") => Some(Language::Italian),
            Some("en") => Some(Language::English),
            Some("de") => Some(Language::German),
            _ => None,
        })
        .unwrap_or(Language::Italian)
}

//! Which store a process opens: the embedded SQLite file or a ScyllaDB cluster.

use crate::scylla::ScyllaAddress;

/// `sqlite` (under the data directory) or `scylla://host:port[,host:port…]/keyspace`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StoreAddress {
    Sqlite,
    Scylla(ScyllaAddress),
}

impl TryFrom<String> for StoreAddress {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text == "sqlite" {
            return Ok(Self::Sqlite);
        }
        if text.starts_with(ScyllaAddress::SCHEME) {
            return ScyllaAddress::parse(&text)
                .map(Self::Scylla)
                .map_err(|e| format!("store: {e}"));
        }
        Err(format!(
            "store: {text:?} is neither `sqlite` nor `scylla://host:port[,host:port…]/keyspace`"
        ))
    }
}

impl From<StoreAddress> for String {
    fn from(address: StoreAddress) -> String {
        address.to_string()
    }
}

impl std::fmt::Display for StoreAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite => f.write_str("sqlite"),
            Self::Scylla(address) => address.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_or_a_cluster_and_nothing_else() {
        let parse = |t: &str| StoreAddress::try_from(t.to_string());
        assert_eq!(parse("sqlite"), Ok(StoreAddress::Sqlite));
        let cluster = parse("scylla://127.0.0.1:9042/postino").expect("valid");
        assert_eq!(cluster.to_string(), "scylla://127.0.0.1:9042/postino");
        for bad in ["", "SQLite", "postgres://x", "scylla://x/ks"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.starts_with("store:"), "{bad:?}: {err}");
        }
    }
}

//! The store on a ScyllaDB cluster (any CQL cluster: the tests run it on Apache Cassandra).
//!
//! Its settings and address are always built, so every configuration reads the same; the
//! client itself ([`ScyllaStore`], with the `scylla` driver) and the schema migrations
//! ([`schema`]) come with the `scylla` feature, on in the `postino` binary.
//!
//! Every table is addressed by its partition key, so no operation scans; the schema and why
//! each table is shaped as it is are in `schema/*.cql`.

#[cfg(feature = "scylla")]
mod client;
#[cfg(feature = "scylla")]
pub mod schema;
#[cfg(feature = "scylla")]
mod session;
#[cfg(feature = "scylla")]
mod statements;

use std::path::PathBuf;

#[cfg(feature = "scylla")]
pub use client::ScyllaStore;
use model::secret::Secret;
use serde::{Deserialize, Serialize};

/// A keyspace name: a letter, then letters, digits and `_`, at most 48 in all (CQL's rule).
/// It is written into schema statements, so nothing else may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace(String);

impl Keyspace {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut chars = text.chars();
        let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !starts_well
            || text.len() > 48
            || !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "{text:?} is not a keyspace name: a letter, then letters, digits or _, at most 48"
            ));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Keyspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the cluster is: its contact points and the keyspace, from
/// `scylla://host:port[,host:port…]/keyspace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaAddress {
    pub nodes: Vec<String>,
    pub keyspace: Keyspace,
}

impl ScyllaAddress {
    /// The scheme that names this store.
    pub const SCHEME: &'static str = "scylla://";

    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix(Self::SCHEME)
            .ok_or_else(|| format!("{text:?} does not start with {}", Self::SCHEME))?;
        let (nodes, keyspace) = rest.split_once('/').ok_or_else(|| {
            format!("{text:?} names no keyspace: scylla://host:port[,host:port…]/keyspace")
        })?;
        if !model::net::is_host_port_list(nodes) {
            return Err(format!(
                "{text:?} must list host:port pairs after {}",
                Self::SCHEME
            ));
        }
        Ok(Self {
            nodes: nodes.split(',').map(str::to_string).collect(),
            keyspace: Keyspace::parse(keyspace)?,
        })
    }
}

impl std::fmt::Display for ScyllaAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}/{}",
            Self::SCHEME,
            self.nodes.join(","),
            self.keyspace
        )
    }
}

/// CQL consistency levels an operator may choose for reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    One,
    LocalOne,
    LocalQuorum,
    Quorum,
    EachQuorum,
    All,
}

/// CQL serial consistency levels, for the conditional writes (LWT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SerialConsistency {
    LocalSerial,
    Serial,
}

/// How `postino store migrate` replicates the keyspace it creates: `dc:rf[,dc:rf…]`
/// (NetworkTopologyStrategy, what production uses) or `simple:rf` (SimpleStrategy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Replication {
    Simple(u16),
    NetworkTopology(Vec<(String, u16)>),
}

impl TryFrom<String> for Replication {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let pair = |part: &str| -> Result<(String, u16), String> {
            let (name, factor) = part.split_once(':').ok_or_else(|| {
                format!("scylla.replication: {part:?} is not name:replication_factor")
            })?;
            let factor = factor
                .parse::<u16>()
                .ok()
                .filter(|f| *f >= 1)
                .ok_or_else(|| format!("scylla.replication: {factor:?} is not a factor ≥ 1"))?;
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid {
                return Err(format!(
                    "scylla.replication: {name:?} is not a datacenter name"
                ));
            }
            Ok((name.to_string(), factor))
        };
        let pairs = text
            .split(',')
            .map(|p| pair(p.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        match pairs.as_slice() {
            [(name, factor)] if name == "simple" => Ok(Self::Simple(*factor)),
            _ if pairs.iter().any(|(name, _)| name == "simple") => {
                Err("scylla.replication: `simple:rf` stands alone".into())
            }
            _ => Ok(Self::NetworkTopology(pairs)),
        }
    }
}

impl From<Replication> for String {
    fn from(replication: Replication) -> String {
        match replication {
            Replication::Simple(factor) => format!("simple:{factor}"),
            Replication::NetworkTopology(dcs) => dcs
                .iter()
                .map(|(dc, factor)| format!("{dc}:{factor}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl Replication {
    /// The CQL map of `CREATE KEYSPACE … WITH replication = …`.
    pub fn cql(&self) -> String {
        match self {
            Self::Simple(factor) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}")
            }
            Self::NetworkTopology(dcs) => {
                let dcs: Vec<String> = dcs
                    .iter()
                    .map(|(dc, factor)| format!("'{dc}': {factor}"))
                    .collect();
                format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
            }
        }
    }
}

/// The `[scylla]` settings; the cluster's address comes from `store`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScyllaSettings {
    /// Consistency of reads and writes.
    pub consistency: Consistency,
    /// Serial consistency of the conditional writes (LWT).
    pub serial_consistency: SerialConsistency,
    /// The datacenter whose nodes are asked first (token-aware within it); others only if
    /// it has none up. Unset: every node alike.
    pub local_datacenter: Option<String>,
    /// How long one statement may take, in ms, retries and speculation included.
    pub request_timeout_ms: u64,
    /// How long opening a connection may take, in ms.
    pub connect_timeout_ms: u64,
    /// After how many ms without an answer an idempotent statement is also sent to
    /// another replica (speculative execution); 0: never.
    pub speculative_after_ms: u64,
    /// Statements one store call keeps in flight (a batch of 500 records is 500 rows).
    pub concurrency: usize,
    /// Password authentication, with `password`.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// TLS to the cluster.
    pub tls: bool,
    /// PEM CA certificates the cluster's certificates are checked against, instead of the
    /// system's; read at start.
    pub ca_file: Option<PathBuf>,
    /// Replication of the keyspace `postino store migrate` creates.
    pub replication: Replication,
    #[serde(skip)]
    ca_pem: Option<Vec<u8>>,
}

impl Default for ScyllaSettings {
    fn default() -> Self {
        Self {
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            local_datacenter: None,
            request_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            speculative_after_ms: 200,
            concurrency: 256,
            username: None,
            password: None,
            tls: false,
            ca_file: None,
            replication: Replication::NetworkTopology(vec![("datacenter1".into(), 1)]),
            ca_pem: None,
        }
    }
}

impl ScyllaSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.username.is_some() != self.password.is_some() {
            return Err("scylla.username and scylla.password go together".into());
        }
        if self.ca_file.is_some() && !self.tls {
            return Err("scylla.ca_file needs scylla.tls = true".into());
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(
                "scylla.request_timeout_ms and scylla.connect_timeout_ms must be above 0".into(),
            );
        }
        if self.concurrency == 0 {
            return Err("scylla.concurrency must be at least 1".into());
        }
        Ok(())
    }

    /// Reads `ca_file` once, at start, so that a missing file stops Postino there.
    pub fn read_files(&mut self) -> Result<(), String> {
        self.ca_pem = self
            .ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path)
                    .map_err(|e| format!("scylla.ca_file: cannot read {}: {e}", path.display()))
            })
            .transpose()?;
        Ok(())
    }

    /// `ca_file`'s contents, once read.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_names_nodes_and_a_keyspace() {
        let address =
            ScyllaAddress::parse("scylla://a:9042,b.example:19042/postino").expect("valid");
        assert_eq!(address.nodes, ["a:9042", "b.example:19042"]);
        assert_eq!(address.keyspace.as_str(), "postino");
        assert_eq!(
            address.to_string(),
            "scylla://a:9042,b.example:19042/postino"
        );
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_rule() {
        for (text, says) in [
            ("cassandra://a:9042/ks", "does not start with"),
            ("scylla://a:9042", "names no keyspace"),
            ("scylla:///ks", "host:port"),
            ("scylla://a/ks", "host:port"),
            ("scylla://a:99999/ks", "host:port"),
            ("scylla://a:9042/", "not a keyspace name"),
            ("scylla://a:9042/1ks", "not a keyspace name"),
            ("scylla://a:9042/ks;DROP", "not a keyspace name"),
            ("scylla://a:9042/a\"b", "not a keyspace name"),
        ] {
            let err = ScyllaAddress::parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
        let long = format!("scylla://a:1/{}", "k".repeat(49));
        assert!(ScyllaAddress::parse(&long).is_err());
    }

    #[test]
    fn replication_reads_datacenters_or_simple() {
        let parse = |t: &str| Replication::try_from(t.to_string());
        assert_eq!(parse("simple:1"), Ok(Replication::Simple(1)));
        assert_eq!(
            parse("dc1:3, dc2:2").map(|r| r.cql()),
            Ok("{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}".to_string())
        );
        for bad in ["", "dc1", "dc1:0", "dc1:x", "simple:1,dc1:3", "d'c:1"] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let user_only = ScyllaSettings {
            username: Some("postino".into()),
            ..ScyllaSettings::default()
        };
        assert!(user_only
            .check()
            .expect_err("no password")
            .contains("scylla.password"));
        let ca_without_tls = ScyllaSettings {
            ca_file: Some("ca.pem".into()),
            ..ScyllaSettings::default()
        };
        assert!(ca_without_tls
            .check()
            .expect_err("no tls")
            .contains("scylla.tls"));
        let mut missing = ScyllaSettings {
            tls: true,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ScyllaSettings::default()
        };
        assert!(missing
            .read_files()
            .expect_err("no file")
            .contains("scylla.ca_file"));
        let with_password = ScyllaSettings {
            username: Some("postino".into()),
            password: Some(Secret::new("hunter2")),
            ..ScyllaSettings::default()
        };
        let shown = format!("{with_password:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

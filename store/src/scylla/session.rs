//! Opening a driver session on the cluster with the operator's settings: token-aware load
//! balancing (within the local datacenter when one is named), the consistency levels, the
//! request timeout, speculative execution of idempotent statements, authentication, TLS.

use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::ExecutionError;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use scylla::statement;

use super::{Consistency, ScyllaAddress, ScyllaSettings, SerialConsistency};
use crate::StoreError;

impl From<Consistency> for statement::Consistency {
    fn from(level: Consistency) -> Self {
        match level {
            Consistency::One => Self::One,
            Consistency::LocalOne => Self::LocalOne,
            Consistency::LocalQuorum => Self::LocalQuorum,
            Consistency::Quorum => Self::Quorum,
            Consistency::EachQuorum => Self::EachQuorum,
            Consistency::All => Self::All,
        }
    }
}

impl From<SerialConsistency> for statement::SerialConsistency {
    fn from(level: SerialConsistency) -> Self {
        match level {
            SerialConsistency::LocalSerial => Self::LocalSerial,
            SerialConsistency::Serial => Self::Serial,
        }
    }
}

/// A statement the driver could not run. Only a value the driver cannot send (our side
/// refusing it) is `Rejected`; everything the cluster answers or fails to answer holds the
/// stages as `Unavailable`, since a cluster down, overloaded or mid-schema-change is
/// exactly what waiting mends, and dead-lettering meanwhile would lose messages.
impl From<ExecutionError> for StoreError {
    fn from(err: ExecutionError) -> Self {
        match err {
            ExecutionError::BadQuery(bad) => StoreError::Rejected(bad.to_string()),
            other => StoreError::Unavailable(format!("cql: {other}")),
        }
    }
}

/// A session on the cluster at `address`, not yet in any keyspace.
pub(crate) async fn connect(
    address: &ScyllaAddress,
    settings: &ScyllaSettings,
) -> Result<Session, StoreError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &settings.local_datacenter {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(true);
    }
    let mut profile = ExecutionProfile::builder()
        .consistency(settings.consistency.into())
        .serial_consistency(Some(settings.serial_consistency.into()))
        .request_timeout(Some(Duration::from_millis(settings.request_timeout_ms)))
        .load_balancing_policy(policy.build());
    if settings.speculative_after_ms > 0 {
        profile = profile.speculative_execution_policy(Some(std::sync::Arc::new(
            SimpleSpeculativeExecutionPolicy {
                max_retry_count: 1,
                retry_interval: Duration::from_millis(settings.speculative_after_ms),
            },
        )));
    }
    let mut builder = SessionBuilder::new()
        .known_nodes(&address.nodes)
        .connection_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .default_execution_profile_handle(profile.build().into_handle());
    if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
        builder = builder.user(user.clone(), password.expose());
    }
    if settings.tls {
        builder = builder.tls_context(Some(tls_context(settings.ca_pem())?));
    }
    // Unreachable nodes, wrong credentials or TLS: each stops the start-up with the
    // driver's own words.
    builder
        .build()
        .await
        .map_err(|err| StoreError::Unavailable(format!("cql: cannot connect to {address}: {err}")))
}

/// TLS verifying the cluster's certificates against `ca_pem`, or the system's CAs.
fn tls_context(ca_pem: Option<&[u8]>) -> Result<openssl::ssl::SslContext, StoreError> {
    let refused = |e: openssl::error::ErrorStack| StoreError::Unavailable(format!("tls: {e}"));
    let mut builder =
        openssl::ssl::SslContextBuilder::new(openssl::ssl::SslMethod::tls()).map_err(refused)?;
    builder.set_verify(openssl::ssl::SslVerifyMode::PEER);
    match ca_pem {
        Some(pem) => {
            let mut store = openssl::x509::store::X509StoreBuilder::new().map_err(refused)?;
            let certificates = openssl::x509::X509::stack_from_pem(pem).map_err(refused)?;
            if certificates.is_empty() {
                return Err(StoreError::Unavailable(
                    "scylla.ca_file holds no certificate".into(),
                ));
            }
            for certificate in certificates {
                store.add_cert(certificate).map_err(refused)?;
            }
            builder.set_cert_store(store.build());
        }
        None => builder.set_default_verify_paths().map_err(refused)?,
    }
    Ok(builder.build())
}

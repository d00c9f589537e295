//! Real Kafka for tests (Apache Kafka 4.x, KRaft, one node), started by
//! `scripts/servers.sh`, which resolves it from Maven Central once and caches its jars.
//!
//! - [`shared`]: the broker the test command started for the whole run
//!   (`POSTINO_TEST_KAFKA`). Tests keep apart by their own topics and groups.
//! - [`own`]: a broker of the test's own, for a test that freezes it: it starts in a few
//!   seconds and stops when dropped ([`OwnServer`], which starts a Cassandra the same way).

use std::path::PathBuf;
use std::process::Command;

use crate::kafka::KafkaConfig;

/// The variable naming the run's broker, `host:port`.
pub const SHARED_BROKER: &str = "POSTINO_TEST_KAFKA";

/// A running broker.
#[derive(Debug)]
pub struct Broker {
    pub bootstrap: String,
    /// For a broker of the test's own: the server itself.
    own: Option<OwnServer>,
}

/// The run's broker.
///
/// # Panics
/// When `POSTINO_TEST_KAFKA` is not set: start one with `scripts/servers.sh start kafka`
/// and `eval "$(scripts/servers.sh env)"`, or run `scripts/test.sh`, which does both.
pub fn shared() -> Broker {
    let bootstrap = std::env::var(SHARED_BROKER).unwrap_or_else(|_| {
        panic!(
            "{SHARED_BROKER} is not set: run the tests with scripts/test.sh, or start Kafka with \
             scripts/servers.sh start kafka and eval \"$(scripts/servers.sh env)\""
        )
    });
    Broker {
        bootstrap,
        own: None,
    }
}

/// A broker of the test's own.
///
/// # Panics
/// When it cannot be started (the script says why).
pub fn own() -> Broker {
    let server = OwnServer::start("kafka");
    Broker {
        bootstrap: server.address.clone(),
        own: Some(server),
    }
}

impl Broker {
    /// Freezes the broker (SIGSTOP): clients see an unreachable cluster, and nothing it
    /// holds is lost. Only a broker of the test's own may be frozen.
    pub fn pause(&self) {
        self.server().pause();
    }

    /// Lets a frozen broker run again (SIGCONT).
    pub fn resume(&self) {
        self.server().resume();
    }

    fn server(&self) -> &OwnServer {
        self.own
            .as_ref()
            .expect("only a broker of the test's own (test_kafka::own) may be paused")
    }

    /// Client settings for this broker: the defaults, with 3 partitions per topic so that
    /// the tests see several partitions at work.
    pub fn config(&self) -> KafkaConfig {
        let mut config = KafkaConfig::new(self.bootstrap.clone());
        config.partitions = 3;
        config
    }
}

/// A server of `scripts/servers.sh` (`kafka` or `cassandra`) of one test's own, in a
/// scratch state directory: it starts in seconds, may be frozen, and stops when dropped.
/// (The CQL store's outage test freezes a Cassandra of its own with it.)
#[derive(Debug)]
pub struct OwnServer {
    name: String,
    /// Where it answers, `host:port`.
    pub address: String,
    state: tempfile::TempDir,
}

impl OwnServer {
    /// Starts `name` and waits until it answers.
    ///
    /// # Panics
    /// When it cannot be started (the script says why).
    pub fn start(name: &str) -> Self {
        let state = tempfile::tempdir().expect("tempdir");
        let out = servers(&state)
            .args(["start", name])
            .output()
            .expect("run scripts/servers.sh");
        assert!(
            out.status.success(),
            "scripts/servers.sh start {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = std::fs::read_to_string(state.path().join(name).join("address"))
            .expect("the script writes the server's address");
        Self {
            name: name.to_string(),
            address: address.trim().to_string(),
            state,
        }
    }

    /// Freezes it (SIGSTOP): clients see it unreachable, and nothing it holds is lost.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets it run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid =
            std::fs::read_to_string(self.state.path().join(&self.name).join("pid")).expect("pid");
        let status = Command::new("kill")
            .args([which, pid.trim()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} failed");
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        // A frozen server would not stop on SIGTERM.
        self.resume();
        let _ = servers(&self.state).args(["stop", &self.name]).status();
    }
}

/// `scripts/servers.sh`, keeping its state in `state`. Found from the crate under test at
/// run time, as builds are shared between clones.
fn servers(state: &tempfile::TempDir) -> Command {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let mut command = Command::new(crate_dir.join("..").join("scripts").join("servers.sh"));
    command.env("POSTINO_SERVERS_DIR", state.path());
    command
}

//! The Kafka bus against the bus conformance suite, on a real Kafka-protocol broker: each
//! test starts its own `tansu` broker on a free 127.0.0.1 port (tansu listens on IPv4 only)
//! and stops it when the test ends. `scripts/test.sh` installs tansu when it is missing;
//! `TANSU` names another binary.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::kafka::{KafkaBus, KafkaConfig};
use bus::Bus;

/// A running broker; dropping it stops it.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    pub bootstrap: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU") {
        return path.into();
    }
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin").join("tansu"));
    match in_cargo_home {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("tansu"),
    }
}

pub fn start_broker() -> Broker {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(tansu())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start tansu ({e}); install it with scripts/test.sh or set TANSU")
        });
    let broker = Broker {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
    };
    let addr: SocketAddr = broker.bootstrap.parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not start listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    broker
}

/// The client settings for tansu. tansu 0.6 answers a fetch with the stored batches whose
/// *base* offset is at or after the fetch offset, so a consumer resuming inside a batch
/// (after committing part of it) would never see that batch's remaining records; real Kafka
/// returns the batch containing the offset. One record per batch makes every position a
/// batch boundary, so the suite still checks resumption exactly. Production keeps batching.
pub fn tansu_config(bootstrap: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(bootstrap);
    config.partitions = 3;
    config
        .properties
        .insert("batch.num.messages".into(), "1".into());
    config
}

async fn kafka() -> (Arc<dyn Bus>, Broker) {
    let broker = start_broker();
    let config = tansu_config(&broker.bootstrap);
    let bus: Arc<dyn Bus> = KafkaBus::connect(config).expect("connect");
    (bus, broker)
}

bus::bus_conformance!(kafka());

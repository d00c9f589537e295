//! A local Kafka-protocol broker for tests: starts `tansu` on a free 127.0.0.1 port (tansu
//! listens on IPv4 only) with in-memory storage, and stops it when dropped. `scripts/test.sh`
//! installs tansu when it is missing; `TANSU` names another binary.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kafka::KafkaConfig;

/// A running broker; dropping it stops it.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    pub bootstrap: String,
}

impl Broker {
    /// Freezes the broker (SIGSTOP): clients see an unreachable cluster, and nothing it
    /// holds in memory is lost.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let status = Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} failed");
    }
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

/// Starts a broker and waits until it accepts connections on a port it holds itself. The
/// port is picked free and handed to tansu, so another process (another test's broker) may
/// take it in between: then tansu cannot listen, and a connection would reach the other
/// one, so this test would pause or stop a broker it is not talking to. Such a start is
/// thrown away and tried on another port.
pub fn start_broker() -> Broker {
    for _ in 0..10 {
        if let Some(broker) = try_start_broker() {
            return broker;
        }
    }
    panic!("tansu did not start listening on a port of its own in ten tries");
}

fn try_start_broker() -> Option<Broker> {
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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start tansu ({e}); install it with scripts/test.sh or set TANSU")
        });
    let mut broker = Broker {
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
        if !matches!(broker.child.try_wait(), Ok(None)) {
            return None; // it exited: the port was taken
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Something answers; it must be this broker (dropping the others stops them).
    listens_on(broker.child.id(), port).then_some(broker)
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux: the
/// listening socket's inode in `/proc/net/tcp` among the process's descriptors). Where
/// `/proc` cannot tell, it is taken as yes.
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return true;
    };
    let local = format!("0100007F:{port:04X}");
    const LISTEN: &str = "0A";
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening =
                fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&LISTEN);
            listening
                .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
                .flatten()
        })
        .collect();
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    descriptors
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .any(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
}

/// The client settings for tansu. tansu 0.6 answers a fetch with the stored batches whose
/// *base* offset is at or after the fetch offset, so a consumer resuming inside a batch
/// (after committing part of it) would never see that batch's remaining records; real Kafka
/// returns the batch containing the offset. One record per batch makes every position a
/// batch boundary, so the suite still checks resumption exactly. Production keeps batching.
pub fn tansu_config(bootstrap: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(bootstrap);
    config.partitions = 3;
    config.properties.insert("batch.num.messages", "1");
    config
}

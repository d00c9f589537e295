//! The Kafka bus against the bus conformance suite, on real Kafka: the broker the test
//! command started for the run (see `bus::test_kafka`), each test on topics of its own.

use std::sync::Arc;

use bus::kafka::KafkaBus;
use bus::test_kafka::{shared, Broker};
use bus::Bus;

async fn kafka() -> (Arc<dyn Bus>, Broker) {
    let broker = shared();
    let bus: Arc<dyn Bus> = KafkaBus::connect(broker.config()).expect("connect");
    (bus, broker)
}

bus::bus_conformance!(kafka());

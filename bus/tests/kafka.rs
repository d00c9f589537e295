//! The Kafka bus against the bus conformance suite, on a real Kafka-protocol broker: each
//! test starts its own `tansu` broker (see `bus::tansu`) and stops it when the test ends.

use std::sync::Arc;

use bus::kafka::KafkaBus;
use bus::tansu::{start_broker, tansu_config, Broker};
use bus::Bus;

async fn kafka() -> (Arc<dyn Bus>, Broker) {
    let broker = start_broker();
    let config = tansu_config(&broker.bootstrap);
    let bus: Arc<dyn Bus> = KafkaBus::connect(config).expect("connect");
    (bus, broker)
}

bus::bus_conformance!(kafka());

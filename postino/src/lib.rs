//! The Postino process: configuration, start-up of every role on the embedded defaults,
//! graceful shutdown, and the operator commands. `main.rs` is only the command line.

pub mod admin;
pub mod app;
pub mod config;
pub mod kafka_init;
pub mod logstatus;
pub mod migrate;
pub mod openapi;
pub mod request_id;
pub mod roles;
pub mod secrets;
pub mod server;
pub mod telemetry;

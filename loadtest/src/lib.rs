//! `loadtest`: rehearses a national campaign against a running Postino. It seeds citizens
//! and services, offers load in the open model (at a fixed rate, whatever the latency) or
//! the closed one (as fast as answers come), and measures what senders and citizens see:
//! accepted/s, errors by status, ingest latency percentiles, send → inbox latency and, with
//! the push stand-ins it also provides, send → push latency and pushes/s.

pub mod api;
pub mod cli;
pub mod engine;
pub mod pacing;
pub mod population;
pub mod pushes;
pub mod report;
pub mod scenarios;
pub mod standins;
pub mod stats;

//! `loadtest`: rehearses a national campaign against a running Postino. It seeds citizens
//! and services, offers load in the open model (at a fixed rate, whatever the latency) or
//! the closed one (as fast as answers come), and measures what senders and citizens see:
//! accepted/s, errors by status, ingest latency percentiles, send → inbox latency and, with
//! the push stand-ins it also provides and the SMTP sink, send → push and send → mailbox
//! latency and rates.

pub mod api;
pub mod arrivals;
pub mod cli;
pub mod engine;
pub mod http1;
pub mod lanes;
pub mod pacing;
pub mod population;
pub mod report;
pub mod scenarios;
pub mod scrape;
pub mod standins;
pub mod stats;

//! Every API test, in one binary: each starts the real app on port 0 with its own data
//! directory and talks to it over HTTP, as a sender, an operator or a citizen would.

mod campaigns;
mod citizen_api;
mod email;
mod health;
mod helpers;
mod idempotency;
mod io_contract;
mod limits;
mod manage;
mod messages;
mod openapi;
mod organizations;
mod profiles;
mod subscriptions_feed;
mod test_mode;

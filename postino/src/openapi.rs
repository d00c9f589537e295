//! The OpenAPI 3 document of everything Postino serves, generated from the handlers'
//! annotations so it cannot drift. A copy is checked in as `openapi.json` (a test keeps it
//! equal to this) and served at `/openapi.json`.

use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa::OpenApi as _;

pub fn document() -> OpenApi {
    let mut doc = ingest::IngestApi::openapi();
    doc.merge(citizen::CitizenApi::openapi());
    doc.info = InfoBuilder::new()
        .title("Postino")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Notification pipeline for public services. `/api/v1` is compatible with IO's \
             senders' and manage APIs (IO operation ids kept); `/citizen/v1` is the app-facing API. \
             Errors are application/problem+json; validation problems name the `field`.",
        ))
        .build();
    doc
}

pub fn json() -> String {
    document().to_pretty_json().unwrap_or_default() + "\n"
}

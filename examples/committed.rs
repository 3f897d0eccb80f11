//! Generated code committed for review: `committed_flows.rs` is written by
//! `selinon generate --nodes examples/flows/nodes.yml --flows examples/flows/ --map-module =crate
//! -o examples/committed_flows.rs`, and CI fails when it is stale (`--check`).
//!
//! `cargo run --example committed`

#[path = "myapp.rs"]
mod myapp;

// Generated code is formatted by the generator; `cargo fmt` leaves it as `--check` expects.
#[rustfmt::skip]
#[path = "committed_flows.rs"]
mod flows;

#[tokio::main]
async fn main() {
    myapp::run_ingest("serde").await;
}

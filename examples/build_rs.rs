//! The build.rs way: `build.rs` writes the code into `OUT_DIR`, the crate includes it.
//!
//! `cargo run --example build_rs`

#[path = "myapp.rs"]
mod myapp;

mod flows {
    include!(concat!(env!("OUT_DIR"), "/selinon_flows.rs"));
}

#[tokio::main]
async fn main() {
    myapp::run_ingest("serde").await;
}

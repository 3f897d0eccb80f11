//! The quickest start: `include_flows!` compiles the YAML when the crate builds.
//!
//! `cargo run --example quickstart`

#[path = "myapp.rs"]
mod myapp;

mod flows {
    selinon_macros::include_flows!("flows/nodes.yml", "flows/");
}

#[tokio::main]
async fn main() {
    myapp::run_ingest("serde").await;
    // The release server fails for `broken`: the fallback fetches it from the mirror.
    myapp::run_ingest("broken").await;
}

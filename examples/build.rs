//! Generates the code of the `build_rs` example into `OUT_DIR/selinon_flows.rs`.

fn main() {
    let generated = selinon_codegen::Builder::new()
        .nodes("flows/nodes.yml")
        .flows("flows/")
        // `import: myapp.tasks` → `crate::myapp::tasks` (the example declares `mod myapp`).
        .map_module("", "crate")
        .generate();
    // On errors, `generate` has printed the report (shown under `--- stderr`) and one
    // `cargo::error` line: failing is all that is left to do.
    if generated.is_err() {
        std::process::exit(1);
    }
}

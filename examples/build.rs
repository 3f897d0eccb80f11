//! Generates the code of the `build_rs` example into `OUT_DIR/selinon_flows.rs`.

fn main() {
    let result = selinon_codegen::Builder::new()
        .nodes("flows/nodes.yml")
        .flows("flows/")
        // `import: myapp.tasks` → `crate::myapp::tasks` (the example declares `mod myapp`).
        .map_module("", "crate")
        .generate();
    if let Err(err) = result {
        eprintln!("{err}");
        std::process::exit(1);
    }
}

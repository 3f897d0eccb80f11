//! Arbitrary bytes as a single configuration file (nodes and flow definitions in one) through
//! loading, the checks and lowering; the diagnostics are rendered too. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let checked = selinon_codegen::check_strs(("fuzz.yml", &text), &[("fuzz.yml", &text)]);
    let _ = checked.diagnostics.render(&checked.sources, false);
    let _ = checked.diagnostics.to_json(&checked.sources);
    if let Some(system) = &checked.system {
        assert!(!checked.diagnostics.has_errors());
        for flow in &system.flows {
            let _ = selinon_codegen::plot::flow_to_dot(system, flow);
            let expand = selinon_codegen::plot::Options { expand: true };
            let _ = selinon_codegen::plot::flow_to_dot_with(system, flow, expand);
        }
    }
});

//! Compile tests of `include_flows!` and `flows!`: a configuration that compiles and runs, and
//! the errors a user sees for a missing task type (and storage type, foreach and selective run
//! function: errors that name the YAML line), a type that is not a task, a function of
//! neither foreach shape, a misspelt flow handle, a built-in storage whose runtime feature is
//! off, and broken YAML (in a file, and inline: the errors name the lines of the Rust file);
//! typed tasks and flows end to end, and the errors for a flow started with the wrong argument
//! type, a result read as the wrong type and `#[task]` functions with wrong signatures.

use std::path::PathBuf;

#[test]
fn ui() {
    // trybuild builds the cases in `target/tests/trybuild/selinon-macros`, which is the
    // `CARGO_MANIFEST_DIR` the macro resolves paths against: put the YAML there.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let project = target.join("tests/trybuild/selinon-macros/ui-flows");
    std::fs::create_dir_all(&project).unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ui/flows");
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, project.join(path.file_name().unwrap())).unwrap();
    }
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/hello_ok.rs");
    t.compile_fail("tests/ui/missing_task_type.rs");
    t.compile_fail("tests/ui/not_a_task.rs");
    t.compile_fail("tests/ui/not_a_foreach.rs");
    t.compile_fail("tests/ui/misspelt_flow.rs");
    t.compile_fail("tests/ui/storage_feature_off.rs");
    t.compile_fail("tests/ui/broken_yaml.rs");
    t.pass("tests/ui/inline_ok.rs");
    t.compile_fail("tests/ui/inline_broken.rs");
    t.pass("tests/ui/typed_ok.rs");
    t.compile_fail("tests/ui/wrong_flow_args.rs");
    t.compile_fail("tests/ui/wrong_result_type.rs");
    t.compile_fail("tests/ui/bad_task_fn.rs");
    t.compile_fail("tests/ui/missing_user_items.rs");
}

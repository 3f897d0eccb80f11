//! The library half of the `selinon` command line: [`sim`], the IR run on the runtime's
//! engine with mocked tasks (`selinon simulate`). The binary (`src/main.rs`) parses arguments
//! and calls `selinon-codegen`, this module and `selinon-runtime`.

pub mod sim;

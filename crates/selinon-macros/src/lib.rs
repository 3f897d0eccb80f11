//! `include_flows!`: thin proc-macro glue over `selinon-codegen`.

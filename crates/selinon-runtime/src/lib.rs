//! Runtime for Selinon flows compiled to Rust.
//!
//! The engine, transports, backends and storages land here; the generated code of
//! `selinon-codegen` is all the runtime needs to know about a configuration.

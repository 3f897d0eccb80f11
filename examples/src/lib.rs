//! Runnable examples of Selinon for Rust; see the files beside this crate's manifest.

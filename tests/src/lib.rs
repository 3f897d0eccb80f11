//! Integration tests across the crates live in `tests/`.

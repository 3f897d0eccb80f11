//! `#[task]` says what is wrong with a function's signature.

use selinon_macros::task;
use selinon_runtime::{TaskContext, TaskResult};

/// Not `async`.
#[task]
pub fn not_async(_ctx: &TaskContext, name: String) -> TaskResult<String> {
    Ok(name)
}

/// Arguments by reference.
#[task]
pub async fn borrowed(_ctx: &TaskContext, name: &str) -> TaskResult<String> {
    Ok(name.to_string())
}

/// No result.
#[task]
pub async fn no_result(_ctx: &TaskContext, _name: String) {}

/// A result that is not a `Result`.
#[task]
pub async fn plain(_ctx: &TaskContext, name: String) -> String {
    name
}

/// Too many parameters.
#[task]
pub async fn three(_ctx: &TaskContext, name: String, _more: u32) -> TaskResult<String> {
    Ok(name)
}

/// Arguments that cannot be decoded from JSON.
pub struct Unreadable;

#[task]
pub async fn opaque(_ctx: &TaskContext, _args: Unreadable) -> TaskResult<u32> {
    Ok(1)
}

fn main() {}

//! A log subscriber for programs that run flows: readable lines on stderr, filtered by
//! `RUST_LOG`.
//!
//! The runtime logs through the [`tracing`] crate (target `selinon`): failures and warnings
//! always, every trace event when `global.trace` names the `logging` sink (see
//! [`crate::trace::log_event`] for the lines). Nothing is printed until the program installs a
//! subscriber; [`init`] installs one unless the program already has its own.
//! `amqp::worker_main` and the `main` of a `selinon new` project call it.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Installs a [`tracing`] subscriber that writes one line per event to stderr (time, level,
/// the spans with their fields, the message, the fields), filtered by `RUST_LOG`
/// (`EnvFilter` syntax, e.g. `RUST_LOG=selinon=debug,info`; default `info`; a directive it
/// cannot parse is reported and skipped), with colours when stderr is a terminal and
/// `NO_COLOR` is unset.
///
/// Does nothing when the program already installed a global subscriber: returns whether it
/// installed one.
pub fn init() -> bool {
    if tracing::dispatcher::has_been_set() {
        return false;
    }
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .finish();
    tracing::subscriber::set_global_default(subscriber).is_ok()
}

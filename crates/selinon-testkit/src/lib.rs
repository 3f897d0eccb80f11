//! What the workspace's tests need from outside: the servers on 127.0.0.1 (RabbitMQ, Redis,
//! PostgreSQL, an S3-compatible server) and the corpus of real configurations.
//!
//! Each function returns where the thing is, or panics with how to get it. The one way to go
//! without is explicit, local and loud: `SELINON_SKIP_SERVICES=1` (servers) or
//! `SELINON_SKIP_CORPUS=1` (corpus) make the function return `None` and print `SKIPPED`; under
//! CI (`CI` set to anything but `false`/`0`) they are ignored and a missing server or corpus is
//! a failure.
//!
//! ```no_run
//! #[test]
//! fn round_trip() {
//!     let Some(url) = selinon_testkit::redis_url() else {
//!         return; // SELINON_SKIP_SERVICES=1, outside CI
//!     };
//!     // ... connect to `url`
//! }
//! ```

#![warn(missing_docs)]

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The broker: `AMQP_URL`, else `amqp://guest:guest@127.0.0.1:5672/%2f`.
pub fn amqp_url() -> Option<String> {
    server(
        "RabbitMQ",
        "AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        5672,
        "`rabbitmq-server -detached` (install: `apt-get install -y rabbitmq-server`)",
    )
}

/// Redis: `REDIS_URL`, else `redis://127.0.0.1:6379/`.
pub fn redis_url() -> Option<String> {
    server(
        "Redis",
        "REDIS_URL",
        "redis://127.0.0.1:6379/",
        6379,
        "`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\"` (install: \
         `apt-get install -y redis-server`)",
    )
}

/// PostgreSQL: `POSTGRES_URL`, else `postgresql://postgres@127.0.0.1:5432/test`.
pub fn postgres_url() -> Option<String> {
    server(
        "PostgreSQL",
        "POSTGRES_URL",
        "postgresql://postgres@127.0.0.1:5432/test",
        5432,
        "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` with trust \
         authentication and a database `test` (`createdb -U postgres test`)",
    )
}

/// The S3-compatible server to start (`moto_server`): `SELINON_MOTO_SERVER`, else
/// `moto_server` from the PATH; checked by running it with `--help`.
pub fn moto_server() -> Option<String> {
    let path = std::env::var("SELINON_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let found = std::process::Command::new(&path)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(path);
    }
    missing(
        "SELINON_SKIP_SERVICES",
        &format!(
            "no S3-compatible server (`{path}` does not run): install one with `python3 -m venv \
             ~/.cache/selinon-moto && ~/.cache/selinon-moto/bin/pip install 'moto[server]'` and \
             set SELINON_MOTO_SERVER=~/.cache/selinon-moto/bin/moto_server (.ci/run does this)"
        ),
    )
}

/// The corpus of real configurations: `SELINON_CORPUS_DIR` (set by `.ci/run`), else
/// `shared/corpus` beside the checkout.
pub fn corpus_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SELINON_CORPUS_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.is_dir(),
            "SELINON_CORPUS_DIR={} is not a directory: point it at the shared/corpus folder",
            dir.display()
        );
        return Some(dir);
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    if default.is_dir() {
        return Some(default);
    }
    missing(
        "SELINON_SKIP_CORPUS",
        &format!(
            "the corpus is missing: SELINON_CORPUS_DIR is unset and {} does not exist; set \
             SELINON_CORPUS_DIR to the shared/corpus folder",
            default.display()
        ),
    )
}

/// Whether this run is CI's: `CI` set to anything but `false` or `0`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The URL of a server when it answers; else panics with how to start it (or `None` under
/// the explicit opt-out, outside CI).
fn server(name: &str, var: &str, default: &str, default_port: u16, how: &str) -> Option<String> {
    let url = std::env::var(var).unwrap_or_else(|_| default.to_string());
    let (host, port) = host_port(&url, default_port);
    if answers(&host, port) {
        return Some(url);
    }
    missing(
        "SELINON_SKIP_SERVICES",
        &format!(
            "{name} does not answer on {host}:{port} ({var}={url}). Start it with {how}, or \
             point {var} at a running server"
        ),
    )
}

fn answers(host: &str, port: u16) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// Something a test needs is missing: `None` under the explicit opt-out `skip_var=1` outside
/// CI (saying so), else a panic with `message`.
fn missing<T>(skip_var: &str, message: &str) -> Option<T> {
    let opted_out = std::env::var(skip_var).is_ok_and(|v| v == "1");
    if opted_out && !in_ci() {
        eprintln!("SKIPPED because {skip_var}=1: {message}");
        return None;
    }
    if opted_out {
        panic!("{message}. ({skip_var}=1 is ignored under CI: nothing is skipped there.)");
    }
    panic!("{message}. (To go without it outside CI, set {skip_var}=1.)");
}

/// Host and port of a URL such as `scheme://user:pass@host:port/path`.
pub fn host_port(url: &str, default_port: u16) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default_port)),
        None => (hostport.to_string(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_urls() {
        assert_eq!(
            host_port("amqp://guest:guest@127.0.0.1:5672/%2f", 1),
            ("127.0.0.1".into(), 5672)
        );
        assert_eq!(
            host_port("redis://localhost/", 6379),
            ("localhost".into(), 6379)
        );
        assert_eq!(
            host_port("postgresql://postgres@db:5433/test", 5432),
            ("db".into(), 5433)
        );
    }

    #[test]
    fn a_server_that_does_not_answer_fails_with_how_to_start_it() {
        // Port 9 (discard) on loopback: nothing listens there.
        std::env::remove_var("SELINON_SKIP_SERVICES");
        let err = std::panic::catch_unwind(|| {
            server(
                "Thing",
                "SELINON_TESTKIT_NO_SUCH_URL",
                "x://127.0.0.1:9/",
                9,
                "`thingd`",
            )
        })
        .unwrap_err();
        let message = err.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("Thing does not answer on 127.0.0.1:9"),
            "{message}"
        );
        assert!(message.contains("Start it with `thingd`"), "{message}");
    }
}

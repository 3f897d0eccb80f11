//! The built-in predicates (upstream `selinon.predicates`), called by generated conditions.
//!
//! Names are the YAML names in snake case (`fieldEqual` → [`field_equal`]). Field predicates
//! take the task result (`None` when it could not be read) or the flow arguments, a `key` that
//! is one key or a list of keys forming a path, and their arguments as JSON. Like upstream they
//! are false on any error (missing key, type mismatch, values that cannot be compared), and
//! compare with Python's rules (`1 == 1.0`, `True == 1`, lists compared item by item).

use std::cmp::Ordering;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value as Json;

/// Follows `key` (one key or a list of keys; integers index lists) into `value`.
pub fn lookup<'a>(value: &'a Json, key: &Json) -> Option<&'a Json> {
    let step = |v: &'a Json, k: &Json| -> Option<&'a Json> {
        match (v, k) {
            (Json::Object(m), Json::String(s)) => m.get(s),
            (Json::Array(items), Json::Number(n)) => {
                let i = n.as_i64()?;
                let i = if i < 0 { items.len() as i64 + i } else { i };
                items.get(usize::try_from(i).ok()?)
            }
            _ => None,
        }
    };
    match key {
        Json::Array(path) => path.iter().try_fold(value, step),
        k => step(value, k),
    }
}

/// A number as Python sees it (booleans are integers).
fn number(v: &Json) -> Option<f64> {
    match v {
        Json::Bool(b) => Some(f64::from(u8::from(*b))),
        Json::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Python's `==` over JSON values.
pub fn py_eq(a: &Json, b: &Json) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a, b) {
            (Json::Array(x), Json::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
            }
            (Json::Object(x), Json::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
            }
            _ => a == b,
        },
    }
}

/// Python's ordering over JSON values; `None` where Python raises `TypeError`.
pub fn py_cmp(a: &Json, b: &Json) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        (Json::Array(x), Json::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !py_eq(p, q) {
                    return py_cmp(p, q);
                }
            }
            Some(x.len().cmp(&y.len()))
        }
        _ => None,
    }
}

fn json_len(v: &Json) -> Option<usize> {
    match v {
        Json::String(s) => Some(s.chars().count()),
        Json::Array(a) => Some(a.len()),
        Json::Object(o) => Some(o.len()),
        _ => None,
    }
}

/// Python's `value in container`.
fn contains(container: &Json, value: &Json) -> bool {
    match (container, value) {
        (Json::String(s), Json::String(v)) => s.contains(v.as_str()),
        (Json::Array(items), v) => items.iter().any(|i| py_eq(i, v)),
        (Json::Object(m), Json::String(k)) => m.contains_key(k),
        _ => false,
    }
}

/// Python truthiness.
fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

fn json_is_int(v: &Json) -> bool {
    matches!(v, Json::Bool(_)) || matches!(v, Json::Number(n) if n.is_i64() || n.is_u64())
}

fn json_is_float(v: &Json) -> bool {
    matches!(v, Json::Number(n) if n.is_f64())
}

/// The parts of a URL as Python's `urllib.parse.urlparse` splits them.
fn url_parts(url: &str) -> (String, String, String) {
    let (scheme, rest) = match url.find(':') {
        Some(i)
            if i > 0
                && url[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && url[..1].chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            (url[..i].to_lowercase(), &url[i + 1..])
        }
        _ => (String::new(), url),
    };
    let (netloc, rest) = match rest.strip_prefix("//") {
        Some(r) => {
            let end = r.find(['/', '?', '#']).unwrap_or(r.len());
            (r[..end].to_string(), &r[end..])
        }
        None => (String::new(), rest),
    };
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let path = rest[..path_end].split(';').next().unwrap_or("").to_string();
    (scheme, netloc, path)
}

macro_rules! field_family {
    ($($field:ident / $args:ident ($($p:ident),*) => |$v:ident| $body:expr;)*) => {
        $(
            #[doc = concat!("`", stringify!($field), "` on a task result.")]
            pub fn $field(message: Option<&Json>, key: &Json $(, $p: &Json)*) -> bool {
                match message.and_then(|m| lookup(m, key)) {
                    Some($v) => $body,
                    None => false,
                }
            }
            #[doc = concat!("`", stringify!($args), "` on the flow arguments.")]
            pub fn $args(node_args: &Json, key: &Json $(, $p: &Json)*) -> bool {
                $field(Some(node_args), key $(, $p)*)
            }
        )*
    };
}

field_family! {
    field_exist / args_field_exist () => |_v| true;
    field_equal / args_field_equal (value) => |v| py_eq(v, value);
    field_not_equal / args_field_not_equal (value) => |v| !py_eq(v, value);
    field_greater / args_field_greater (value) => |v| py_cmp(v, value) == Some(Ordering::Greater);
    field_greater_equal / args_field_greater_equal (value) => |v| matches!(py_cmp(v, value), Some(Ordering::Greater | Ordering::Equal));
    field_less / args_field_less (value) => |v| py_cmp(v, value) == Some(Ordering::Less);
    field_less_equal / args_field_less_equal (value) => |v| matches!(py_cmp(v, value), Some(Ordering::Less | Ordering::Equal));
    field_contain / args_field_contain (value) => |v| contains(v, value);
    field_len_equal / args_field_len_equal (length) => |v| len_cmp(v, length) == Some(Ordering::Equal);
    field_len_not_equal / args_field_len_not_equal (length) => |v| matches!(len_cmp(v, length), Some(Ordering::Less | Ordering::Greater));
    field_len_greater / args_field_len_greater (length) => |v| len_cmp(v, length) == Some(Ordering::Greater);
    field_len_greater_equal / args_field_len_greater_equal (length) => |v| matches!(len_cmp(v, length), Some(Ordering::Greater | Ordering::Equal));
    field_len_less / args_field_len_less (length) => |v| len_cmp(v, length) == Some(Ordering::Less);
    field_len_less_equal / args_field_len_less_equal (length) => |v| matches!(len_cmp(v, length), Some(Ordering::Less | Ordering::Equal));
    field_bool / args_field_bool () => |v| v.is_boolean();
    field_int / args_field_int () => |v| json_is_int(v);
    field_float / args_field_float () => |v| json_is_float(v);
    field_str / args_field_str () => |v| v.is_string();
    field_list / args_field_list () => |v| v.is_array();
    field_dict / args_field_dict () => |v| v.is_object();
    field_none / args_field_none () => |v| v.is_null();
    field_url_scheme / args_field_url_scheme (scheme) => |v| url_component(v, scheme, 0);
    field_url_netloc / args_field_url_netloc (netloc) => |v| url_component(v, netloc, 1);
    field_url_path / args_field_url_path (path) => |v| url_component(v, path, 2);
}

fn len_cmp(v: &Json, length: &Json) -> Option<Ordering> {
    let n = length.as_f64()?;
    (json_len(v)? as f64).partial_cmp(&n)
}

fn url_component(v: &Json, expected: &Json, part: usize) -> bool {
    let (Some(url), Some(expected)) = (v.as_str(), expected.as_str()) else {
        return false;
    };
    let (scheme, netloc, path) = url_parts(url);
    [scheme, netloc, path][part] == expected
}

macro_rules! type_family {
    ($($is:ident / $args:ident => |$v:ident| $body:expr;)*) => {
        $(
            #[doc = concat!("`", stringify!($is), "` on a whole task result.")]
            pub fn $is(message: Option<&Json>) -> bool {
                match message {
                    Some($v) => $body,
                    None => false,
                }
            }
            #[doc = concat!("`", stringify!($args), "` on the flow arguments.")]
            pub fn $args(node_args: &Json) -> bool {
                $is(Some(node_args))
            }
        )*
    };
}

type_family! {
    is_bool / args_is_bool => |v| v.is_boolean();
    is_int / args_is_int => |v| json_is_int(v);
    is_float / args_is_float => |v| json_is_float(v);
    is_str / args_is_str => |v| v.is_string();
    is_list / args_is_list => |v| v.is_array();
    is_dict / args_is_dict => |v| v.is_object();
    is_none / args_is_none => |v| v.is_null();
    empty / args_empty => |v| !truthy(v);
}

/// `alwaysTrue`.
pub fn always_true() -> bool {
    true
}

/// `alwaysFalse`.
pub fn always_false() -> bool {
    false
}

/// `envExist`: the environment variable is set.
pub fn env_exist(env: &Json) -> bool {
    env.as_str().is_some_and(|e| std::env::var_os(e).is_some())
}

/// `envEqual`: the environment variable is set and equal to `value`.
pub fn env_equal(env: &Json, value: &Json) -> bool {
    match (env.as_str(), value.as_str()) {
        (Some(e), Some(v)) => std::env::var(e).is_ok_and(|x| x == v),
        _ => false,
    }
}

/// `httpStatus`: a plain-HTTP `HEAD host/path` answers with `status`; any error is false.
pub fn http_status(host: &Json, path: &Json, status: &Json) -> bool {
    let (Some(host), Some(path), Some(status)) = (host.as_str(), path.as_str(), status.as_u64())
    else {
        return false;
    };
    head_status(host, path).is_some_and(|s| u64::from(s) == status)
}

fn head_status(host: &str, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(5);
    let target = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = target.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    write!(
        stream,
        "HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    // The status line, however the response arrives in pieces.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = std::str::from_utf8(&head).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What a built-in predicate reads besides its `args`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Nothing (`alwaysTrue`, `envExist`, `httpStatus`, ...).
    Nothing,
    /// The result of the task the condition leaf is bound to (upstream's `message`).
    Result,
    /// The flow's arguments (`node_args`).
    NodeArgs,
}

/// One built-in predicate: the one table the compiler checks conditions against (names,
/// arguments), emits calls from (the function and its argument order) and the simulator calls.
#[derive(Clone, Copy)]
pub struct Builtin {
    /// The YAML name (`fieldEqual`).
    pub name: &'static str,
    /// The function of this module (`field_equal`).
    pub function: &'static str,
    /// What the predicate reads besides its `args`.
    pub reads: Reads,
    /// The parameters that come from the condition's `args`, in the function's order.
    pub args: &'static [&'static str],
    /// The predicate blocks on I/O (`httpStatus`): the engine evaluates conditions using it on
    /// tokio's blocking threads.
    pub blocking: bool,
    /// Calls the function: the task result (`Reads::Result`), the flow arguments
    /// (`Reads::NodeArgs`), and the values of `args` in their order (false when their number
    /// is wrong).
    pub call: fn(Option<&Json>, &Json, &[&Json]) -> bool,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builtin")
            .field("name", &self.name)
            .field("reads", &self.reads)
            .field("args", &self.args)
            .field("blocking", &self.blocking)
            .finish_non_exhaustive()
    }
}

macro_rules! catalogue {
    ($($name:literal => $f:ident($reads:ident $(, $arg:ident)*) $($blocking:ident)?;)*) => {
        /// Every built-in predicate (upstream's `selinon.predicates`).
        pub const BUILTINS: &[Builtin] = &[$(
            Builtin {
                name: $name,
                function: stringify!($f),
                reads: Reads::$reads,
                args: &[$(stringify!($arg)),*],
                blocking: catalogue!(@blocking $($blocking)?),
                call: |message, node_args, args| match args {
                    [$($arg),*] => catalogue!(@call $reads $f message node_args $($arg)*),
                    _ => false,
                },
            },
        )*];
    };
    (@blocking) => { false };
    (@blocking blocking) => { true };
    (@call Nothing $f:ident $message:ident $node_args:ident $($arg:ident)*) => {{
        let _ = ($message, $node_args);
        $f($($arg),*)
    }};
    (@call Result $f:ident $message:ident $node_args:ident $($arg:ident)*) => {{
        let _ = $node_args;
        $f($message $(, $arg)*)
    }};
    (@call NodeArgs $f:ident $message:ident $node_args:ident $($arg:ident)*) => {{
        let _ = $message;
        $f($node_args $(, $arg)*)
    }};
}

catalogue! {
    "alwaysTrue" => always_true(Nothing);
    "alwaysFalse" => always_false(Nothing);
    "envExist" => env_exist(Nothing, env);
    "envEqual" => env_equal(Nothing, env, value);
    "httpStatus" => http_status(Nothing, host, path, status) blocking;

    "empty" => empty(Result);
    "isBool" => is_bool(Result);
    "isInt" => is_int(Result);
    "isFloat" => is_float(Result);
    "isStr" => is_str(Result);
    "isList" => is_list(Result);
    "isDict" => is_dict(Result);
    "isNone" => is_none(Result);
    "fieldExist" => field_exist(Result, key);
    "fieldEqual" => field_equal(Result, key, value);
    "fieldNotEqual" => field_not_equal(Result, key, value);
    "fieldGreater" => field_greater(Result, key, value);
    "fieldGreaterEqual" => field_greater_equal(Result, key, value);
    "fieldLess" => field_less(Result, key, value);
    "fieldLessEqual" => field_less_equal(Result, key, value);
    "fieldContain" => field_contain(Result, key, value);
    "fieldLenEqual" => field_len_equal(Result, key, length);
    "fieldLenNotEqual" => field_len_not_equal(Result, key, length);
    "fieldLenGreater" => field_len_greater(Result, key, length);
    "fieldLenGreaterEqual" => field_len_greater_equal(Result, key, length);
    "fieldLenLess" => field_len_less(Result, key, length);
    "fieldLenLessEqual" => field_len_less_equal(Result, key, length);
    "fieldBool" => field_bool(Result, key);
    "fieldInt" => field_int(Result, key);
    "fieldFloat" => field_float(Result, key);
    "fieldStr" => field_str(Result, key);
    "fieldList" => field_list(Result, key);
    "fieldDict" => field_dict(Result, key);
    "fieldNone" => field_none(Result, key);
    "fieldUrlScheme" => field_url_scheme(Result, key, scheme);
    "fieldUrlNetloc" => field_url_netloc(Result, key, netloc);
    "fieldUrlPath" => field_url_path(Result, key, path);

    "argsEmpty" => args_empty(NodeArgs);
    "argsIsBool" => args_is_bool(NodeArgs);
    "argsIsInt" => args_is_int(NodeArgs);
    "argsIsFloat" => args_is_float(NodeArgs);
    "argsIsStr" => args_is_str(NodeArgs);
    "argsIsList" => args_is_list(NodeArgs);
    "argsIsDict" => args_is_dict(NodeArgs);
    "argsIsNone" => args_is_none(NodeArgs);
    "argsFieldExist" => args_field_exist(NodeArgs, key);
    "argsFieldEqual" => args_field_equal(NodeArgs, key, value);
    "argsFieldNotEqual" => args_field_not_equal(NodeArgs, key, value);
    "argsFieldGreater" => args_field_greater(NodeArgs, key, value);
    "argsFieldGreaterEqual" => args_field_greater_equal(NodeArgs, key, value);
    "argsFieldLess" => args_field_less(NodeArgs, key, value);
    "argsFieldLessEqual" => args_field_less_equal(NodeArgs, key, value);
    "argsFieldContain" => args_field_contain(NodeArgs, key, value);
    "argsFieldLenEqual" => args_field_len_equal(NodeArgs, key, length);
    "argsFieldLenNotEqual" => args_field_len_not_equal(NodeArgs, key, length);
    "argsFieldLenGreater" => args_field_len_greater(NodeArgs, key, length);
    "argsFieldLenGreaterEqual" => args_field_len_greater_equal(NodeArgs, key, length);
    "argsFieldLenLess" => args_field_len_less(NodeArgs, key, length);
    "argsFieldLenLessEqual" => args_field_len_less_equal(NodeArgs, key, length);
    "argsFieldBool" => args_field_bool(NodeArgs, key);
    "argsFieldInt" => args_field_int(NodeArgs, key);
    "argsFieldFloat" => args_field_float(NodeArgs, key);
    "argsFieldStr" => args_field_str(NodeArgs, key);
    "argsFieldList" => args_field_list(NodeArgs, key);
    "argsFieldDict" => args_field_dict(NodeArgs, key);
    "argsFieldNone" => args_field_none(NodeArgs, key);
    "argsFieldUrlScheme" => args_field_url_scheme(NodeArgs, key, scheme);
    "argsFieldUrlNetloc" => args_field_url_netloc(NodeArgs, key, netloc);
    "argsFieldUrlPath" => args_field_url_path(NodeArgs, key, path);
}

/// The built-in predicate of that YAML name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Every built-in name, for suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|b| b.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_predicates_follow_python_semantics() {
        let r = json!({"a": {"b": [1, 2, 3]}, "n": 1, "s": "hello", "t": true, "f": 1.5});
        assert!(field_exist(Some(&r), &json!(["a", "b"])));
        assert!(!field_exist(Some(&r), &json!(["a", "x"])));
        assert!(field_equal(Some(&r), &json!("n"), &json!(1.0)));
        assert!(field_equal(Some(&r), &json!("t"), &json!(1)));
        assert!(field_greater(Some(&r), &json!("f"), &json!(1)));
        assert!(
            !field_greater(Some(&r), &json!("s"), &json!(1)),
            "str > int is a TypeError"
        );
        assert!(field_contain(Some(&r), &json!("s"), &json!("ell")));
        assert!(field_contain(Some(&r), &json!(["a", "b"]), &json!(2)));
        assert!(field_len_greater_equal(
            Some(&r),
            &json!(["a", "b"]),
            &json!(3)
        ));
        assert!(field_len_less_equal(
            Some(&r),
            &json!(["a", "b"]),
            &json!(3)
        ));
        assert!(!field_len_less(Some(&r), &json!(["a", "b"]), &json!(3)));
        assert!(field_int(Some(&r), &json!("t")), "bool is an int in Python");
        assert!(field_float(Some(&r), &json!("f")));
        assert!(!field_equal(None, &json!("n"), &json!(1)));
    }

    #[test]
    fn the_catalogue_calls_each_function_with_its_arguments_in_order() {
        let call = |name: &str, message: Option<&Json>, node_args: &Json, args: &[&Json]| {
            (builtin(name).expect("a built-in").call)(message, node_args, args)
        };
        let (key, one, two) = (json!("a"), json!(1), json!(2));
        assert!(call(
            "fieldEqual",
            Some(&json!({"a": 1})),
            &Json::Null,
            &[&key, &one]
        ));
        assert!(!call(
            "argsFieldEqual",
            None,
            &json!({"a": 2}),
            &[&key, &one]
        ));
        assert!(call(
            "argsFieldEqual",
            None,
            &json!({"a": 2}),
            &[&key, &two]
        ));
        assert!(call(
            "fieldLenEqual",
            Some(&json!({"a": [1, 2]})),
            &Json::Null,
            &[&key, &two]
        ));
        assert!(call("alwaysTrue", None, &Json::Null, &[]));
        assert!(
            !call("fieldEqual", Some(&json!({"a": 1})), &Json::Null, &[&key]),
            "one argument short"
        );
        assert!(builtin("noSuchPredicate").is_none());
        let names: Vec<&str> = names().collect();
        assert_eq!(names.len(), BUILTINS.len());
        assert!(BUILTINS
            .iter()
            .all(|b| builtin(b.name).is_some_and(|c| c.function == b.function)));
    }

    #[test]
    fn empty_is_true_for_empty_values() {
        assert!(empty(Some(&json!({}))));
        assert!(empty(Some(&json!(null))));
        assert!(!empty(Some(&json!([1]))));
        assert!(args_empty(&json!("")));
    }

    #[test]
    fn url_predicates_split_like_urlparse() {
        let r = json!({"u": "https://github.com/selinon/selinon?x=1"});
        assert!(field_url_scheme(Some(&r), &json!("u"), &json!("https")));
        assert!(field_url_netloc(
            Some(&r),
            &json!("u"),
            &json!("github.com")
        ));
        assert!(field_url_path(
            Some(&r),
            &json!("u"),
            &json!("/selinon/selinon")
        ));
    }

    #[test]
    fn env_predicates_read_the_environment() {
        assert!(env_exist(&json!("PATH")));
        assert!(!env_exist(&json!("SELINON_SURELY_UNSET_VARIABLE")));
        assert!(!env_equal(
            &json!("SELINON_SURELY_UNSET_VARIABLE"),
            &json!("")
        ));
    }

    #[test]
    fn http_status_is_false_when_nothing_answers() {
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        assert!(!http_status(
            &json!("127.0.0.1:9"),
            &json!("/"),
            &json!(200)
        ));
    }

    #[test]
    fn http_status_reads_a_local_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // Read the whole request head first: closing with unread input would reset the
            // connection and could lose the answer.
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            let _ = conn.shutdown(std::net::Shutdown::Write);
        });
        assert!(http_status(
            &json!(addr.to_string()),
            &json!("/x"),
            &json!(204)
        ));
        server.join().unwrap();
    }
}

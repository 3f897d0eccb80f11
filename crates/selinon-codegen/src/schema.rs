//! `output_schema` files: read when the configuration is read, checked, and embedded in the
//! generated code as compact JSON (workers read no file).
//!
//! A path is relative to the folder of the nodes file that declares it (absolute paths are
//! used as they are). Upstream Selinon opened the path when a task returned a result, relative
//! to the worker's current directory; here a file that is missing, is not JSON or is not a
//! valid JSON schema stops code generation instead of failing every run of the task.

use std::path::Path;

use crate::diagnostics::display_path;

/// What is wrong with a schema file, for a diagnostic at the task's `output_schema`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Completes "the output schema of task `T` …".
    pub message: String,
    /// How to fix it.
    pub help: String,
}

/// Reads and checks the schema at `path` (`written` as in the YAML, relative to `folder`):
/// its text as read and as compact JSON.
pub fn read(path: &Path, written: &str, folder: &Path) -> Result<(String, String), Problem> {
    let shown = display_path(path);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            let folder_shown = match display_path(folder) {
                f if f.is_empty() => ".".to_string(),
                f => f,
            };
            let mut help = format!(
                "`output_schema` is a path relative to the folder of the nodes file \
                 (`{folder_shown}`), so this one names `{shown}`: fix the path or create the file"
            );
            // Upstream read the path relative to the worker's current directory.
            if Path::new(written).is_relative()
                && path != Path::new(written)
                && Path::new(written).is_file()
            {
                help.push_str(&format!(
                    "; `{written}` exists relative to the current directory (where upstream \
                     Selinon workers looked): write its path relative to `{folder_shown}`"
                ));
            }
            return Err(Problem {
                message: format!("cannot be read: `{written}`: {err}"),
                help,
            });
        }
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|err| Problem {
        message: format!(
            "(`{written}`) is not JSON: {} at {shown}:{}:{}",
            strip_position(&err.to_string()),
            err.line(),
            err.column()
        ),
        help: "an output schema is a JSON schema in a JSON file; fix the file".to_string(),
    })?;
    if let Err(err) = jsonschema::validator_for(&value) {
        let at = match err.instance_path().as_str() {
            "" => String::new(),
            p => format!(" (at {p} in the schema)"),
        };
        return Err(Problem {
            message: format!("(`{written}`) is not a valid JSON schema: {err}{at}"),
            help: "fix the schema; references (`$ref`) may only point inside it (`#/…`): the \
                   generated code embeds the schema and workers fetch nothing"
                .to_string(),
        });
    }
    let compact = serde_json::to_string(&value).map_err(|err| Problem {
        message: format!("(`{written}`) cannot be embedded: {err}"),
        help: String::new(),
    })?;
    Ok((text, compact))
}

/// serde_json's messages end in " at line L column C": the place is given as file:line:col.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("selinon-schema-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_a_schema_as_compact_json() {
        let d = dir("ok");
        std::fs::write(d.join("s.json"), "{\n  \"type\": \"object\"\n}\n").unwrap();
        let (text, compact) = read(&d.join("s.json"), "s.json", &d).unwrap();
        assert!(text.contains("\n  \"type\""));
        assert_eq!(compact, r#"{"type":"object"}"#);
    }

    #[test]
    fn says_what_is_wrong() {
        let d = dir("bad");
        let missing = read(&d.join("nope.json"), "nope.json", &d).unwrap_err();
        assert!(
            missing.message.starts_with("cannot be read: `nope.json`"),
            "{missing:?}"
        );
        assert!(
            missing
                .help
                .contains("relative to the folder of the nodes file"),
            "{missing:?}"
        );

        std::fs::write(d.join("broken.json"), "{\n  \"type\": \n}\n").unwrap();
        let broken = read(&d.join("broken.json"), "broken.json", &d).unwrap_err();
        assert!(
            broken.message.contains("is not JSON: expected value at "),
            "{broken:?}"
        );
        assert!(broken.message.ends_with("broken.json:3:1"), "{broken:?}");

        std::fs::write(d.join("wrong.json"), r#"{"type": "thing"}"#).unwrap();
        let wrong = read(&d.join("wrong.json"), "wrong.json", &d).unwrap_err();
        assert!(
            wrong.message.contains("is not a valid JSON schema: "),
            "{wrong:?}"
        );
    }
}

//! Migrations (spec §3.17): what changed in the flows between two versions of a configuration,
//! written in upstream's migration-file format so that existing migration directories keep
//! working.
//!
//! Per flow present in both versions, edges are compared by their `from` and `to` node sets:
//! identical edges pair up first-come; an old edge left unpaired is *tainted* (a flow that
//! already fired it cannot be continued faithfully) and translates to nothing; a new edge
//! left unpaired with sources is *tainting* (a flow whose sources of it already finished
//! would have fired it); a paired edge whose index changed translates to its new index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::config::model::{Template, TemplatePart};
use crate::ir::{Flow, System};

/// What to do with a running flow that a migration taints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaintedFlowStrategy {
    /// Go on as if nothing happened.
    #[default]
    Ignore,
    /// Restart the flow from scratch.
    Retry,
    /// Fail the flow.
    Fail,
}

impl std::str::FromStr for TaintedFlowStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "IGNORE" => Ok(TaintedFlowStrategy::Ignore),
            "RETRY" => Ok(TaintedFlowStrategy::Retry),
            "FAIL" => Ok(TaintedFlowStrategy::Fail),
            _ => Err(format!(
                "unknown tainted flow strategy `{s}`: use IGNORE, RETRY or FAIL"
            )),
        }
    }
}

/// An edge of the old version that no edge of the new one matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaintedEdge {
    /// The old edge's `from` nodes.
    pub from: Vec<String>,
    /// The old edge's `to` nodes.
    pub to: Vec<String>,
    /// The edge's condition as written in the YAML.
    pub condition_str: Json,
}

/// The migration of one flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowMigration {
    /// Old edge index → new index (`null`: the edge is gone).
    pub translation: BTreeMap<String, Option<usize>>,
    /// Old edge index → the old edge, for edges that are gone.
    pub tainted_edges: BTreeMap<String, TaintedEdge>,
    /// New edge index → its sources.
    pub tainting_nodes: BTreeMap<String, Vec<String>>,
}

impl FlowMigration {
    fn is_empty(&self) -> bool {
        self.translation.is_empty()
            && self.tainted_edges.is_empty()
            && self.tainting_nodes.is_empty()
    }
}

/// One migration file (`<migration_dir>/<N>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationFile {
    /// Flow name → its migration; flows that did not change are left out.
    pub migration: BTreeMap<String, FlowMigration>,
    /// What workers do with a flow in flight that passed a tainted edge.
    pub tainted_flow_strategy: TaintedFlowStrategy,
    /// `_meta`: free-form details of the migration as upstream writes them; kept as read, not used.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Json>,
}

/// Why no migration file was written.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The old and new flows have the same edges.
    #[error("no change in the flows needs a migration (edges are the same, up to conditions)")]
    NotNeeded,
    /// A file or directory could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file in the migration directory is not named `<N>.json`.
    #[error("{path}: not a migration file name (migration files are named 1.json, 2.json, …)")]
    BadName {
        /// The misnamed file.
        path: PathBuf,
    },
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

/// The nodes in the order the YAML writes them, each once (upstream writes a set).
fn as_written(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for n in v {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

/// The migration of one flow between its old and new edges.
pub fn flow_migration(old: &Flow, new: &Flow) -> FlowMigration {
    let key = |from: &[String], to: &[String]| (sorted(from), sorted(to));
    let mut new_taken = vec![false; new.edges.len()];
    let mut old_to_new: Vec<Option<usize>> = vec![None; old.edges.len()];
    for (i, o) in old.edges.iter().enumerate() {
        let ko = key(&o.from, &o.to);
        if let Some(j) = (0..new.edges.len())
            .find(|&j| !new_taken[j] && key(&new.edges[j].from, &new.edges[j].to) == ko)
        {
            new_taken[j] = true;
            old_to_new[i] = Some(j);
        }
    }
    let mut m = FlowMigration::default();
    for (i, o) in old.edges.iter().enumerate() {
        match old_to_new[i] {
            Some(j) if j == i => {}
            Some(j) => {
                m.translation.insert(i.to_string(), Some(j));
            }
            None => {
                m.translation.insert(i.to_string(), None);
                m.tainted_edges.insert(
                    i.to_string(),
                    TaintedEdge {
                        from: as_written(&o.from),
                        to: as_written(&o.to),
                        condition_str: o.condition_written.clone(),
                    },
                );
            }
        }
    }
    for (j, n) in new.edges.iter().enumerate() {
        if !new_taken[j] && !n.from.is_empty() {
            m.tainting_nodes.insert(j.to_string(), as_written(&n.from));
        }
    }
    m
}

/// The migration from `old` to `new`: every flow present in both that changed.
pub fn compute(
    old: &System,
    new: &System,
    strategy: TaintedFlowStrategy,
) -> Result<MigrationFile, MigrateError> {
    let mut migration = BTreeMap::new();
    for o in &old.flows {
        let Some(n) = new.flows.iter().find(|f| f.name == o.name) else {
            continue;
        };
        let m = flow_migration(o, n);
        if !m.is_empty() {
            migration.insert(o.name.clone(), m);
        }
    }
    if migration.is_empty() {
        return Err(MigrateError::NotNeeded);
    }
    Ok(MigrationFile {
        migration,
        tainted_flow_strategy: strategy,
        meta: None,
    })
}

/// The directory `global.migration_dir` names, resolved relative to the folder of the nodes
/// file (an absolute path stays as it is). `Err(variable)` when the path uses an environment
/// variable (`{VAR}`) that is not set.
pub fn resolve_dir(nodes: &Path, dir: &Template) -> Result<PathBuf, String> {
    let mut path = String::new();
    for part in &dir.parts {
        match part {
            TemplatePart::Text(t) => path.push_str(t),
            TemplatePart::Env(var) => match std::env::var(var) {
                Ok(v) => path.push_str(&v),
                Err(_) => return Err(var.clone()),
            },
        }
    }
    let base = nodes.parent().unwrap_or(Path::new("."));
    Ok(base.join(path))
}

/// The numbers of the migration files in `dir`, sorted (an absent directory has none).
pub fn versions(dir: &Path) -> Result<Vec<u32>, MigrateError> {
    let io = |e: std::io::Error| MigrateError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !path.is_file() || name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let n = name
            .trim_end_matches(".json")
            .parse::<u32>()
            .map_err(|_| MigrateError::BadName { path: path.clone() })?;
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// Writes `file` as the next migration of `dir` (created if missing); returns its path.
pub fn write_next(dir: &Path, file: &MigrationFile) -> Result<PathBuf, MigrateError> {
    let io = |path: &Path, e: std::io::Error| MigrateError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let next = versions(dir)?.last().copied().unwrap_or(0) + 1;
    let path = dir.join(format!("{next}.json"));
    let mut text = serde_json::to_string_pretty(file).expect("migration files serialise");
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    Ok(path)
}

/// Reads the migration files of `dir` in order: `(version, JSON text)`. Each must be a
/// migration file; numbers may start above 1 (older files removed).
pub fn read_chain(dir: &Path) -> Result<Vec<(u32, String)>, MigrateError> {
    let mut out = Vec::new();
    for v in versions(dir)? {
        let path = dir.join(format!("{v}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| MigrateError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        serde_json::from_str::<Json>(&text)
            .ok()
            .filter(|j| j.get("migration").is_some_and(Json::is_object))
            .ok_or_else(|| MigrateError::Io {
                path: path.clone(),
                message: "not a migration file (no `migration` object)".into(),
            })?;
        out.push((v, text));
    }
    Ok(out)
}

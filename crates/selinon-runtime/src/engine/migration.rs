//! Migrations of running flows (spec §3.17): a flow whose state was written by an older
//! version of the configuration is brought to the latest version at its next pass.
//!
//! The chain is `global.migration_dir`'s `1.json`, `2.json`, … (upstream's format), embedded
//! in the generated code, or read from the directory when a worker first needs it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value as Json;

use super::state::DispatcherMessage;
use crate::spec::SystemSpec;

/// What to do with a flow a migration taints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaintedFlowStrategy {
    Ignore,
    Retry,
    Fail,
}

#[derive(Debug, Deserialize)]
struct FlowMigration {
    #[serde(default)]
    translation: BTreeMap<String, Option<usize>>,
    /// Edge index → the old edge (upstream also wrote a list of indices).
    #[serde(default)]
    tainted_edges: Json,
    #[serde(default)]
    tainting_nodes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct MigrationFile {
    migration: BTreeMap<String, FlowMigration>,
    tainted_flow_strategy: TaintedFlowStrategy,
}

impl FlowMigration {
    fn taints_edge(&self, edge: usize) -> bool {
        match &self.tainted_edges {
            Json::Object(m) => m.contains_key(&edge.to_string()),
            Json::Array(a) => a.iter().any(|e| e.as_u64() == Some(edge as u64)),
            _ => false,
        }
    }
}

/// The parsed chain of a system, by version.
#[derive(Debug)]
struct Chain {
    files: BTreeMap<u32, MigrationFile>,
}

impl Chain {
    fn latest(&self) -> u32 {
        self.files.keys().next_back().copied().unwrap_or(0)
    }
}

/// How a message stands after migrating.
#[derive(Debug, PartialEq)]
pub(crate) enum Migrated {
    /// Nothing to do (no migrations, or already at the latest version).
    Unchanged,
    /// Migrated from `from` to `to`; `tainted` with the IGNORE strategy.
    Applied { from: u32, to: u32, tainted: bool },
    /// A migration taints the flow and its strategy says RETRY or FAIL.
    Tainted {
        strategy: TaintedFlowStrategy,
        version: u32,
        what: String,
    },
    /// The message is newer than this worker's migrations: put it back, never drop it.
    Skew { message: u32, latest: u32 },
    /// The chain cannot be read.
    Error(String),
}

type Cache = Mutex<HashMap<usize, Result<Arc<Chain>, String>>>;

fn cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn load(system: &'static SystemSpec) -> Result<Arc<Chain>, String> {
    let key = system as *const SystemSpec as usize;
    if let Some(c) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return c.clone();
    }
    let parsed = parse(system);
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, parsed.clone());
    parsed
}

fn parse(system: &SystemSpec) -> Result<Arc<Chain>, String> {
    let Some(dir) = &system.migration_dir else {
        return Ok(Arc::new(Chain {
            files: BTreeMap::new(),
        }));
    };
    let texts: Vec<(u32, String)> = if !dir.files.is_empty() {
        dir.files.iter().map(|(v, t)| (*v, t.to_string())).collect()
    } else {
        let path = crate::storage::expand_env(dir.path).map_err(|e| e.to_string())?;
        let path = std::path::PathBuf::from(path);
        if !path.is_dir() {
            tracing::warn!(
                "migration_dir {} does not exist: flows are not migrated",
                path.display()
            );
            return Ok(Arc::new(Chain {
                files: BTreeMap::new(),
            }));
        }
        let mut texts = Vec::new();
        let entries = std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let text = std::fs::read_to_string(entry.path())
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            texts.push((n, text));
        }
        texts
    };
    let mut files = BTreeMap::new();
    for (n, text) in texts {
        let file = serde_json::from_str::<MigrationFile>(&text)
            .map_err(|e| format!("migration {n} is not a migration file: {e}"))?;
        files.insert(n, file);
    }
    Ok(Arc::new(Chain { files }))
}

/// Whether [`migrate`] may change more of `msg` than its `migration_version`: the message
/// has a state written at another version than the latest.
pub(crate) fn pending(system: &'static SystemSpec, msg: &DispatcherMessage) -> bool {
    system.migration_dir.is_some()
        && msg.state.is_some()
        && msg
            .migration_version
            .is_some_and(|v| load(system).is_ok_and(|chain| chain.latest() != v))
}

/// Brings `msg` to the latest migration version.
pub(crate) fn migrate(system: &'static SystemSpec, msg: &mut DispatcherMessage) -> Migrated {
    // Without a migration directory the chain is empty: nothing to load.
    let chain = match &system.migration_dir {
        None => None,
        Some(_) => match load(system) {
            Ok(c) => Some(c),
            Err(e) => return Migrated::Error(e),
        },
    };
    let latest = chain.as_ref().map_or(0, |c| c.latest());
    // With a migration directory, every flow records its version (0: none yet).
    let current = system.migration_dir.is_some().then_some(latest);
    let Some(state) = msg.state.as_mut() else {
        // A new flow starts at the latest version.
        msg.migration_version = current;
        return Migrated::Unchanged;
    };
    let Some(version) = msg.migration_version else {
        // Written before this system had migrations: adopt the latest.
        msg.migration_version = current;
        return Migrated::Unchanged;
    };
    if version == latest {
        return Migrated::Unchanged;
    }
    if version > latest {
        return Migrated::Skew {
            message: version,
            latest,
        };
    }
    let Some(chain) = chain else {
        // No chain: the latest version is 0, and no version is below it.
        return Migrated::Unchanged;
    };
    let mut tainted = false;
    for v in version + 1..=latest {
        let Some(file) = chain.files.get(&v) else {
            // A gap in the chain: this worker cannot migrate the flow.
            return Migrated::Skew {
                message: version,
                latest,
            };
        };
        let Some(m) = file.migration.get(&msg.flow_name) else {
            continue;
        };
        if state.waiting_edges.is_empty() && state.triggered_edges.is_empty() {
            continue;
        }
        let mut taint = |what: String| -> Option<Migrated> {
            tainted = true;
            match file.tainted_flow_strategy {
                TaintedFlowStrategy::Ignore => None,
                strategy => Some(Migrated::Tainted {
                    strategy,
                    version: v,
                    what,
                }),
            }
        };
        // (1) an edge that fired is gone.
        for e in &state.triggered_edges {
            if m.taints_edge(*e) {
                if let Some(stop) = taint(format!("edge {e} fired and is gone in migration {v}")) {
                    return stop;
                }
            }
        }
        // (2) indices move.
        let translate = |edges: &mut Vec<usize>| {
            *edges = edges
                .iter()
                .filter_map(|e| match m.translation.get(&e.to_string()) {
                    Some(new) => *new,
                    None => Some(*e),
                })
                .collect();
        };
        translate(&mut state.triggered_edges);
        translate(&mut state.waiting_edges);
        // (3) a new edge would have fired already.
        let finished: BTreeSet<&str> = state.finished_nodes.keys().map(String::as_str).collect();
        for (idx, nodes) in &m.tainting_nodes {
            if !nodes.is_empty() && nodes.iter().all(|n| finished.contains(n.as_str())) {
                if let Some(stop) = taint(format!(
                    "new edge {idx} has finished sources {nodes:?} (migration {v})"
                )) {
                    return stop;
                }
            }
        }
        // (4) a new edge whose sources are running waits for them.
        let active: BTreeSet<&str> = state.active_nodes.iter().map(|n| n.name.as_str()).collect();
        for (idx, nodes) in &m.tainting_nodes {
            let Ok(idx) = idx.parse::<usize>() else {
                continue;
            };
            if nodes.iter().all(|n| active.contains(n.as_str()))
                && !state.waiting_edges.contains(&idx)
            {
                state.waiting_edges.push(idx);
            }
        }
    }
    msg.migration_version = Some(latest);
    Migrated::Applied {
        from: version,
        to: latest,
        tainted,
    }
}

//! Flow graphs as pictures: one Graphviz DOT graph per flow ([`flow_to_dot`]), written to a
//! folder as `.dot` files or rendered to SVG through Graphviz's `dot` ([`render`]).
//!
//! ```
//! let nodes = "tasks:\n  - name: Hello\n    import: app.tasks\nflows: [hello]\n";
//! let flows = "flow-definitions:\n  - name: hello\n    edges:\n      - from:\n        to: Hello\n";
//! let system = selinon_codegen::check_strs(("nodes.yml", nodes), &[("flows.yml", flows)])
//!     .system
//!     .unwrap();
//! let dot = selinon_codegen::plot::flow_to_dot(&system, &system.flows[0]);
//! assert!(dot.contains("\":start\" -> \"Hello\""));
//! ```
//!
//! How a flow is drawn:
//! - tasks are green rounded boxes, sub-flows blue 3D boxes marked `(sub-flow)`, `nowait` nodes
//!   have a dashed grey outline and say so; a task's storage is a small brown cylinder beside
//!   it, linked by a dotted line (labelled `read-only` for `storage_readonly` tasks);
//! - the flow starts at a black dot; an edge with one source and no condition is a plain arrow;
//!   an edge with a condition, a `foreach` or `selective` settings goes through one yellow box
//!   that holds them (written as upstream prints conditions in traces), and an unconditional
//!   edge with several sources meets in a small dot, so each edge is labelled once;
//! - failures are dashed red: from the failed nodes (through a red box when the entry has a
//!   condition or several nodes) to the fallback nodes, or to a `failure handled` marker for
//!   `fallback: true`.
//!
//! Internal node identifiers start with `:` (or `storage:`), which task and flow names cannot.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ir::{Condition, FallbackTarget, Flow, NodeKind, System};

/// The output format of [`render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Graphviz source (no Graphviz needed).
    Dot,
    /// SVG rendered by Graphviz's `dot`.
    Svg,
}

impl Format {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Dot => "dot",
            Format::Svg => "svg",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dot" => Ok(Format::Dot),
            "svg" => Ok(Format::Svg),
            _ => Err(format!("unknown plot format `{s}`: use dot or svg")),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// Plotting failed.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// SVG was asked for and Graphviz's `dot` is not on the PATH.
    #[error(
        "SVG needs Graphviz's `dot`, which is not installed (not found on PATH): install the \
         `graphviz` package (Debian/Ubuntu: `sudo apt-get install graphviz`; Fedora: `sudo dnf \
         install graphviz`; macOS: `brew install graphviz`), or use `--format dot` to write the \
         DOT sources, which need nothing"
    )]
    DotMissing,
    /// `dot` could not be started.
    #[error("cannot run Graphviz's `dot`: {0}")]
    DotRun(#[source] io::Error),
    /// `dot` exited with an error.
    #[error("Graphviz's `dot` failed on flow `{flow}` ({status}): {stderr}")]
    DotFailed {
        /// The flow being drawn.
        flow: String,
        /// How `dot` exited.
        status: std::process::ExitStatus,
        /// What `dot` printed on stderr.
        stderr: String,
    },
    /// The output directory could not be created.
    #[error("cannot create the output directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A drawing could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Writes one file per flow into `out_dir` (created if missing), named `<flow>.dot` or
/// `<flow>.svg`, and returns their paths in the order of the nodes file's `flows:` list. With
/// `options.expand`, sub-flows are drawn inside the flows that start them, so only the flows
/// no other flow starts get a file (every flow, when each is some flow's sub-flow).
///
/// SVG goes through Graphviz's `dot` binary; when it is not on `PATH` nothing is written and the
/// error ([`PlotError::DotMissing`]) says how to install it. DOT needs nothing.
pub fn render(
    system: &System,
    out_dir: &Path,
    format: Format,
    options: Options,
) -> Result<Vec<PathBuf>, PlotError> {
    render_with(system, out_dir, format, options, OsStr::new("dot"))
}

/// The flows that get a picture of their own (see [`render`]).
/// Whether Graphviz's `dot` is installed (on the PATH and runs): what SVG needs.
pub fn dot_installed() -> bool {
    Command::new("dot")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn pictured(system: &System, options: Options) -> Vec<&Flow> {
    let all: Vec<&Flow> = system.flows.iter().collect();
    if !options.expand {
        return all;
    }
    let is_sub = |name: &str| {
        system.flows.iter().any(|f| {
            f.name != name
                && f.nodes
                    .iter()
                    .any(|n| n.kind == NodeKind::Flow && n.name == name)
        })
    };
    let top: Vec<&Flow> = all.iter().copied().filter(|f| !is_sub(&f.name)).collect();
    if top.is_empty() {
        all
    } else {
        top
    }
}

fn render_with(
    system: &System,
    out_dir: &Path,
    format: Format,
    options: Options,
    dot_program: &OsStr,
) -> Result<Vec<PathBuf>, PlotError> {
    if format == Format::Svg {
        // Fail before writing anything.
        match Command::new(dot_program)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(PlotError::DotMissing),
            Err(err) => return Err(PlotError::DotRun(err)),
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|source| PlotError::CreateDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for flow in pictured(system, options) {
        let dot = flow_to_dot_with(system, flow, options);
        let content = match format {
            Format::Dot => dot.into_bytes(),
            Format::Svg => run_dot(dot_program, &flow.name, &dot)?,
        };
        let path = out_dir.join(format!("{}.{}", flow.name, format.extension()));
        write_atomically(&path, &content)?;
        written.push(path);
    }
    Ok(written)
}

/// Pipes the DOT source `dot` through `<dot_program> -Tsvg` and returns the SVG.
fn run_dot(dot_program: &OsStr, flow: &str, dot: &str) -> Result<Vec<u8>, PlotError> {
    let mut child = Command::new(dot_program)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => PlotError::DotMissing,
            _ => PlotError::DotRun(err),
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Feed the input from another thread so a large output cannot block the pipe.
    // A write error means `dot` stopped reading: its exit status and stderr say why.
    let output = std::thread::scope(|scope| {
        scope.spawn(move || stdin.write_all(dot.as_bytes()));
        child.wait_with_output()
    })
    .map_err(PlotError::DotRun)?;
    if !output.status.success() {
        return Err(PlotError::DotFailed {
            flow: flow.to_string(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output.stdout)
}

/// Writes through a temporary file, so a reader never sees half a picture.
fn write_atomically(path: &Path, content: &[u8]) -> Result<(), PlotError> {
    let err = |source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

// Colours, in one place so the picture stays coherent.
const TASK_FILL: &str = "#d8f0e3";
const TASK_LINE: &str = "#2e7d57";
const FLOW_FILL: &str = "#cfe0f7";
const FLOW_LINE: &str = "#2b5c9e";
const NOWAIT_FILL: &str = "#eeeeee";
const NOWAIT_LINE: &str = "#777777";
const CONDITION_FILL: &str = "#fff4c8";
const CONDITION_LINE: &str = "#a08a3c";
const STORAGE_FILL: &str = "#e9d3c5";
const STORAGE_LINE: &str = "#894830";
const FAILURE: &str = "#cc1010";
const FAILURE_FILL: &str = "#fde4e4";

/// How [`flow_to_dot_with`] draws a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Draw sub-flows inline, as clusters holding their own nodes (recursively; a flow that
    /// contains itself is drawn once and its inner occurrence as a plain sub-flow box).
    pub expand: bool,
}

/// The Graphviz DOT graph of one flow of `system`, with a legend of the edge styles it uses.
/// The same IR always gives the same text.
pub fn flow_to_dot(system: &System, flow: &Flow) -> String {
    flow_to_dot_with(system, flow, Options::default())
}

/// [`flow_to_dot`] with options (sub-flows drawn inline).
pub fn flow_to_dot_with(system: &System, flow: &Flow, options: Options) -> String {
    let mut g = Dot::default();
    let _ = writeln!(g.out, "digraph {} {{", quote(&flow.name));
    g.line(&format!(
        "graph [label={}, labelloc=t, fontname=\"Helvetica\", fontsize=14, rankdir=TB, \
         nodesep=0.35, ranksep=0.45, tooltip={}{}];",
        quote(&format!("flow {}", flow.name)),
        quote(&format!("flow {} ({})", flow.name, flow.origin)),
        if options.expand {
            ", compound=true"
        } else {
            ""
        },
    ));
    g.line("node [fontname=\"Helvetica\", fontsize=11];");
    g.line("edge [fontname=\"Helvetica\", fontsize=9, color=\"#333333\", arrowsize=0.7];");
    let mut stack = vec![flow.name.clone()];
    draw_flow(&mut g, system, flow, options, &mut stack);
    legend(&mut g);
    g.out.push_str("}\n");
    g.out
}

/// The edge styles a picture uses, for its legend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Style {
    Normal,
    Conditional,
    Join,
    Foreach,
    Failure,
    Storage,
    SubflowEnd,
}

/// The cluster id of an expanded sub-flow drawn under `prefix`.
fn cluster_id(prefix: &str, name: &str) -> String {
    format!("cluster_{prefix}{name}")
}

/// Draws `flow`'s nodes and edges (ids under `g.prefix`); sub-flows become clusters when
/// `options.expand` holds and they are not already being drawn (`stack`).
fn draw_flow(g: &mut Dot, system: &System, flow: &Flow, options: Options, stack: &mut Vec<String>) {
    if flow.starting_edges().next().is_some() || !g.prefix.is_empty() {
        g.line("");
        g.node(
            START,
            &[
                ("shape", "circle".into()),
                ("style", "filled".into()),
                ("fillcolor", "black".into()),
                ("width", "0.18".into()),
                ("label", quote("")),
                ("tooltip", quote(&format!("start of flow {}", flow.name))),
            ],
        );
    }
    // Sub-flows drawn inline: edges to them go to their start, edges from them leave from
    // their end point, clipped at the cluster's border.
    let expanded: std::collections::BTreeSet<&str> = flow
        .nodes
        .iter()
        .filter(|n| {
            options.expand
                && n.kind == NodeKind::Flow
                && system.flow(&n.name).is_some()
                && !stack.contains(&n.name)
        })
        .map(|n| n.name.as_str())
        .collect();
    let prefix = g.prefix.clone();
    let into = |name: &str| -> (String, Vec<(&'static str, String)>) {
        if expanded.contains(name) {
            (
                format!("{name}/{START}"),
                vec![("lhead", quote(&cluster_id(&prefix, name)))],
            )
        } else {
            (name.to_string(), Vec::new())
        }
    };
    let out_of = |name: &str| -> (String, Vec<(&'static str, String)>) {
        if expanded.contains(name) {
            (
                format!("{name}/{END}"),
                vec![("ltail", quote(&cluster_id(&prefix, name)))],
            )
        } else {
            (name.to_string(), Vec::new())
        }
    };

    // Nodes, in order of first appearance.
    g.line("");
    for node in &flow.nodes {
        let nowait = flow.nowait.contains(&node.name);
        if expanded.contains(node.name.as_str()) {
            let Some(sub) = system.flow(&node.name) else {
                continue;
            };
            let mut title = format!("sub-flow {}", node.name);
            if nowait {
                title.push_str(" (nowait)");
            }
            let _ = writeln!(
                g.out,
                "{}subgraph {} {{",
                g.indent(),
                quote(&cluster_id(&g.prefix, &node.name))
            );
            let inner = format!("{}{}/", g.prefix, node.name);
            let outer = std::mem::replace(&mut g.prefix, inner);
            g.depth += 1;
            g.line(&format!(
                "graph [label={}, labeljust=l, fontsize=11, style={}, color={}, bgcolor=\"#f4f8fd\", \
                 tooltip={}];",
                quote(&title),
                quote(if nowait { "rounded,dashed" } else { "rounded" }),
                quote(if nowait { NOWAIT_LINE } else { FLOW_LINE }),
                quote(&format!("sub-flow {} ({})", sub.name, sub.origin)),
            ));
            stack.push(node.name.clone());
            draw_flow(g, system, sub, options, stack);
            stack.pop();
            g.depth -= 1;
            g.prefix = outer;
            let _ = writeln!(g.out, "{}}}", g.indent());
            continue;
        }
        let recursive = node.kind == NodeKind::Flow && options.expand && stack.contains(&node.name);
        let mut lines = vec![node.name.clone()];
        let (mut attrs, tooltip) = match node.kind {
            NodeKind::Task => {
                let tooltip = system.task(&node.name).map_or_else(
                    || format!("task {}", node.name),
                    |t| format!("task {} ({}.{})", t.name, t.class.module, t.class.name),
                );
                let attrs = vec![
                    ("shape", "box".to_string()),
                    (
                        "style",
                        quote(if nowait {
                            "rounded,filled,dashed"
                        } else {
                            "rounded,filled"
                        }),
                    ),
                    (
                        "fillcolor",
                        quote(if nowait { NOWAIT_FILL } else { TASK_FILL }),
                    ),
                    ("color", quote(if nowait { NOWAIT_LINE } else { TASK_LINE })),
                ];
                (attrs, tooltip)
            }
            NodeKind::Flow => {
                lines.push(
                    if recursive {
                        "(sub-flow, drawn above)"
                    } else {
                        "(sub-flow)"
                    }
                    .into(),
                );
                let attrs = vec![
                    ("shape", "box3d".to_string()),
                    (
                        "style",
                        quote(if nowait { "filled,dashed" } else { "filled" }),
                    ),
                    (
                        "fillcolor",
                        quote(if nowait { NOWAIT_FILL } else { FLOW_FILL }),
                    ),
                    ("color", quote(if nowait { NOWAIT_LINE } else { FLOW_LINE })),
                ];
                (attrs, format!("sub-flow {}", node.name))
            }
        };
        if nowait {
            lines.push("(nowait)".into());
        }
        attrs.push(("label", label(&lines, false)));
        attrs.push(("tooltip", quote(&tooltip)));
        g.node(&node.name, &attrs);
    }

    // Storages: a small cylinder beside each task that has one (one shared cylinder would pull
    // long lines across the picture).
    let mut stores = Vec::new();
    for node in &flow.nodes {
        let Some(task) = system
            .task(&node.name)
            .filter(|_| node.kind == NodeKind::Task)
        else {
            continue;
        };
        if let Some(storage) = &task.storage {
            stores.push((task, storage));
        }
    }
    if !stores.is_empty() {
        g.line("");
    }
    for (task, storage) in stores {
        let id = storage_id(storage, &task.name);
        let tooltip = system.storage(storage).map_or_else(
            || format!("storage {storage} of task {}", task.name),
            |s| {
                format!(
                    "storage {} ({}.{}) of task {}",
                    s.name, s.class.module, s.class.name, task.name
                )
            },
        );
        g.node(
            &id,
            &[
                ("shape", "cylinder".into()),
                ("style", "filled".into()),
                ("fillcolor", quote(STORAGE_FILL)),
                ("color", quote(STORAGE_LINE)),
                ("fontsize", "8".into()),
                ("height", "0.3".into()),
                ("margin", quote("0.05,0.02")),
                ("label", quote(storage)),
                ("tooltip", quote(&tooltip)),
            ],
        );
        let mut attrs = vec![
            ("style", "dotted".to_string()),
            ("color", quote(STORAGE_LINE)),
            (
                "arrowhead",
                if task.storage_readonly {
                    "none"
                } else {
                    "open"
                }
                .into(),
            ),
        ];
        if task.storage_readonly {
            attrs.push(("label", quote("read-only")));
            attrs.push(("fontcolor", quote(STORAGE_LINE)));
        }
        g.used.insert(Style::Storage);
        g.edge(&task.name, &id, &attrs);
        let (a, b) = (g.id(&task.name), g.id(&id));
        g.line(&format!("{{ rank=same; {}; {}; }}", quote(&a), quote(&b)));
    }

    // Edges.
    for edge in &flow.edges {
        g.line("");
        let sources: Vec<&str> = if edge.from.is_empty() {
            vec![START]
        } else {
            edge.from.iter().map(String::as_str).collect()
        };
        let mut lines = condition_lines(&edge.condition);
        if let Some(foreach) = &edge.foreach {
            lines.push(format!(
                "foreach {}.{}{}",
                foreach.function.module,
                foreach.function.name,
                if foreach.propagate_result {
                    " (propagate_result)"
                } else {
                    ""
                }
            ));
        }
        if let Some(selective) = &edge.selective {
            lines.push(format!("selective: {}", selective.tasks.join(", ")));
        }
        let out_attrs: Vec<(&str, String)> = if edge.foreach.is_some() {
            vec![
                ("style", "bold".into()),
                ("arrowhead", "normalnormal".into()),
            ]
        } else {
            Vec::new()
        };
        let tooltip = quote(&format!("edge {} ({})", edge.index, edge.origin));
        g.used.insert(if edge.foreach.is_some() {
            Style::Foreach
        } else if !lines.is_empty() {
            Style::Conditional
        } else if sources.len() > 1 {
            Style::Join
        } else {
            Style::Normal
        });
        if lines.is_empty() && sources.len() == 1 {
            let (from, tail) = out_of(sources[0]);
            for to in &edge.to {
                let (to, head) = into(to);
                let mut attrs = out_attrs.clone();
                attrs.push(("tooltip", tooltip.clone()));
                attrs.extend(tail.iter().cloned().chain(head));
                g.edge(&from, &to, &attrs);
            }
            continue;
        }
        let hub = format!(":edge{}", edge.index);
        if lines.is_empty() {
            g.node(
                &hub,
                &[
                    ("shape", "point".into()),
                    ("width", "0.1".into()),
                    ("tooltip", tooltip.clone()),
                ],
            );
        } else {
            g.node(
                &hub,
                &[
                    ("shape", "box".into()),
                    (
                        "style",
                        quote(if edge.foreach.is_some() {
                            "rounded,filled,bold"
                        } else {
                            "rounded,filled"
                        }),
                    ),
                    ("fillcolor", quote(CONDITION_FILL)),
                    ("color", quote(CONDITION_LINE)),
                    ("fontsize", "9".into()),
                    ("margin", quote("0.08,0.03")),
                    ("label", label(&lines, true)),
                    ("tooltip", tooltip.clone()),
                ],
            );
        }
        for from in &sources {
            let (from, mut attrs) = out_of(from);
            attrs.push(("arrowhead", "none".into()));
            g.edge(&from, &hub, &attrs);
        }
        for to in &edge.to {
            let (to, head) = into(to);
            let mut attrs = out_attrs.clone();
            attrs.extend(head);
            g.edge(&hub, &to, &attrs);
        }
    }

    // Failures.
    if !flow.failures.is_empty() {
        g.used.insert(Style::Failure);
    }
    for (set_index, set) in flow.failures.iter().enumerate() {
        for (alt_index, alt) in set.alternatives.iter().enumerate() {
            g.line("");
            let id = format!(":failure{set_index}.{alt_index}");
            let tooltip = quote(&format!(
                "failure of {} ({})",
                set.nodes.iter().cloned().collect::<Vec<_>>().join(", "),
                alt.origin
            ));
            let failure_edge = |extra: &[(&'static str, String)]| {
                let mut attrs = vec![
                    ("style", "dashed".to_string()),
                    ("color", quote(FAILURE)),
                    ("fontcolor", quote(FAILURE)),
                ];
                attrs.extend_from_slice(extra);
                attrs
            };
            let targets: Vec<String> = match &alt.fallback {
                FallbackTarget::Nodes(nodes) => nodes.clone(),
                FallbackTarget::Handled => {
                    let marker = format!(":handled{set_index}.{alt_index}");
                    g.node(
                        &marker,
                        &[
                            ("shape", "box".into()),
                            ("style", quote("rounded,filled,dashed")),
                            ("fillcolor", quote(FAILURE_FILL)),
                            ("color", quote(FAILURE)),
                            ("fontcolor", quote(FAILURE)),
                            ("fontsize", "9".into()),
                            ("label", quote("failure handled")),
                            ("tooltip", quote("fallback: true")),
                        ],
                    );
                    vec![marker]
                }
            };
            let mut lines = condition_lines(&alt.condition);
            if alt.propagate_failure {
                lines.push("propagate_failure".into());
            }
            if set.nodes.len() == 1 && lines.is_empty() {
                let (failed, tail) = out_of(set.nodes.first().expect("one node"));
                for to in &targets {
                    let (to, head) = into(to);
                    let mut extra = vec![("tooltip", tooltip.clone())];
                    extra.extend(tail.iter().cloned().chain(head));
                    g.edge(&failed, &to, &failure_edge(&extra));
                }
                continue;
            }
            if lines.is_empty() {
                g.node(
                    &id,
                    &[
                        ("shape", "point".into()),
                        ("width", "0.1".into()),
                        ("color", quote(FAILURE)),
                        ("tooltip", tooltip.clone()),
                    ],
                );
            } else {
                g.node(
                    &id,
                    &[
                        ("shape", "box".into()),
                        ("style", quote("rounded,filled,dashed")),
                        ("fillcolor", quote(FAILURE_FILL)),
                        ("color", quote(FAILURE)),
                        ("fontcolor", quote(FAILURE)),
                        ("fontsize", "9".into()),
                        ("margin", quote("0.08,0.03")),
                        ("label", label(&lines, true)),
                        ("tooltip", tooltip.clone()),
                    ],
                );
            }
            for failed in &set.nodes {
                let (failed, mut extra) = out_of(failed);
                extra.push(("arrowhead", "none".into()));
                g.edge(&failed, &id, &failure_edge(&extra));
            }
            for to in &targets {
                let (to, head) = into(to);
                g.edge(&id, &to, &failure_edge(&head));
            }
        }
    }

    // Inside a cluster: the end point that edges leaving the sub-flow start from, reached
    // from the nodes no edge leaves.
    if !g.prefix.is_empty() {
        g.line("");
        g.node(
            END,
            &[
                ("shape", "point".into()),
                ("width", "0.12".into()),
                ("color", quote(FLOW_LINE)),
                ("tooltip", quote(&format!("end of flow {}", flow.name))),
            ],
        );
        for node in &flow.nodes {
            if flow.edges.iter().any(|e| e.from.contains(&node.name)) {
                continue;
            }
            g.used.insert(Style::SubflowEnd);
            let (from, mut attrs) = out_of(&node.name);
            attrs.extend([
                ("style", "dotted".to_string()),
                ("color", quote(FLOW_LINE)),
                ("arrowhead", "none".into()),
            ]);
            g.edge(&from, END, &attrs);
        }
    }
}

/// The legend: one sample of each edge style the picture uses, in a box of its own.
fn legend(g: &mut Dot) {
    let used: Vec<Style> = g.used.iter().copied().collect();
    if used.is_empty() {
        return;
    }
    g.prefix = ":legend/".into();
    g.line("");
    g.line("subgraph \"cluster_:legend\" {");
    g.depth += 1;
    g.line(
        "graph [label=\"legend\", labeljust=l, fontsize=10, style=\"rounded,dashed\", \
         color=\"#bbbbbb\", tooltip=\"legend\"];",
    );
    g.line("node [shape=plaintext, fontsize=9, height=0.2, margin=0];");
    for style in used {
        let (name, text, attrs): (&str, &str, Vec<(&str, String)>) = match style {
            Style::Normal => ("normal", "then", Vec::new()),
            Style::Conditional => ("conditional", "if the condition holds", Vec::new()),
            Style::Join => ("join", "when all have finished", Vec::new()),
            Style::Foreach => (
                "foreach",
                "foreach: once per item",
                vec![
                    ("style", "bold".into()),
                    ("arrowhead", "normalnormal".into()),
                ],
            ),
            Style::Failure => (
                "failure",
                "on failure: fallback",
                vec![("style", "dashed".into()), ("color", quote(FAILURE))],
            ),
            Style::Storage => (
                "storage",
                "result stored",
                vec![
                    ("style", "dotted".into()),
                    ("color", quote(STORAGE_LINE)),
                    ("arrowhead", "open".into()),
                ],
            ),
            Style::SubflowEnd => (
                "subflow-end",
                "sub-flow ends",
                vec![
                    ("style", "dotted".into()),
                    ("color", quote(FLOW_LINE)),
                    ("arrowhead", "none".into()),
                ],
            ),
        };
        let from = format!("{name}:from");
        g.node(&from, &[("label", quote("")), ("width", "0.3".into())]);
        let mut source = from;
        match style {
            Style::Conditional => {
                let cond = format!("{name}:condition");
                g.node(
                    &cond,
                    &[
                        ("shape", "box".into()),
                        ("style", quote("rounded,filled")),
                        ("fillcolor", quote(CONDITION_FILL)),
                        ("color", quote(CONDITION_LINE)),
                        ("label", quote("condition")),
                        ("margin", quote("0.08,0.03")),
                    ],
                );
                g.edge(&source, &cond, &[("arrowhead", "none".into())]);
                source = cond;
            }
            Style::Join => {
                let point = format!("{name}:point");
                g.node(
                    &point,
                    &[("shape", "point".into()), ("width", "0.1".into())],
                );
                let other = format!("{name}:from2");
                g.node(&other, &[("label", quote("")), ("width", "0.3".into())]);
                g.edge(&source, &point, &[("arrowhead", "none".into())]);
                g.edge(&other, &point, &[("arrowhead", "none".into())]);
                source = point;
            }
            _ => {}
        }
        let to = format!("{name}:to");
        g.node(&to, &[("label", quote(text))]);
        g.edge(&source, &to, &attrs);
    }
    g.depth -= 1;
    g.line("}");
    g.prefix.clear();
}

const START: &str = ":start";
const END: &str = ":end";

fn storage_id(storage: &str, task: &str) -> String {
    format!("storage:{storage}:{task}")
}

/// A condition as label lines, close to how the YAML writes it (see [`condition_text`]): a
/// top-level `and`/`or` gets one line per operand.
fn condition_lines(condition: &Condition) -> Vec<String> {
    let split = |items: &[Condition], op: &str| {
        items
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    operand(c)
                } else {
                    format!("{op} {}", operand(c))
                }
            })
            .collect()
    };
    match condition {
        Condition::Always => Vec::new(),
        Condition::And(items) => split(items, "and"),
        Condition::Or(items) => split(items, "or"),
        other => vec![condition_text(other)],
    }
}

/// A condition in a short form of its YAML: `fieldEqual(Parse; key=kind, value=library)` for a
/// predicate on task `Parse`'s result, `argsFieldExist(key=retry)` for one on the flow's
/// arguments, `a and b`, `a or b`, `not a` (parenthesised when nested).
pub fn condition_text(condition: &Condition) -> String {
    let nested = operand;
    match condition {
        Condition::Always => "always".into(),
        Condition::Predicate(p) => {
            let args: Vec<String> = p
                .args
                .iter()
                .map(|(k, v)| format!("{k}={}", yaml_value(v)))
                .collect();
            match (&p.reads, &p.node) {
                (selinon_runtime::predicates::Reads::Result, Some(node)) if args.is_empty() => {
                    format!("{}({node})", p.name)
                }
                (selinon_runtime::predicates::Reads::Result, Some(node)) => {
                    format!("{}({node}; {})", p.name, args.join(", "))
                }
                _ => format!("{}({})", p.name, args.join(", ")),
            }
        }
        Condition::And(items) => items.iter().map(nested).collect::<Vec<_>>().join(" and "),
        Condition::Or(items) => items.iter().map(nested).collect::<Vec<_>>().join(" or "),
        Condition::Not(inner) => format!("not {}", nested(inner)),
    }
}

/// [`condition_text`] of an operand: parenthesised when it is an `and` or an `or`.
fn operand(c: &Condition) -> String {
    match c {
        Condition::And(_) | Condition::Or(_) => format!("({})", condition_text(c)),
        _ => condition_text(c),
    }
}

/// A value as a YAML flow scalar would show it: plain words bare, other strings quoted.
fn yaml_value(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_alphanumeric() || "_-./@".contains(c))
                && serde_json::from_str::<Value>(s).map_or(true, |v| v.is_string())
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
                );
            if plain {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(yaml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}: {}", yaml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// A quoted label of several lines: left-justified (long lines wrapped at spaces, continuations
/// indented) or centred.
fn label(lines: &[String], left: bool) -> String {
    let mut out = String::from("\"");
    for (i, line) in lines.iter().enumerate() {
        if left {
            for part in wrap(line, WRAP_WIDTH) {
                out.push_str(&escape(&part));
                out.push_str("\\l");
            }
        } else {
            if i > 0 {
                out.push_str("\\n");
            }
            out.push_str(&escape(line));
        }
    }
    out.push('"');
    out
}

/// Label lines longer than this (in characters) are wrapped.
const WRAP_WIDTH: usize = 64;

/// Splits `line` at spaces into pieces of at most `width` characters (a longer word stays
/// whole); pieces after the first are indented.
fn wrap(line: &str, width: usize) -> Vec<String> {
    const INDENT: &str = "    ";
    let mut out = Vec::new();
    let mut current = String::new();
    for word in line.split(' ') {
        let len = current.chars().count();
        let fresh = current.is_empty() || current == INDENT;
        if !fresh && len + 1 + word.chars().count() > width {
            out.push(std::mem::replace(&mut current, INDENT.to_string()));
        }
        if !(current.is_empty() || current == INDENT) {
            current.push(' ');
        }
        current.push_str(word);
    }
    out.push(current);
    out
}

/// A DOT double-quoted string holding `text` as it is.
fn quote(text: &str) -> String {
    format!("\"{}\"", escape(text))
}

/// Escapes text for a DOT double-quoted string: quotes and backslashes (so Graphviz's own escapes
/// such as `\N` or `\l` never trigger), and newlines as centred line breaks.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The text of a graph being written.
#[derive(Default)]
struct Dot {
    out: String,
    /// Put before every node id: the path of the expanded sub-flow being drawn (`billing/`).
    prefix: String,
    /// How deep in clusters the text is (for its indentation).
    depth: usize,
    /// The edge styles drawn so far, for the legend.
    used: std::collections::BTreeSet<Style>,
}

impl Dot {
    fn indent(&self) -> String {
        "  ".repeat(self.depth + 1)
    }

    fn id(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            self.out.push('\n');
        } else {
            let _ = writeln!(self.out, "{}{line}", self.indent());
        }
    }

    fn node(&mut self, id: &str, attrs: &[(&str, String)]) {
        let _ = writeln!(
            self.out,
            "{}{}{};",
            self.indent(),
            quote(&self.id(id)),
            attributes(attrs)
        );
    }

    fn edge(&mut self, from: &str, to: &str, attrs: &[(&str, String)]) {
        let _ = writeln!(
            self.out,
            "{}{} -> {}{};",
            self.indent(),
            quote(&self.id(from)),
            quote(&self.id(to)),
            attributes(attrs)
        );
    }
}

/// `[a=1, b="x"]`; the values are already DOT (numbers, keywords or quoted strings).
fn attributes(attrs: &[(&str, String)]) -> String {
    if attrs.is_empty() {
        return String::new();
    }
    let list: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" [{}]", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = r#"
tasks:
  - {name: Fetch, import: shop.tasks, storage: Redis}
  - {name: Parse, import: shop.tasks}
  - {name: Audit, import: shop.tasks, storage: Redis, storage_readonly: true}
  - {name: Notify, import: shop.tasks}
  - {name: Refund, import: shop.tasks}
storages:
  - {name: Redis, import: selinon.storages.redis, classname: Redis, configuration: {host: localhost}}
flows: [order, billing]
"#;

    const FLOWS: &str = r#"
flow-definitions:
  - name: order
    nowait: Notify
    edges:
      - from:
        to: Fetch
      - from: Fetch
        to: [Parse, Audit]
        condition: {name: fieldEqual, args: {key: status, value: 200}}
      - from: [Parse, Audit]
        to: billing
      - from: billing
        to: Notify
        foreach: {function: each_item, import: shop.foreach}
    failures:
      - nodes: Parse
        fallback: Refund
      - nodes: [Fetch, Parse]
        fallback: true
        condition: {name: argsFieldExist, args: {key: retry}}
  - name: billing
    edges:
      - from:
        to: Refund
        condition: {name: argsFieldGreater, args: {key: total, value: 0}}
"#;

    fn system(nodes: &str, flows: &str) -> System {
        let checked = crate::check_strs(("nodes.yml", nodes), &[("flows.yml", flows)]);
        assert!(
            !checked.diagnostics.has_errors(),
            "{:?}",
            checked.diagnostics
        );
        checked.system.expect("no errors")
    }

    fn order_dot() -> String {
        let system = system(NODES, FLOWS);
        flow_to_dot(&system, system.flow("order").unwrap())
    }

    /// The line declaring a node or an edge (`"A"` or `"A" -> "B"`).
    fn line<'a>(dot: &'a str, start: &str) -> &'a str {
        dot.lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{start} [")) || *l == format!("{start};"))
            .unwrap_or_else(|| panic!("no `{start}` in\n{dot}"))
    }

    #[test]
    fn tasks_are_boxes_and_subflows_are_marked_as_flows() {
        let dot = order_dot();
        assert!(dot.starts_with("digraph \"order\" {\n"));
        assert!(dot.ends_with("}\n"));
        let fetch = line(&dot, "\"Fetch\"");
        assert!(fetch.contains("shape=box,"), "{fetch}");
        assert!(fetch.contains("label=\"Fetch\""), "{fetch}");
        let billing = line(&dot, "\"billing\"");
        assert!(billing.contains("shape=box3d"), "{billing}");
        assert!(
            billing.contains("label=\"billing\\n(sub-flow)\""),
            "{billing}"
        );
    }

    #[test]
    fn starting_edges_leave_one_start_point() {
        let dot = order_dot();
        assert_eq!(dot.matches("\":start\" [").count(), 1);
        assert!(line(&dot, "\":start\"").contains("shape=circle"));
        line(&dot, "\":start\" -> \"Fetch\"");
    }

    #[test]
    fn a_conditional_edge_goes_through_one_labelled_node() {
        let dot = order_dot();
        let hub = line(&dot, "\":edge1\"");
        assert!(
            hub.contains("label=\"fieldEqual(Fetch; key=status, value=200)\\l\""),
            "{hub}"
        );
        assert_eq!(dot.matches("fieldEqual(").count(), 1, "labelled once");
        assert!(line(&dot, "\"Fetch\" -> \":edge1\"").contains("arrowhead=none"));
        line(&dot, "\":edge1\" -> \"Parse\"");
        line(&dot, "\":edge1\" -> \"Audit\"");
    }

    #[test]
    fn a_multi_source_edge_meets_in_one_point() {
        let dot = order_dot();
        assert!(line(&dot, "\":edge2\"").contains("shape=point"));
        line(&dot, "\"Parse\" -> \":edge2\"");
        line(&dot, "\"Audit\" -> \":edge2\"");
        line(&dot, "\":edge2\" -> \"billing\"");
        assert!(!dot.contains("\"Parse\" -> \"billing\""));
    }

    #[test]
    fn foreach_edges_name_their_function() {
        let dot = order_dot();
        let hub = line(&dot, "\":edge3\"");
        assert!(
            hub.contains("label=\"foreach shop.foreach.each_item\\l\""),
            "{hub}"
        );
        assert!(line(&dot, "\":edge3\" -> \"Notify\"").contains("style=bold"));
    }

    #[test]
    fn nowait_nodes_are_dashed_and_say_so() {
        let dot = order_dot();
        let notify = line(&dot, "\"Notify\"");
        assert!(
            notify.contains("style=\"rounded,filled,dashed\""),
            "{notify}"
        );
        assert!(notify.contains("label=\"Notify\\n(nowait)\""), "{notify}");
        assert!(!line(&dot, "\"Parse\"").contains("dashed"));
    }

    #[test]
    fn failures_are_dashed_red_edges_to_their_fallbacks() {
        let dot = order_dot();
        // One failed node, no condition: a direct edge.
        let direct = line(&dot, "\"Parse\" -> \"Refund\"");
        assert!(direct.contains("style=dashed"), "{direct}");
        assert!(direct.contains(&format!("color=\"{FAILURE}\"")), "{direct}");
        // Two failed nodes with a condition: through one labelled node, to the `handled` marker.
        // Failure sets are sorted: [Fetch, Parse] comes before [Parse].
        let hub = line(&dot, "\":failure0.0\"");
        assert!(
            hub.contains("label=\"argsFieldExist(key=retry)\\l\""),
            "{hub}"
        );
        for failed in ["Fetch", "Parse"] {
            let e = line(&dot, &format!("\"{failed}\" -> \":failure0.0\""));
            assert!(e.contains("style=dashed"), "{e}");
        }
        assert!(line(&dot, "\":handled0.0\"").contains("label=\"failure handled\""));
        assert!(line(&dot, "\":failure0.0\" -> \":handled0.0\"").contains("style=dashed"));
    }

    #[test]
    fn storages_sit_beside_their_tasks() {
        let dot = order_dot();
        assert!(line(&dot, "\"storage:Redis:Fetch\"").contains("shape=cylinder"));
        let store = line(&dot, "\"Fetch\" -> \"storage:Redis:Fetch\"");
        assert!(store.contains("style=dotted"), "{store}");
        let read_only = line(&dot, "\"Audit\" -> \"storage:Redis:Audit\"");
        assert!(read_only.contains("label=\"read-only\""), "{read_only}");
        assert!(!dot.contains("storage:Redis:Parse"));
    }

    #[test]
    fn output_is_deterministic() {
        let first: Vec<String> = {
            let s = system(NODES, FLOWS);
            s.flows.iter().map(|f| flow_to_dot(&s, f)).collect()
        };
        for _ in 0..5 {
            let s = system(NODES, FLOWS);
            let again: Vec<String> = s.flows.iter().map(|f| flow_to_dot(&s, f)).collect();
            assert_eq!(first, again);
        }
    }

    #[test]
    fn quotes_and_backslashes_in_labels_are_escaped() {
        let flows = r#"
flow-definitions:
  - name: order
    edges:
      - from:
        to: Fetch
        condition: {name: argsFieldEqual, args: {key: q, value: 'say "hi" \n back\'}}
  - name: billing
    edges:
      - from:
        to: Refund
"#;
        let system = system(NODES, flows);
        let dot = flow_to_dot(&system, system.flow("order").unwrap());
        // The label quotes the string as JSON (backslashes doubled); DOT doubles them again.
        let hub = line(&dot, "\":edge0\"");
        assert!(
            hub.contains(
                r#"label="argsFieldEqual(key=q, value=\"say \\\"hi\\\" \\\\n back\\\\\")\l""#
            ),
            "{hub}"
        );
        // Graphviz reads the label back as written.
        if dot_available() {
            let svg = run_dot(OsStr::new("dot"), "order", &dot).unwrap();
            let svg = String::from_utf8(svg).unwrap();
            assert!(
                svg.contains(r#"value=&quot;say \&quot;hi\&quot; \\n back\\&quot;)"#),
                "{svg}"
            );
        }
    }

    #[test]
    fn conditions_read_as_the_yaml_writes_them() {
        let flows = r#"
flow-definitions:
  - name: order
    edges:
      - from:
        to: Fetch
      - from: Fetch
        to: Parse
        condition:
          or:
            - and:
                - {name: fieldEqual, node: Fetch, args: {key: [a, b], value: 'two words'}}
                - not: {name: argsFieldExist, args: {key: retry}}
            - {name: fieldExist, node: Fetch, args: {key: '42'}}
  - name: billing
    edges:
      - from:
        to: Refund
"#;
        let system = system(NODES, flows);
        let edge = &system.flow("order").unwrap().edges[1];
        assert_eq!(
            condition_text(&edge.condition),
            "(fieldEqual(Fetch; key=[a, b], value=\"two words\") and not argsFieldExist(key=retry)) \
             or fieldExist(Fetch; key=\"42\")"
        );
        assert_eq!(
            condition_lines(&edge.condition),
            [
                "(fieldEqual(Fetch; key=[a, b], value=\"two words\") and not argsFieldExist(key=retry))",
                "or fieldExist(Fetch; key=\"42\")"
            ]
        );
        assert_eq!(yaml_value(&serde_json::json!("yes")), "\"yes\"");
        assert_eq!(yaml_value(&serde_json::json!(true)), "true");
        assert_eq!(yaml_value(&serde_json::json!({"a": 1})), "{a: 1}");
    }

    #[test]
    fn the_legend_shows_the_edge_styles_the_flow_uses() {
        let dot = order_dot();
        insta::assert_snapshot!("order_with_legend", dot);
        let legend = &dot[dot.find("subgraph \"cluster_:legend\"").expect("a legend")..];
        for text in [
            "then",
            "if the condition holds",
            "when all have finished",
            "foreach: once per item",
            "on failure: fallback",
            "result stored",
        ] {
            assert!(
                legend.contains(&format!("label=\"{text}\"")),
                "{text}: {legend}"
            );
        }
        // The flow `billing` has one conditional edge only.
        let system = system(NODES, FLOWS);
        let billing = flow_to_dot(&system, system.flow("billing").unwrap());
        assert!(
            billing.contains("label=\"if the condition holds\""),
            "{billing}"
        );
        assert!(!billing.contains("label=\"then\""), "{billing}");
        assert!(
            !billing.contains("label=\"on failure: fallback\""),
            "{billing}"
        );
    }

    #[test]
    fn expand_draws_subflows_inline_as_clusters() {
        let system = system(NODES, FLOWS);
        let order = system.flow("order").unwrap();
        let dot = flow_to_dot_with(&system, order, Options { expand: true });
        insta::assert_snapshot!("order_expanded", dot);
        assert!(dot.contains("compound=true"));
        assert!(dot.contains("subgraph \"cluster_billing\" {"), "{dot}");
        assert!(!dot.contains("(sub-flow)"), "{dot}");
        // The sub-flow's own nodes, under its name; edges go to its start and leave its end.
        line(&dot, "\"billing/:start\"");
        line(&dot, "\"billing/Refund\"");
        line(&dot, "\"billing/:start\" -> \"billing/:edge0\"");
        let into = line(&dot, "\":edge2\" -> \"billing/:start\"");
        assert!(into.contains("lhead=\"cluster_billing\""), "{into}");
        let out = line(&dot, "\"billing/:end\" -> \":edge3\"");
        assert!(out.contains("ltail=\"cluster_billing\""), "{out}");
        line(&dot, "\"billing/Refund\" -> \"billing/:end\"");
        // Only `order` gets a file: `billing` is drawn inside it.
        let dir = temp_dir("expand");
        let written = render(&system, &dir, Format::Dot, Options { expand: true }).unwrap();
        assert_eq!(written, [dir.join("order.dot")]);
        if dot_available() {
            let out = run_dot(OsStr::new("dot"), "order", &dot).unwrap();
            assert!(String::from_utf8_lossy(&out).contains("<svg"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn expand_stops_at_a_flow_that_starts_itself() {
        let nodes = "tasks:\n  - {name: A, import: app}\nflows: [outer, inner]\n";
        let flows = r#"
flow-definitions:
  - name: outer
    edges:
      - from:
        to: inner
  - name: inner
    edges:
      - from:
        to: A
      - from: A
        to: inner
        condition: {name: argsFieldExist, args: {key: more}}
"#;
        let system = system(nodes, flows);
        let dot = flow_to_dot_with(
            &system,
            system.flow("outer").unwrap(),
            Options { expand: true },
        );
        assert_eq!(
            dot.matches("subgraph \"cluster_").count(),
            2,
            "inner, legend: {dot}"
        );
        let inner = line(&dot, "\"inner/inner\"");
        assert!(inner.contains("(sub-flow, drawn above)"), "{inner}");
        line(&dot, "\"inner/:edge1\" -> \"inner/inner\"");
        // Every flow is some flow's sub-flow except `outer`: it alone gets a file.
        assert_eq!(
            pictured(&system, Options { expand: true })
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            ["outer"]
        );
    }

    #[test]
    fn escape_covers_quotes_backslashes_and_newlines() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("two\nlines\r"), r#""two\nlines""#);
        assert_eq!(label(&["x\"".into(), "y".into()], false), r#""x\"\ny""#);
        assert_eq!(label(&["x".into(), "y".into()], true), r#""x\ly\l""#);
    }

    #[test]
    fn long_condition_lines_are_wrapped() {
        assert_eq!(wrap("short", 10), ["short"]);
        assert_eq!(
            wrap("aaaa bbbb cccc dddd", 10),
            ["aaaa bbbb", "    cccc", "    dddd"]
        );
        assert_eq!(
            wrap("averyveryverylongword x", 10),
            ["averyveryverylongword", "    x"]
        );
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("selinon-plot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn render_writes_one_dot_file_per_flow() {
        let system = system(NODES, FLOWS);
        let dir = temp_dir("dot");
        let written = render(&system, &dir, Format::Dot, Options::default()).unwrap();
        assert_eq!(written, [dir.join("order.dot"), dir.join("billing.dot")]);
        for (path, flow) in written.iter().zip(&system.flows) {
            assert_eq!(
                std::fs::read_to_string(path).unwrap(),
                flow_to_dot(&system, flow)
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn svg_without_graphviz_says_how_to_install_it() {
        let system = system(NODES, FLOWS);
        let dir = temp_dir("missing-dot");
        let err = render_with(
            &system,
            &dir,
            Format::Svg,
            Options::default(),
            OsStr::new("selinon-test-no-such-dot-binary"),
        )
        .unwrap_err();
        assert!(matches!(err, PlotError::DotMissing), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("the `graphviz` package"), "{message}");
        assert!(message.contains("apt-get install graphviz"), "{message}");
        assert!(message.contains("--format dot"), "{message}");
        assert!(!dir.exists(), "nothing is written");
    }

    /// Whether Graphviz's `dot` can run. Without it the SVG test is skipped locally, but in CI
    /// (`CI` set) a missing `dot` fails the test.
    fn dot_available() -> bool {
        let found = super::dot_installed();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but Graphviz's `dot` is not installed: install the `graphviz` package"
            );
            eprintln!("skipped: Graphviz's `dot` is not installed (apt-get install graphviz)");
        }
        found
    }

    #[test]
    fn every_flow_renders_to_svg() {
        if !dot_available() {
            return;
        }
        let features = include_str!("../tests/configs/features.yml");
        let system = system(features, features);
        let dir = temp_dir("svg");
        let written = render(&system, &dir, Format::Svg, Options::default()).unwrap();
        assert_eq!(written.len(), system.flows.len());
        for (path, flow) in written.iter().zip(&system.flows) {
            assert_eq!(path, &dir.join(format!("{}.svg", flow.name)));
            let svg = std::fs::read_to_string(path).unwrap();
            assert!(svg.contains("<svg"), "{svg}");
            assert!(
                svg.contains(&format!("<title>{}</title>", flow.name)),
                "{svg}"
            );
        }
        // Graphviz reports problems it recovers from (unknown attributes, bad values) on stderr
        // and still succeeds: there must be none.
        for path in render(&system, &dir, Format::Dot, Options::default()).unwrap() {
            let out = Command::new("dot")
                .arg("-Tsvg")
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", path.display());
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                "",
                "{}",
                path.display()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The `selinon` command line: check, generate, plot, new, simulate, migrate, status. It parses
//! arguments and calls `selinon-codegen` (the compiler), [`selinon_cli::sim`] and
//! `selinon-runtime` (the AMQP client's flow status).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "selinon", version, about = "Selinon flows compiled to Rust")]
struct Cli {
    /// When to colour diagnostics: `auto` (only on a terminal, and not when `NO_COLOR` is set),
    /// `always` or `never`.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value_t = ColorChoice::Auto
    )]
    color: ColorChoice,
    /// The same as `--color never`.
    #[arg(long, global = true, hide = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load a configuration and run every system check.
    Check(CheckArgs),
    /// Generate the Rust code of a configuration (to commit it, or to check a committed copy).
    Generate(GenerateArgs),
    /// Scaffold a cargo project from an existing configuration.
    New(NewArgs),
    /// Draw every flow as a graph with a legend (Graphviz DOT, or SVG through `dot`).
    Plot(PlotArgs),
    /// Run a flow on the engine with mocked tasks: trace events as JSON lines, then a summary.
    Simulate(SimulateArgs),
    /// Write the migration from an old to a new version of a configuration (upstream's
    /// format: `<DIR>/<N>.json`, the next number).
    Migrate(MigrateArgs),
    /// What a flow of the distributed runtime is doing: its running, finished and failed
    /// nodes with their timings, from the Redis backend.
    Status(StatusArgs),
}

#[derive(Args)]
struct StatusArgs {
    /// The flow's id (as `submit` printed it).
    flow_id: String,
    /// The flow-state backend, as the workers' `--redis`: the database is the URL's path
    /// (`redis://127.0.0.1:6379/9`).
    #[arg(
        long,
        value_name = "URL",
        env = "REDIS_URL",
        default_value = selinon_runtime::amqp::DEFAULT_REDIS_URL
    )]
    redis: String,
    /// `human` for a terminal, `json` for tools.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Human)]
    format: Format,
}

#[derive(Args)]
struct MigrateArgs {
    /// The old version's nodes file.
    #[arg(long = "old-nodes", value_name = "FILE")]
    old_nodes: PathBuf,
    /// The old version's flow files or directories.
    #[arg(long = "old-flows", value_name = "PATH", required = true)]
    old_flows: Vec<PathBuf>,
    /// The new version's nodes file.
    #[arg(long = "new-nodes", value_name = "FILE")]
    new_nodes: PathBuf,
    /// The new version's flow files or directories.
    #[arg(long = "new-flows", value_name = "PATH", required = true)]
    new_flows: Vec<PathBuf>,
    /// The migration directory (default: `global.migration_dir` of the new version).
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// What running flows that the migration taints do: IGNORE, RETRY or FAIL.
    #[arg(
        long = "tainted-flow-strategy",
        value_name = "STRATEGY",
        default_value = "IGNORE"
    )]
    strategy: selinon_codegen::migrate::TaintedFlowStrategy,
    /// Leave out `_meta` (host, user, time), e.g. for reproducible files.
    #[arg(long)]
    no_meta: bool,
}

#[derive(Args)]
struct SimulateArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The flow to run.
    #[arg(long, value_name = "NAME")]
    flow: String,
    /// The flow's arguments, as JSON.
    #[arg(long, value_name = "JSON", default_value = "null")]
    args: String,
    /// What the mocked tasks return (YAML): `Task: {result: …}`, `{results: […]}`,
    /// `{fail: true}`, `{fail_times: N}`, `{sleep: SECONDS}`; `foreach: {function: [items]}`; tasks not named
    /// return `{}`. Results are validated against the tasks' `output_schema`, as a worker
    /// validates them. The summary (the last line) counts everything the run started,
    /// `nowait` work included, and says why each task that failed for good failed.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// A selective run: only what leads to these tasks runs (comma-separated names).
    #[arg(long, value_name = "TASKS", value_delimiter = ',')]
    selective: Vec<String>,
    /// With --selective: also look for the tasks inside sub-flows.
    #[arg(long, requires = "selective")]
    follow_subflows: bool,
    /// With --selective: also run what follows the named tasks.
    #[arg(long, requires = "selective")]
    run_subsequent: bool,
    /// Stop a flow that has not ended after this many seconds (an endless cycle).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    timeout: f64,
    /// Fail a flow instance that would start more than this many nodes (a join on a cycle
    /// multiplies its instances each round).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_nodes: usize,
}

#[derive(Args)]
struct PlotArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The directory to write one file per flow into.
    #[arg(
        short = 'o',
        long = "output-dir",
        value_name = "DIR",
        default_value = "."
    )]
    output_dir: PathBuf,
    /// `svg` (rendered by Graphviz's `dot`, package `graphviz`) or `dot` (Graphviz source,
    /// needs nothing). By default SVG when Graphviz is installed, else DOT (with a note).
    #[arg(long, value_name = "FORMAT")]
    format: Option<selinon_codegen::plot::Format>,
    /// Draw sub-flows inside the flows that start them (as boxed clusters) instead of one file
    /// per flow: only the flows no other flow starts get a file.
    #[arg(long)]
    expand: bool,
}

#[derive(Args)]
struct NewArgs {
    /// The directory to create.
    dir: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
    /// Depend on this local checkout of Selinon for Rust (path dependencies). Without it: the
    /// sources this `selinon` was built from when they are still there, else the project's git
    /// repository.
    #[arg(long, value_name = "DIR")]
    selinon_path: Option<PathBuf>,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Write the code to this file (default: standard output).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        conflicts_with = "check"
    )]
    output: Option<PathBuf>,
    /// Compare with this committed file instead of writing: exit 1 and print a diff when it is stale.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// Map a YAML module prefix to a Rust path, e.g. `myapp=crate::app` (repeatable; an empty
    /// prefix, `=crate::stubs`, prefixes every module).
    #[arg(long = "map-module", value_name = "FROM=TO")]
    map_module: Vec<String>,
}

/// The files of one configuration.
#[derive(Args)]
struct ConfigArgs {
    /// The nodes file (`tasks`, `flows`, `storages`, `global`).
    #[arg(
        short = 'n',
        long = "nodes",
        value_name = "FILE",
        env = "SELINON_NODES"
    )]
    nodes: PathBuf,
    /// A flow file, or a directory: every `*.yml` / `*.yaml` below it. Repeat for more.
    #[arg(short = 'f', long = "flows", value_name = "PATH", required = true)]
    flows: Vec<PathBuf>,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// `human`: diagnostics on stderr; `json`: one JSON document on stdout (diagnostics, and
    /// the queue listings asked for).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Human)]
    format: Format,
    /// Print `task:queue` for every task (as upstream's `inspect --list-task-queues`); with
    /// `--format json`, the document's `task_queues`.
    #[arg(long)]
    list_task_queues: bool,
    /// Print `flow:queue` for every flow's dispatcher (as `inspect --list-dispatcher-queues`);
    /// with `--format json`, the document's `dispatcher_queues`.
    #[arg(long)]
    list_dispatcher_queues: bool,
}

/// The output format of the commands that print reports (`check`, `status`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people.
    // The old spelling of `status --format`, kept as a hidden alias.
    #[value(alias = "text")]
    Human,
    /// For tools: one JSON document.
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour what goes to stderr.
    fn stderr(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            // https://no-color.org: any non-empty value.
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stderr().is_terminal()
            }
        }
    }
}

/// `--color`/`--no-color` as given on the command line, before clap parses it (so clap's own
/// usage errors follow it too); the last one wins.
fn color_from_args() -> Option<ColorChoice> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut choice = None;
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            break;
        }
        let value = match arg.strip_prefix("--color") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(v) => v.strip_prefix('='),
            None if arg == "--no-color" => Some("never"),
            None => None,
        };
        if let Some(v) = value.and_then(|v| ColorChoice::from_str(v, false).ok()) {
            choice = Some(v);
        }
    }
    choice
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let clap_color = match color_from_args() {
        Some(ColorChoice::Always) => clap::ColorChoice::Always,
        Some(ColorChoice::Never) => clap::ColorChoice::Never,
        _ if ColorChoice::Auto.stderr() => clap::ColorChoice::Auto,
        _ => clap::ColorChoice::Never,
    };
    let parsed = Cli::command()
        .color(clap_color)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let color = if cli.no_color {
        false
    } else {
        cli.color.stderr()
    };
    match cli.command {
        Command::Check(args) => check(args, color),
        Command::Generate(args) => generate(args, color),
        Command::New(args) => new_project(args, color),
        Command::Plot(args) => plot(args, color),
        Command::Migrate(args) => migrate(args, color),
        Command::Status(args) => status(args),
        Command::Simulate(args) => simulate(args, color),
    }
}

fn check(args: CheckArgs, color: bool) -> ExitCode {
    let checked = selinon_codegen::check_files(&args.config.nodes, &args.config.flows);
    let failed = checked.diagnostics.has_errors();
    // The listings only when the configuration is valid: a half-loaded one would list wrong queues.
    let system = checked.system.as_ref().filter(|_| !failed);
    let task_queues: Vec<(&str, &str)> = match system {
        Some(system) if args.list_task_queues => system
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), t.queue.raw.as_str()))
            .collect(),
        _ => Vec::new(),
    };
    let dispatcher_queues: Vec<(&str, &str)> = match system {
        Some(system) if args.list_dispatcher_queues => system
            .flows
            .iter()
            .map(|f| (f.name.as_str(), f.queue.raw.as_str()))
            .collect(),
        _ => Vec::new(),
    };
    match args.format {
        Format::Human => {
            let text = checked.diagnostics.render(&checked.sources, color);
            eprint!("{text}");
            for (name, queue) in task_queues.iter().chain(&dispatcher_queues) {
                println!("{name}:{queue}");
            }
            if let Some(system) = system {
                if !args.list_task_queues && !args.list_dispatcher_queues {
                    eprintln!(
                        "configuration OK: {} tasks, {} flows, {} storages",
                        system.tasks.len(),
                        system.flows.len(),
                        system.storages.len()
                    );
                }
            }
        }
        Format::Json => {
            let listing = |key: &str, items: &[(&str, &str)]| {
                items
                    .iter()
                    .map(|(name, queue)| serde_json::json!({key: name, "queue": queue}))
                    .collect::<Vec<_>>()
            };
            let mut doc = serde_json::json!({
                "ok": !failed,
                "diagnostics": checked.diagnostics.to_json(&checked.sources),
            });
            if args.list_task_queues {
                doc["task_queues"] = listing("task", &task_queues).into();
            }
            if args.list_dispatcher_queues {
                doc["dispatcher_queues"] = listing("flow", &dispatcher_queues).into();
            }
            println!("{doc}");
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn generate(args: GenerateArgs, color: bool) -> ExitCode {
    let mut builder = selinon_codegen::Builder::new().nodes(&args.config.nodes);
    for f in &args.config.flows {
        builder = builder.flows(f);
    }
    for m in &args.map_module {
        let Some((from, to)) = m.split_once('=') else {
            eprintln!("error: `--map-module {m}` must be FROM=TO, e.g. `myapp=crate::app`");
            return ExitCode::from(2);
        };
        builder = builder.map_module(from, to);
    }
    let generated = match builder.load() {
        Ok(g) => g,
        Err(selinon_codegen::GenerateError::Invalid {
            diagnostics,
            sources,
            ..
        }) => {
            eprint!("{}", diagnostics.render(&sources, color));
            return ExitCode::from(1);
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    if !generated.diagnostics.is_empty() {
        eprint!(
            "{}",
            generated.diagnostics.render(&generated.sources, color)
        );
    }
    let code = generated.code();
    if let Some(committed) = &args.check {
        let old = std::fs::read_to_string(committed).unwrap_or_default();
        if old == code {
            eprintln!("{} is up to date", committed.display());
            return ExitCode::SUCCESS;
        }
        let diff = similar::TextDiff::from_lines(&old, &code);
        print!(
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&committed.display().to_string(), "generated")
        );
        eprintln!(
            "error: {} is stale; regenerate it with `selinon generate ... -o {}`",
            committed.display(),
            committed.display()
        );
        return ExitCode::from(1);
    }
    match &args.output {
        Some(path) => match selinon_codegen::builder::write_if_changed(path, &code) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(1)
            }
        },
        None => {
            print!("{code}");
            ExitCode::SUCCESS
        }
    }
}

fn new_project(args: NewArgs, color: bool) -> ExitCode {
    let project = selinon_codegen::scaffold::NewProject {
        dir: args.dir.clone(),
        nodes: args.config.nodes,
        flows: args.config.flows,
        selinon_path: args.selinon_path,
    };
    match selinon_codegen::scaffold::new_project(&project) {
        Ok(files) => {
            for f in &files {
                eprintln!("  created {}", f.display());
            }
            eprintln!(
                "\nnext: cd {} && cargo run -- FLOW '{{\"json\": \"args\"}}'",
                args.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(selinon_codegen::scaffold::NewProjectError::Config(
            selinon_codegen::GenerateError::Invalid {
                diagnostics,
                sources,
                ..
            },
        )) => {
            eprint!("{}", diagnostics.render(&sources, color));
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn plot(args: PlotArgs, color: bool) -> ExitCode {
    let checked = selinon_codegen::check_files(&args.config.nodes, &args.config.flows);
    if !checked.diagnostics.is_empty() {
        eprint!("{}", checked.diagnostics.render(&checked.sources, color));
    }
    let Some(system) = &checked.system else {
        return ExitCode::from(1);
    };
    let options = selinon_codegen::plot::Options {
        expand: args.expand,
    };
    use selinon_codegen::plot::Format as PlotFormat;
    let format = args.format.unwrap_or_else(|| {
        if selinon_codegen::plot::dot_installed() {
            PlotFormat::Svg
        } else {
            eprintln!(
                "note: Graphviz's `dot` is not installed, so the pictures are written as DOT \
                 sources; install the `graphviz` package for SVG (or open the .dot files in \
                 any Graphviz viewer)"
            );
            PlotFormat::Dot
        }
    });
    match selinon_codegen::plot::render(system, &args.output_dir, format, options) {
        Ok(files) => {
            for f in files {
                eprintln!("  wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn status(args: StatusArgs) -> ExitCode {
    use selinon_runtime::amqp::{flow_status, ClientError, RedisBackend};
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let report = rt.block_on(async {
        let backend = RedisBackend::connect(&args.redis).await?;
        flow_status(&backend, &args.flow_id).await
    });
    match report {
        Ok(report) if args.format == Format::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            let text = report.to_string();
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(ClientError::NoRecord(id)) => {
            eprintln!("error: no record of flow {id} in {} (never submitted there, or ended more than a day ago)", args.redis);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn migrate(args: MigrateArgs, color: bool) -> ExitCode {
    use selinon_codegen::migrate::{self, MigrateError};

    let old = selinon_codegen::check_files(&args.old_nodes, &args.old_flows);
    let new = selinon_codegen::check_files(&args.new_nodes, &args.new_flows);
    let (Some(old_system), Some(new_system)) = (&old.system, &new.system) else {
        for checked in [&old, &new] {
            if checked.system.is_none() {
                eprint!("{}", checked.diagnostics.render(&checked.sources, color));
            }
        }
        return ExitCode::from(1);
    };
    let dir = match (&args.output_dir, &new_system.migration_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => match migrate::resolve_dir(&args.new_nodes, dir) {
            Ok(dir) => dir,
            Err(var) => {
                eprintln!(
                    "error: `global.migration_dir` ({}) uses `{{{var}}}`, which is not set; set \
                     it or pass -o DIR",
                    dir.raw
                );
                return ExitCode::from(2);
            }
        },
        (None, None) => {
            eprintln!(
                "error: no migration directory: pass -o DIR, or set `global.migration_dir` in {}",
                args.new_nodes.display()
            );
            return ExitCode::from(2);
        }
    };
    let mut file = match migrate::compute(old_system, new_system, args.strategy) {
        Ok(file) => file,
        Err(MigrateError::NotNeeded) => {
            eprintln!("{}", MigrateError::NotNeeded);
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if !args.no_meta {
        file.meta = Some(serde_json::json!({
            "selinon_version": concat!("selinon-rs ", env!("CARGO_PKG_VERSION")),
            "host": std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default(),
            "datetime": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "user": std::env::var("USER").unwrap_or_default(),
        }));
    }
    match migrate::write_next(&dir, &file) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn simulate(args: SimulateArgs, color: bool) -> ExitCode {
    use std::sync::{Arc, Mutex};

    use selinon_cli::sim::{self, RunCounts, Scenario};
    use selinon_runtime::trace::{JsonLinesSink, TraceEvent, TraceRecorder};

    let mut checked = selinon_codegen::check_files(&args.config.nodes, &args.config.flows);
    let scenario = match &args.scenario {
        None => Scenario::default(),
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(err) => {
                    eprintln!("error: cannot read the scenario {}: {err}", path.display());
                    return ExitCode::from(1);
                }
            };
            let shown = path.to_string_lossy();
            match Scenario::parse(
                &shown,
                &text,
                &mut checked.sources,
                &mut checked.diagnostics,
            ) {
                Some(s) => s,
                None => {
                    eprint!("{}", checked.diagnostics.render(&checked.sources, color));
                    return ExitCode::from(1);
                }
            }
        }
    };
    let Some(system) = &checked.system else {
        eprint!("{}", checked.diagnostics.render(&checked.sources, color));
        return ExitCode::from(1);
    };
    if system.flow(&args.flow).is_none() {
        let hint = selinon_codegen::diagnostics::did_you_mean(
            &args.flow,
            system.flows.iter().map(|f| f.name.as_str()),
        );
        eprintln!("error: unknown flow `{}` {hint}", args.flow);
        return ExitCode::from(2);
    }
    let node_args: serde_json::Value = match serde_json::from_str(&args.args) {
        Ok(v) => v,
        Err(err) => {
            eprintln!("error: --args is not JSON: {err}");
            return ExitCode::from(2);
        }
    };
    let counts = Arc::new(Mutex::new(RunCounts::default()));
    let spec = sim::system_spec(system, Arc::new(scenario), counts);
    let recorder = TraceRecorder::new();
    let Some(timeout) = std::time::Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
    else {
        eprintln!("error: --timeout must be a positive number of seconds");
        return ExitCode::from(2);
    };
    let runtime = selinon_runtime::Runtime::builder(spec)
        .trace_sink(JsonLinesSink::new(std::io::stdout()))
        .trace_sink(recorder.clone())
        .flow_timeout(timeout)
        .max_nodes_per_flow(args.max_nodes)
        .build();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    // Flows are spawned on the runtime.
    let guard = rt.enter();
    let handle = if args.selective.is_empty() {
        runtime.run_flow_by_name(&args.flow, node_args)
    } else {
        let tasks: Vec<&str> = args.selective.iter().map(String::as_str).collect();
        let subsequent = if args.run_subsequent {
            selinon_runtime::engine::RunSubsequent::All
        } else {
            selinon_runtime::engine::RunSubsequent::No
        };
        runtime.run_selective_by_name(
            &args.flow,
            &tasks,
            node_args,
            args.follow_subflows,
            subsequent,
        )
    };
    drop(guard);
    let deadline = tokio::time::Instant::now() + timeout;
    let outcome = match rt.block_on(handle) {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    // Work under `nowait` nodes goes on after the flow's end: the summary counts it too, so
    // it waits for everything the run started (within the same time limit).
    let idle = rt.block_on(async {
        let idle = tokio::time::timeout_at(deadline, runtime.wait_idle()).await;
        if idle.is_err() {
            runtime.shutdown().await;
        }
        idle
    });
    if idle.is_err() {
        eprintln!(
            "error: flow `{}` ended, but work its `nowait` nodes started did not end within \
             {:?} (--timeout)",
            args.flow, timeout
        );
        return ExitCode::from(1);
    }
    let mut runs = std::collections::BTreeMap::<String, u64>::new();
    for d in recorder.of(TraceEvent::TaskStart) {
        if let Some(task) = d["task_name"].as_str() {
            *runs.entry(task.to_string()).or_default() += 1;
        }
    }
    let mut flows = std::collections::BTreeMap::<String, u64>::new();
    for d in recorder.of(TraceEvent::FlowStart) {
        if d["dispatcher_id"].as_str() == Some(outcome.flow_id.as_str()) {
            continue;
        }
        if let Some(flow) = d["flow_name"].as_str() {
            *flows.entry(flow.to_string()).or_default() += 1;
        }
    }
    for failure in recorder.of(TraceEvent::DispatcherFailure) {
        if let Some(what) = failure["what"].as_str() {
            eprintln!("error: {what}");
        }
    }
    // Why each task that failed for good failed (after its retries; fallbacks may have
    // handled it), e.g. a mocked result that its `output_schema` rejects.
    let mut failures = std::collections::BTreeMap::<String, Vec<String>>::new();
    for d in recorder.of(TraceEvent::TaskFailure) {
        if let (Some(task), Some(what)) = (d["task_name"].as_str(), d["what"].as_str()) {
            failures
                .entry(task.to_string())
                .or_default()
                .push(what.to_string());
        }
    }
    let status = if outcome.is_finished() {
        "finished"
    } else {
        "failed"
    };
    println!(
        "{}",
        serde_json::json!({"status": status, "runs": runs, "flows": flows, "failures": failures})
    );
    if outcome.is_finished() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

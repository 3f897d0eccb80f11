//! The `selinon` command line: check configurations (and, as the compiler grows, generate code,
//! plot flows, scaffold projects).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "selinon", version, about = "Selinon flows compiled to Rust")]
struct Cli {
    /// Never colour the output.
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load a configuration and run every system check.
    Check(CheckArgs),
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
    /// How to print diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Print `task:queue` for every task (as upstream's `inspect --list-task-queues`).
    #[arg(long)]
    list_task_queues: bool,
    /// Print `flow:queue` for every flow's dispatcher (as `inspect --list-dispatcher-queues`).
    #[arg(long)]
    list_dispatcher_queues: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
    let color = !cli.no_color && std::io::stderr().is_terminal();
    match cli.command {
        Command::Check(args) => check(args, color),
    }
}

fn check(args: CheckArgs, color: bool) -> ExitCode {
    let checked = selinon_codegen::check_files(&args.config.nodes, &args.config.flows);
    match args.format {
        Format::Human => {
            let text = checked.diagnostics.render(&checked.sources, color);
            eprint!("{text}");
        }
        Format::Json => {
            let json = checked.diagnostics.to_json(&checked.sources);
            println!("{json}");
        }
    }
    if checked.diagnostics.has_errors() {
        return ExitCode::from(1);
    }
    if let Some(system) = &checked.system {
        if args.list_task_queues {
            for task in &system.tasks {
                println!("{}:{}", task.name, task.queue.raw);
            }
        }
        if args.list_dispatcher_queues {
            for flow in &system.flows {
                println!("{}:{}", flow.name, flow.queue.raw);
            }
        }
        if args.format == Format::Human && !args.list_task_queues && !args.list_dispatcher_queues {
            eprintln!(
                "configuration OK: {} tasks, {} flows, {} storages",
                system.tasks.len(),
                system.flows.len(),
                system.storages.len()
            );
        }
    }
    ExitCode::SUCCESS
}

//! The `metric-loss` command line: `info`, `eval`, `check` and `bench` over the losses, and
//! `stats`, `knn`, `retrieval` and `score` over an embedding.
//!
//! Exit codes: 0 success; 1 a failure while running (no adapter, device lost, timeout, a
//! failed write); 2 bad input or usage, named on one line of stderr and found before any
//! device is opened. stdout closed by its reader (`metric-loss info | head -1`) ends the
//! command quietly.

/// Writes one line to stdout with [`out::line`], returning from the command on failure.
macro_rules! out {
    ($($t:tt)*) => {
        $crate::out::line(format_args!($($t)*))?
    };
}

mod bench;
mod check;
mod eval;
pub mod fuzz;
mod info;
mod io;
mod measure;
pub mod npy;
mod out;
mod plot;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Exit code for bad input or usage: the problem is named on one line of stderr.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "metric-loss",
    version,
    about = "GPU metric-learning losses with gradients",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the adapter, its graphics API, driver, limits and features.
    Info,
    /// Evaluate a loss (and its gradients) on .npy inputs; prints one JSON object.
    Eval(Box<eval::EvalArgs>),
    /// Time forward + backward calls on generated inputs.
    Bench(bench::BenchArgs),
    /// Cross-check the GPU against the CPU reference over every loss, mode and option.
    Check(check::CheckArgs),
    /// Pair-distance histograms of a labelled set: quantiles, overlap, active shares and
    /// suggested margins; one JSON line (and a PNG with --png).
    Stats(Box<measure::StatsArgs>),
    /// Exact k nearest neighbours of each query among the references (.npy outputs).
    Knn(measure::KnnArgs),
    /// Retrieval metrics (precision@1, R-precision, MAP@R, recall@k) of a labelled set.
    Retrieval(measure::RetrievalArgs),
    /// Anomaly scores (distance to the k-th nearest normal row) and their ROC AUC.
    Score(measure::ScoreArgs),
}

/// A failure and the exit code it maps to.
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad input or usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A failure while running (exit 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<metric_loss::Error> for Failure {
    fn from(e: metric_loss::Error) -> Self {
        use metric_loss::Error as E;
        match e {
            E::ShapeMismatch { .. }
            | E::EmptyInput { .. }
            | E::ZeroDim { .. }
            | E::OutOfDomain { .. }
            | E::TooLargeForLoss { .. }
            | E::InvalidOption { .. }
            | E::OptionConflict { .. }
            | E::LimitExceeded { .. }
            | E::ClassOutOfRange { .. } => Failure::usage(e.to_string()),
            other => Failure::runtime(other.to_string()),
        }
    }
}

/// Parses the arguments and runs the command; the process's exit code.
pub fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return parse_failure(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return parse_failure(e),
    };
    let sub = matches.subcommand().map(|(_, m)| m);
    let result = match cli.command {
        Command::Info => info::run(),
        Command::Eval(args) => match sub {
            Some(m) => eval::run(*args, m),
            None => Err(Failure::usage("eval: no arguments")),
        },
        Command::Bench(args) => bench::run(args),
        Command::Check(args) => check::run(args),
        Command::Stats(args) => measure::stats(*args),
        Command::Knn(args) => measure::knn(args),
        Command::Retrieval(args) => measure::retrieval(args),
        Command::Score(args) => measure::score(args),
    };
    let result = result.and_then(|code| out::flush().map(|()| code));
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message.replace('\n', " "));
            ExitCode::from(f.code)
        }
    }
}

/// What clap refused: help and version (asked for) exit 0 on stdout; anything else,
/// including no subcommand at all, is a usage error (exit 2): the help on stderr, or
/// clap's message on one line.
fn parse_failure(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", e.render());
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            // clap's message, up to its first blank line (before usage and tips), on one line.
            let text = e.to_string();
            let first = text.split("\n\n").next().unwrap_or("invalid arguments");
            let line = first.split_whitespace().collect::<Vec<_>>().join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            eprintln!("error: {line} (see --help)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `--precision f32|f16`.
pub(crate) fn parse_precision(s: &str) -> Result<metric_loss::Precision, String> {
    match s {
        "f32" => Ok(metric_loss::Precision::F32),
        "f16" => Ok(metric_loss::Precision::F16),
        _ => Err(format!("'{s}' is not a precision (f32 or f16)")),
    }
}

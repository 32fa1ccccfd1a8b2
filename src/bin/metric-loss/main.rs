//! `metric-loss`: the command-line face of the library (info, eval, check, bench).

/// `println!` that ends the process quietly when stdout is closed (`metric-loss info | head`)
/// instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod bench;
mod eval;
mod eval_softmax;
mod eval_triplet;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use metric_loss::Gpu;

/// Exit code for bad input or usage: the problem is named on one line of stderr.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "metric-loss",
    version,
    about = "GPU metric-learning losses with gradients"
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
    Check {
        /// Rows per case.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Embedding dimension.
        #[arg(long, default_value_t = 16)]
        dim: usize,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// A failure and the exit code it maps to.
pub struct Failure {
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
            | E::LimitExceeded { .. } => Failure::usage(e.to_string()),
            other => Failure::runtime(other.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's message, up to its first blank line (before usage and tips), on one line.
            let text = e.to_string();
            let first = text.split("\n\n").next().unwrap_or("invalid arguments");
            let line = first.split_whitespace().collect::<Vec<_>>().join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            eprintln!("error: {line} (see --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = match cli.command {
        Command::Info => info(),
        Command::Eval(args) => eval::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Check { batch, dim, seed } => check(batch, dim, seed),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message.replace('\n', " "));
            ExitCode::from(f.code)
        }
    }
}

fn info() -> Result<ExitCode, Failure> {
    let gpu = Gpu::new()?;
    let a = gpu.adapter();
    let l = gpu.limits();
    out!("adapter:      {}", a.name);
    out!("graphics API: {}", a.backend);
    out!("driver:       {}", a.driver);
    out!("device type:  {}", a.device_type);
    out!("limits:");
    out!(
        "  max_buffer_size                      {}",
        l.max_buffer_size
    );
    out!(
        "  max_storage_buffer_binding_size      {}",
        l.max_storage_buffer_binding_size
    );
    out!(
        "  max_storage_buffers_per_shader_stage {}",
        l.max_storage_buffers_per_shader_stage
    );
    out!(
        "  max_compute_workgroups_per_dimension {}",
        l.max_compute_workgroups_per_dimension
    );
    out!(
        "  max_compute_invocations_per_workgroup {}",
        l.max_compute_invocations_per_workgroup
    );
    out!(
        "  max_compute_workgroup_storage_size   {}",
        l.max_compute_workgroup_storage_size
    );
    let f = gpu.features();
    let names: Vec<&str> = [
        (wgpu::Features::SUBGROUP, "SUBGROUP"),
        (wgpu::Features::SHADER_F16, "SHADER_F16"),
        (wgpu::Features::SHADER_F64, "SHADER_F64"),
        (wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
        (
            wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
            "TIMESTAMP_QUERY_INSIDE_PASSES",
        ),
        (wgpu::Features::PIPELINE_CACHE, "PIPELINE_CACHE"),
    ]
    .into_iter()
    .filter(|(flag, _)| f.contains(*flag))
    .map(|(_, n)| n)
    .collect();
    out!(
        "features:     {}",
        if names.is_empty() {
            "(none of note)".into()
        } else {
            names.join(" ")
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn check(batch: usize, dim: usize, seed: u64) -> Result<ExitCode, Failure> {
    if batch == 0 || dim == 0 {
        return Err(Failure::usage("--batch and --dim must be at least 1"));
    }
    let gpu = Gpu::new()?;
    out!(
        "adapter: {} ({}), batch {batch}, dim {dim}, seed {seed}",
        gpu.adapter().name,
        gpu.adapter().backend
    );
    out!(
        "{:<66} {:>11} {:>11} {:>6}",
        "case",
        "max abs err",
        "max rel err",
        ""
    );
    let mut reports = metric_loss::check::run_grid(&gpu, batch, dim, seed)?;
    reports.extend(metric_loss::check::triplet::run_grid(
        &gpu, batch, dim, seed,
    )?);
    reports.extend(metric_loss::check::softmax::run_grid(
        &gpu, batch, dim, seed,
    )?);
    let mut failed = 0;
    for r in &reports {
        let verdict = if r.pass() { "PASS" } else { "FAIL" };
        failed += usize::from(!r.pass());
        out!(
            "{:<66} {:>11.3e} {:>11.3e} {verdict}",
            r.name,
            r.max_abs(),
            r.max_rel()
        );
        if !r.pass() {
            if !r.counts_equal {
                out!("    counts differ");
            }
            for (what, c) in
                std::iter::once(("loss", &r.loss)).chain(r.grads.iter().map(|g| ("grad", g)))
            {
                if let (false, Some((i, g, re, b))) = (c.pass, c.worst) {
                    out!("    {what}[{i}]: gpu {g:e} reference {re:e} bound {b:e}");
                }
            }
        }
    }
    out!("{} passed, {} failed", reports.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

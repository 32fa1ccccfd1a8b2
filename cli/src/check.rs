//! `metric-loss check`: every loss, mode and option on the GPU against the f64 reference,
//! one line per case; exit 1 on any failure.

use std::process::ExitCode;

use clap::Args;
use metric_loss::testing::Grid;
use metric_loss::{Gpu, Precision};

use crate::Failure;

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Rows per case.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 16)]
    dim: usize,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The inputs' format: f32, or f16 (rounded from the same draws; needs SHADER_F16).
    #[arg(long, default_value = "f32", value_parser = crate::parse_precision)]
    precision: Precision,
}

pub(crate) fn run(args: CheckArgs) -> Result<ExitCode, Failure> {
    let CheckArgs {
        batch,
        dim,
        seed,
        precision,
    } = args;
    if batch == 0 || dim == 0 {
        return Err(Failure::usage("--batch and --dim must be at least 1"));
    }
    // The grids hold three inputs at once, and the references an f64 copy of each.
    crate::io::host_sizes(batch, dim, 9)?;
    let gpu = Gpu::new()?;
    out!(
        "adapter: {} ({}), batch {batch}, dim {dim}, seed {seed}, {} inputs",
        gpu.adapter().name,
        gpu.adapter().backend,
        precision.name()
    );
    out!(
        "{:<66} {:>11} {:>11} {:>6}",
        "case",
        "max abs err",
        "max rel err",
        ""
    );
    let reports =
        metric_loss::testing::all_grids(&gpu, &Grid::new(batch, dim, seed).precision(precision))?;
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
        for line in r.failures() {
            out!("    {line}");
        }
    }
    out!("{} passed, {} failed", reports.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

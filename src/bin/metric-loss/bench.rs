//! `metric-loss bench`: time forward + backward calls through the host API.
//!
//! Inputs follow the project's benchmark rules: Gaussian rows, L2-normalised, `normalize`
//! off, margin 1.5 (most dissimilar pairs sit inside it), labels uniform over B/8 classes
//! (pairs: y uniform over 0/1). Every pair's term is evaluated whatever the data.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use metric_loss::check::Rng;
use metric_loss::{Contrastive, ContrastiveOutput, Embeddings, Gpu, Grads, Labels};

use crate::eval::{DeviceArg, LossName};
use crate::Failure;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Batch,
    Pairs,
}

#[derive(Args)]
pub struct BenchArgs {
    /// The loss.
    #[arg(long, value_enum)]
    loss: LossName,
    /// Rows (B in batch mode, N pairs in pair mode).
    #[arg(long, default_value_t = 0, required_unless_present = "embeddings")]
    batch: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 0, required_unless_present = "embeddings")]
    dim: usize,
    /// All pairs of a labelled batch, or explicit pairs.
    #[arg(long, value_enum, default_value = "batch")]
    mode: ModeArg,
    /// Timed calls.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Untimed calls first (pipeline compilation, allocation).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Where the loss runs.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceArg,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Seed of the generated inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Batch mode: time these embeddings (B×D .npy) instead of generated ones.
    #[arg(long, requires = "labels")]
    embeddings: Option<std::path::PathBuf>,
    /// Batch mode: their integer labels (B .npy).
    #[arg(long, requires = "embeddings")]
    labels: Option<std::path::PathBuf>,
    /// Margin m.
    #[arg(long, default_value_t = 1.5)]
    margin: f32,
}

pub fn run(args: BenchArgs) -> Result<ExitCode, Failure> {
    let LossName::Contrastive = args.loss;
    let given = match (&args.embeddings, &args.labels) {
        (Some(x), Some(l)) => {
            if args.mode == ModeArg::Pairs {
                return Err(Failure::usage(
                    "--embeddings/--labels apply to --mode batch",
                ));
            }
            Some(crate::eval::read_batch(x, l)?)
        }
        _ => None,
    };
    let (b, d) = match &given {
        Some((_, rows, dim, _)) => (*rows, *dim),
        None => (args.batch, args.dim),
    };
    if b == 0 || d == 0 || args.repeat == 0 {
        return Err(Failure::usage(
            "--batch, --dim and --repeat must be at least 1",
        ));
    }
    if !(args.margin.is_finite() && args.margin >= 0.0) {
        return Err(Failure::usage("--margin must be finite and >= 0"));
    }
    let mut rng = Rng::new(args.seed);
    let x = match &given {
        Some((data, ..)) => data.clone(),
        None => rng.unit_rows(b, d),
    };
    let other = if args.mode == ModeArg::Pairs {
        rng.unit_rows(b, d)
    } else {
        Vec::new()
    };
    let classes = (b / 8).max(1) as u64;
    let labels: Vec<i64> = match &given {
        Some((.., ids)) => ids.clone(),
        None => (0..b).map(|_| rng.below(classes) as i64).collect(),
    };
    let similar: Vec<bool> = (0..b).map(|_| rng.below(2) == 0).collect();
    let labels = Labels::new(&labels);
    let ex = Embeddings::new("embeddings", &x, b, d)?;
    let eb = if args.mode == ModeArg::Pairs {
        Some(Embeddings::new("b", &other, b, d)?)
    } else {
        None
    };
    let cfg = Contrastive::default().margin(args.margin);
    let mut gpu = match args.device {
        DeviceArg::Gpu => Some(Gpu::new()?),
        DeviceArg::Cpu => None,
    };
    if let Some(g) = gpu.as_mut() {
        g.set_profiling(true);
    }
    let call = |gpu: &Option<Gpu>| -> Result<ContrastiveOutput, Failure> {
        Ok(match (gpu, &eb) {
            (Some(g), Some(eb)) => cfg.pairs(g, &ex, eb, &similar, Grads::Compute)?,
            (Some(g), None) => cfg.batch(g, &ex, &labels, Grads::Compute)?,
            (None, Some(eb)) => cfg.pairs_cpu(&ex, eb, &similar, Grads::Compute)?,
            (None, None) => cfg.batch_cpu(&ex, &labels, Grads::Compute)?,
        })
    };
    let bar = indicatif::ProgressBar::new((args.repeat + args.warmup) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} calls, {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("B={b} D={d}"));
    for _ in 0..args.warmup {
        call(&gpu)?;
        bar.inc(1);
    }
    let mut times = Vec::new();
    let mut kernel = Vec::new();
    let mut last = None;
    for _ in 0..args.repeat {
        let t = Instant::now();
        last = Some(call(&gpu)?);
        times.push(t.elapsed().as_secs_f64());
        if let Some(k) = gpu.as_ref().and_then(|g| g.last_kernel_seconds()) {
            kernel.push(k);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let kernel_s = (!kernel.is_empty()).then(|| median(&mut kernel));
    let median = median(&mut times);
    let (bf, df) = (b as f64, d as f64);
    let pairs = match args.mode {
        ModeArg::Batch => bf * (bf - 1.0) / 2.0,
        ModeArg::Pairs => bf,
    };
    let model_flops = match args.mode {
        ModeArg::Batch => 6.0 * bf * bf * df,
        ModeArg::Pairs => 6.0 * bf * df,
    };
    // Pair mode moves A and B in, both gradients out, y in and the partials out.
    let bytes_moved = 4.0 * bf * (4.0 * df + 1.0) + 32.0 * bf;
    let counts = last.map(|o| o.counts).unwrap_or_default();
    let active = counts.active_terms() as f64 / (counts.pairs().max(1)) as f64;
    let adapter = gpu.as_ref().map(|g| g.adapter().name.clone());
    let peak = gpu.as_ref().map(|g| g.workspace_bytes().1);
    out!(
        "adapter:          {}",
        adapter.as_deref().unwrap_or("cpu reference")
    );
    out!(
        "loss:             contrastive, {} mode, B={b}, D={d}, margin {}",
        if args.mode == ModeArg::Batch {
            "batch"
        } else {
            "pairs"
        },
        args.margin
    );
    out!(
        "median per call:  {median:.6} s over {} calls (forward + backward, upload and readback)",
        args.repeat
    );
    match kernel_s {
        Some(k) => out!("kernel time:      {k:.6} s (GPU timestamps)"),
        None => out!("kernel time:      n/a (no TIMESTAMP_QUERY)"),
    }
    if args.mode == ModeArg::Pairs {
        out!("rows per second:  {:.4e} (one pair a row)", pairs / median);
    } else {
        out!("pairs per second: {:.4e}", pairs / median);
    }
    out!(
        "model GFLOP/s:    {:.3} (6·{}·D / median)",
        model_flops / median / 1e9,
        if args.mode == ModeArg::Batch {
            "B²"
        } else {
            "N"
        }
    );
    if args.mode == ModeArg::Pairs {
        out!("GB/s moved:       {:.3}", bytes_moved / median / 1e9);
    }
    out!("active terms:     {:.4} of all pairs", active);
    if let Some(p) = peak {
        out!("peak device mem:  {p} bytes (metric-loss workspace)");
    }
    if args.json {
        let json = serde_json::json!({
            "loss": "contrastive",
            "mode": if args.mode == ModeArg::Batch { "batch" } else { "pairs" },
            "device": if gpu.is_some() { "gpu" } else { "cpu" },
            "adapter": adapter,
            "batch": b,
            "dim": d,
            "repeat": args.repeat,
            "median_s": median,
            "kernel_s": kernel_s,
            "pairs_per_s": pairs / median,
            "gflops": model_flops / median / 1e9,
            "gb_per_s": if args.mode == ModeArg::Pairs { Some(bytes_moved / median / 1e9) } else { None },
            "active_fraction": active,
            "peak_device_bytes": peak,
        });
        out!("{json}");
    }
    Ok(ExitCode::SUCCESS)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

//! `metric-loss bench`: time forward + backward calls through the host API.
//!
//! Inputs follow the project's benchmark rules: Gaussian rows, L2-normalised, `normalize`
//! off, margin 1.5 for contrastive (most dissimilar pairs sit inside it) and 1 for triplet,
//! labels uniform over B/8 classes (pairs: y uniform over 0/1). NT-Xent and SupCon take two
//! views of B/2 samples (labels i mod B/2, SimCLR's setting); CLIP two independent B×D
//! views. Every pair's term is evaluated whatever the data.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use metric_loss::check::Rng;
use metric_loss::{
    Contrastive, Embeddings, Gpu, Grads, Labels, Mining, Softmax, SoftmaxLoss, Triplet,
};

use crate::eval::{DeviceArg, LossName, MiningArg};
use crate::Failure;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// In-batch: every pair (contrastive) or mined triplets (triplet) of a labelled batch.
    Batch,
    /// Contrastive over explicit pairs.
    Pairs,
    /// Triplet over explicit (anchor, positive, negative) rows.
    Triplets,
}

#[derive(Args)]
pub struct BenchArgs {
    /// The loss.
    #[arg(long, value_enum)]
    loss: LossName,
    /// Rows (B in batch mode, N pairs or triplets otherwise).
    #[arg(long, default_value_t = 0, required_unless_present = "embeddings")]
    batch: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 0, required_unless_present = "embeddings")]
    dim: usize,
    /// In-batch, explicit pairs (contrastive) or explicit triplets (triplet).
    #[arg(long, value_enum, default_value = "batch")]
    mode: ModeArg,
    /// Triplet in batch mode: the mining rule.
    #[arg(long, value_enum, default_value = "hard")]
    mining: MiningArg,
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
    /// Margin m (default 1.5 for contrastive, 1 for triplet).
    #[arg(long)]
    margin: Option<f32>,
    /// ntxent, supcon, clip: the temperature (default 0.07; supcon 0.1).
    #[arg(long)]
    temperature: Option<f32>,
}

/// What one benchmark call computes.
enum Workload<'a> {
    Contrastive {
        cfg: Contrastive,
        x: Embeddings<'a>,
        labels: Labels,
        b: Option<(Embeddings<'a>, Vec<bool>)>,
    },
    Triplet {
        cfg: Triplet,
        x: Embeddings<'a>,
        labels: Labels,
        mining: Mining,
        explicit: Option<[Embeddings<'a>; 2]>,
    },
    Softmax {
        cfg: Softmax,
        x: Embeddings<'a>,
        labels: Labels,
        b: Option<Embeddings<'a>>,
    },
}

impl Workload<'_> {
    /// Runs one forward + backward call: (terms, active terms).
    fn call(&self, gpu: &Option<Gpu>) -> Result<(u64, u64), Failure> {
        let g = Grads::Compute;
        Ok(match self {
            Workload::Contrastive { cfg, x, labels, b } => {
                let out = match (gpu, b) {
                    (Some(gpu), Some((eb, y))) => cfg.pairs(gpu, x, eb, y, g)?,
                    (Some(gpu), None) => cfg.batch(gpu, x, labels, g)?,
                    (None, Some((eb, y))) => cfg.pairs_cpu(x, eb, y, g)?,
                    (None, None) => cfg.batch_cpu(x, labels, g)?,
                };
                (out.counts.pairs(), out.counts.active_terms())
            }
            Workload::Triplet {
                cfg,
                x,
                labels,
                mining,
                explicit,
            } => {
                let out = match (gpu, explicit) {
                    (Some(gpu), Some([p, n])) => cfg.explicit(gpu, x, p, n, g)?,
                    (Some(gpu), None) => cfg.mined(gpu, x, labels, *mining, g)?,
                    (None, Some([p, n])) => cfg.explicit_cpu(x, p, n, g)?,
                    (None, None) => cfg.mined_cpu(x, labels, *mining, g)?,
                };
                (out.counts.terms, out.counts.active)
            }
            Workload::Softmax { cfg, x, labels, b } => {
                let out = match (gpu, b) {
                    (Some(gpu), Some(b)) => cfg.pairs(gpu, x, b, g)?,
                    (Some(gpu), None) => cfg.batch(gpu, x, labels, g)?,
                    (None, Some(b)) => cfg.pairs_cpu(x, b, g)?,
                    (None, None) => cfg.batch_cpu(x, labels, g)?,
                };
                (out.counts.terms, out.counts.terms)
            }
        })
    }
}

/// Refuses sizes whose indices overflow, that exceed 32-bit row indices, or whose generated
/// inputs (`inputs` matrices of `b × d` f32) the host cannot allocate, before generating them.
fn check_size(b: usize, d: usize, inputs: usize) -> Result<(), Failure> {
    if b > u32::MAX as usize {
        return Err(Failure::usage(format!(
            "--batch {b}: at most {} rows (32-bit row indices)",
            u32::MAX
        )));
    }
    let values = b
        .checked_mul(d)
        .and_then(|v| v.checked_mul(inputs))
        .filter(|&v| v <= isize::MAX as usize / 4)
        .ok_or_else(|| {
            Failure::usage(format!(
                "--batch {b} × --dim {d}: too many values to index in memory"
            ))
        })?;
    let mut probe: Vec<f32> = Vec::new();
    probe.try_reserve_exact(values).map_err(|_| {
        Failure::usage(format!(
            "--batch {b} × --dim {d} needs {:.1} GB of host memory for its inputs, more than \
             can be allocated; use a smaller batch or dimension",
            values as f64 * 4e-9
        ))
    })?;
    Ok(())
}

pub fn run(args: BenchArgs) -> Result<ExitCode, Failure> {
    let triplet = matches!(args.loss, LossName::Triplet);
    let softmax = match args.loss {
        LossName::Ntxent => Some(SoftmaxLoss::NtXent),
        LossName::Supcon => Some(SoftmaxLoss::SupCon),
        LossName::Clip => Some(SoftmaxLoss::Clip),
        _ => None,
    };
    if softmax.is_some() && args.mode != ModeArg::Batch {
        return Err(Failure::usage(
            "--mode applies to contrastive and triplet; ntxent, supcon and clip run in-batch",
        ));
    }
    if softmax.is_none() && args.temperature.is_some() {
        return Err(Failure::usage(
            "--temperature applies to --loss ntxent, supcon and clip",
        ));
    }
    if softmax == Some(SoftmaxLoss::Clip) && args.embeddings.is_some() {
        return Err(Failure::usage(
            "--embeddings/--labels apply to a labelled batch, not to --loss clip",
        ));
    }
    match (triplet, args.mode) {
        (true, ModeArg::Pairs) => {
            return Err(Failure::usage(
                "--mode pairs applies to contrastive; triplet takes batch or triplets",
            ))
        }
        (false, ModeArg::Triplets) => {
            return Err(Failure::usage(
                "--mode triplets applies to triplet; contrastive takes batch or pairs",
            ))
        }
        _ => {}
    }
    let given = match (&args.embeddings, &args.labels) {
        (Some(x), Some(l)) => {
            if args.mode != ModeArg::Batch {
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
    let margin = args.margin.unwrap_or(if triplet { 1.0 } else { 1.5 });
    if !(margin.is_finite() && margin >= 0.0) {
        return Err(Failure::usage("--margin must be finite and >= 0"));
    }
    let sides = match args.mode {
        ModeArg::Batch if softmax == Some(SoftmaxLoss::Clip) => 1,
        ModeArg::Batch => 0,
        ModeArg::Pairs => 1,
        ModeArg::Triplets => 2,
    };
    check_size(b, d, 1 + sides)?;
    let mut gpu = args.device.open()?;
    if let Some(g) = &gpu {
        // Checked again by the loss call; here before the inputs are generated.
        let (bytes, limit) = ((b * d * 4) as u64, g.limits().max_buffer_size);
        if bytes > limit {
            return Err(Failure::usage(format!(
                "--batch {b} × --dim {d} needs {bytes} bytes of embeddings, but the device \
                 allows at most {limit} per buffer; use a smaller batch or dimension"
            )));
        }
    }
    let mut rng = Rng::new(args.seed);
    let x = match &given {
        Some((data, ..)) => data.clone(),
        None => rng.unit_rows(b, d),
    };
    let others: Vec<Vec<f32>> = (0..sides).map(|_| rng.unit_rows(b, d)).collect();
    let classes = (b / 8).max(1) as u64;
    let labels: Vec<i64> = match &given {
        Some((.., ids)) => ids.clone(),
        None if softmax.is_some() => (0..b).map(|i| (i % b.div_ceil(2)) as i64).collect(),
        None => (0..b).map(|_| rng.below(classes) as i64).collect(),
    };
    let similar: Vec<bool> = (0..b).map(|_| rng.below(2) == 0).collect();
    let labels = Labels::new(&labels);
    let ex = Embeddings::new("embeddings", &x, b, d)?;
    let eo: Vec<Embeddings<'_>> = others
        .iter()
        .map(|o| Embeddings::new("other", o, b, d))
        .collect::<Result<_, _>>()?;
    let mining = match args.mining {
        MiningArg::All => Mining::All,
        MiningArg::Hard => Mining::Hard,
        MiningArg::Semihard => Mining::Semihard,
    };
    let work = if let Some(loss) = softmax {
        let cfg = Softmax::new(loss);
        let cfg = cfg.temperature(args.temperature.unwrap_or(cfg.temperature));
        cfg.validate()?;
        Workload::Softmax {
            cfg,
            x: ex,
            labels,
            b: (sides == 1).then(|| eo[0]),
        }
    } else if triplet {
        Workload::Triplet {
            cfg: Triplet::default().margin(margin),
            x: ex,
            labels,
            mining,
            explicit: (sides == 2).then(|| [eo[0], eo[1]]),
        }
    } else {
        Workload::Contrastive {
            cfg: Contrastive::default().margin(margin),
            x: ex,
            labels,
            b: (sides == 1).then(|| (eo[0], similar)),
        }
    };
    if let Some(g) = gpu.as_mut() {
        g.set_profiling(true);
    }
    let bar = indicatif::ProgressBar::new((args.repeat + args.warmup) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} calls, {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("B={b} D={d}"));
    for _ in 0..args.warmup {
        work.call(&gpu)?;
        bar.inc(1);
    }
    let mut times = Vec::new();
    let mut kernel = Vec::new();
    let mut counts = (0, 0);
    for _ in 0..args.repeat {
        let t = Instant::now();
        counts = work.call(&gpu)?;
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
    // What the rate counts, how many of them one call does, and the model's FLOPs.
    let (unit, units, model_flops, flops_rule) = match (triplet, args.mode) {
        _ if softmax == Some(SoftmaxLoss::Clip) => ("pairs", bf * bf, 6.0 * bf * bf * df, "6·B²·D"),
        _ if softmax.is_some() => ("pairs", bf * (bf - 1.0), 6.0 * bf * bf * df, "6·B²·D"),
        (false, ModeArg::Batch) => ("pairs", bf * (bf - 1.0) / 2.0, 6.0 * bf * bf * df, "6·B²·D"),
        (false, _) => ("pairs", bf, 6.0 * bf * df, "6·N·D"),
        (true, ModeArg::Batch) if mining == Mining::All => {
            ("triplets", counts.0 as f64, 3.0 * bf * bf * df, "3·B²·D")
        }
        (true, ModeArg::Batch) => ("pairs", bf * (bf - 1.0), 3.0 * bf * bf * df, "3·B²·D"),
        (true, _) => ("triplets", bf, 18.0 * bf * df, "18·N·D"),
    };
    // Explicit rows move every input in and every gradient out, the pair labels in (pairs)
    // and the 32-byte partials out.
    let label_bytes = if sides == 1 { 4.0 } else { 0.0 };
    let bytes_moved = 4.0 * bf * (2.0 * sides as f64 + 2.0) * df + (32.0 + label_bytes) * bf;
    let active = counts.1 as f64 / (counts.0.max(1)) as f64;
    let adapter = gpu.as_ref().map(|g| g.adapter().name.clone());
    let peak = gpu.as_ref().map(|g| g.workspace_bytes().1);
    let mode = match (triplet, args.mode) {
        _ if softmax == Some(SoftmaxLoss::Clip) => "two views".into(),
        _ if softmax.is_some() => "two views, labelled".into(),
        (true, ModeArg::Batch) => format!("mined {}", mining.name()),
        (_, ModeArg::Batch) => "batch".into(),
        (_, ModeArg::Pairs) => "pairs".into(),
        (_, ModeArg::Triplets) => "explicit triplets".into(),
    };
    let loss_name = match softmax {
        Some(s) => s.name(),
        None if triplet => "triplet",
        None => "contrastive",
    };
    let setting = match &work {
        Workload::Softmax { cfg, .. } => format!("temperature {}", cfg.temperature),
        _ => format!("margin {margin}"),
    };
    out!(
        "adapter:          {}",
        adapter.as_deref().unwrap_or("cpu reference")
    );
    let rows = if args.mode == ModeArg::Batch {
        "B"
    } else {
        "N"
    };
    out!("loss:             {loss_name}, {mode}, {rows}={b}, D={d}, {setting}");
    out!(
        "median per call:  {median:.6} s over {} calls (forward + backward, upload and readback)",
        args.repeat
    );
    match kernel_s {
        Some(k) => out!("kernel time:      {k:.6} s (GPU timestamps)"),
        None => out!("kernel time:      n/a (no TIMESTAMP_QUERY)"),
    }
    out!("{unit} per second: {:.4e}", units / median);
    out!(
        "model GFLOP/s:    {:.3} ({flops_rule} / median)",
        model_flops / median / 1e9
    );
    if args.mode != ModeArg::Batch {
        out!("GB/s moved:       {:.3}", bytes_moved / median / 1e9);
    }
    if softmax.is_some() {
        out!("terms:            {}", counts.0);
    }
    if softmax.is_none() {
        out!("active terms:     {:.4} of {} terms", active, counts.0);
    }
    if let Some(p) = peak {
        out!("peak device mem:  {p} bytes (metric-loss workspace)");
    }
    if args.json {
        let json = serde_json::json!({
            "loss": loss_name,
            "mode": mode,
            "device": if gpu.is_some() { "gpu" } else { "cpu" },
            "adapter": adapter,
            "batch": b,
            "dim": d,
            "repeat": args.repeat,
            "median_s": median,
            "kernel_s": kernel_s,
            "unit": unit,
            "units_per_s": units / median,
            "pairs_per_s": (unit == "pairs").then_some(units / median),
            "triplets_per_s": (unit == "triplets").then_some(units / median),
            "gflops": model_flops / median / 1e9,
            "gb_per_s": (args.mode != ModeArg::Batch).then_some(bytes_moved / median / 1e9),
            "terms": counts.0,
            "active_fraction": softmax.is_none().then_some(active),
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

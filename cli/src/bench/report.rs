//! What `bench` prints: the median time per call, kernel time, a rate, model GFLOP/s, the
//! bytes moved (explicit rows), active terms and peak workspace; with `--json` one JSON
//! object as the last line.

use std::process::ExitCode;

use metric_loss::{Distance, EngineConfig, Gpu, Mining, Reduction, SoftmaxLoss, TripletTerm};

use super::workload::{Config, Inputs, Workload};
use super::{BenchArgs, ModeArg, Timing};
use crate::Failure;

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// What the rate counts, how many of them one call does, the model's FLOPs and its rule.
fn rate(
    work: &Workload<'_>,
    mode: ModeArg,
    b: f64,
    d: f64,
    terms: u64,
) -> (&'static str, f64, f64, &'static str) {
    match (work, mode) {
        (Workload::Against { reference, .. }, _) => {
            let m = reference.rows() as f64;
            ("pairs", b * m, 6.0 * b * m * d, "6·B·M·D")
        }
        (Workload::Softmax { b: Some(_), .. } | Workload::Siglip { .. }, _) => {
            ("pairs", b * b, 6.0 * b * b * d, "6·B²·D")
        }
        (Workload::Proxy { cfg, weights, .. }, _) => {
            let c = weights.rows() as f64;
            let rule = if cfg.sub_centers > 1 {
                "6·B·C·K·D"
            } else {
                "6·B·C·D"
            };
            ("pairs", b * c, 6.0 * b * c * d, rule)
        }
        (Workload::Softmax { .. } | Workload::Weighting { .. }, _) => {
            ("pairs", b * (b - 1.0), 6.0 * b * b * d, "6·B²·D")
        }
        (Workload::Contrastive { .. }, ModeArg::Batch) => {
            ("pairs", b * (b - 1.0) / 2.0, 6.0 * b * b * d, "6·B²·D")
        }
        (Workload::Contrastive { .. }, _) => ("pairs", b, 6.0 * b * d, "6·N·D"),
        (Workload::Triplet { cfg, .. }, ModeArg::Batch) if cfg.mining == Mining::All => {
            ("triplets", terms as f64, 3.0 * b * b * d, "3·B²·D")
        }
        (Workload::Triplet { .. }, ModeArg::Batch) => {
            ("pairs", b * (b - 1.0), 3.0 * b * b * d, "3·B²·D")
        }
        (Workload::Triplet { .. }, _) => ("triplets", b, 18.0 * b * d, "18·N·D"),
    }
}

/// The FLOPs the GPU kernels of one call execute, and the rule, per family: 3 per pair and
/// dimension for a squared difference (sub, mul, add) or a gradient term w·(x_i − x_j), 2 for
/// a dot product or a term w·x_j. In-batch losses visit every ordered pair once per sweep:
/// contrastive one sweep with gradient (mean-nonzero adds a forward sweep over i < j);
/// NT-Xent three (statistics, positives, gradient; two when no row has two positives),
/// SupCon two, CLIP two per direction; SigLIP one per direction (A's with the terms);
/// Multi-Similarity and Circle a log-sum-exp sweep and a gradient sweep (the miner adds its
/// bounds' sweep);
/// mined triplets one distance sweep (the chosen terms' gradients add O(B·D)). Explicit rows
/// are bandwidth-bound; their rule is the model's.
fn kernel_flops(work: &Workload<'_>, mode: ModeArg, b: f64, d: f64) -> (f64, &'static str) {
    let pairs = b * b * d;
    let dot = |dist: Distance| dist == Distance::Cosine;
    match (work, mode) {
        // Against a detached reference set of M rows: the queries' sweeps only, B·M pairs.
        (Workload::Against { cfg, reference, .. }, _) => {
            let bmd = b * reference.rows() as f64 * d;
            match cfg {
                Config::Softmax(s) if s.loss == SoftmaxLoss::NtXent => (8.0 * bmd, "8·B·M·D"),
                Config::Contrastive(c) if dot(c.distance) => (4.0 * bmd, "4·B·M·D"),
                _ => (6.0 * bmd, "6·B·M·D"),
            }
        }
        (Workload::Siglip { .. }, _) => (8.0 * pairs, "8·N²·D"),
        (Workload::Weighting { .. }, _) => (6.0 * pairs, "6·B²·D"),
        // The log-sum-exps (2), the queries' gradient (4) and W's (4).
        (Workload::Proxy { cfg, weights, .. }, _) => (
            10.0 * b * weights.rows() as f64 * d,
            if cfg.sub_centers > 1 {
                "10·B·C·K·D"
            } else {
                "10·B·C·D"
            },
        ),
        (Workload::Softmax { cfg, labels, .. }, _) => match cfg.loss {
            // No row with two positives (SimCLR's views): no positives' sweep.
            SoftmaxLoss::NtXent if labels.largest_class() <= 2 => (6.0 * pairs, "6·B²·D"),
            SoftmaxLoss::NtXent => (8.0 * pairs, "8·B²·D"),
            SoftmaxLoss::SupCon => (6.0 * pairs, "6·B²·D"),
            SoftmaxLoss::Clip | SoftmaxLoss::InfoNce { symmetric: true } => {
                (12.0 * pairs, "12·N²·D")
            }
            SoftmaxLoss::InfoNce { symmetric: false } => (10.0 * pairs, "10·N²·D"),
        },
        (Workload::Contrastive { cfg, .. }, ModeArg::Batch) => {
            let nonzero = cfg.reduction == Reduction::MeanNonzero;
            match (dot(cfg.distance), nonzero) {
                (false, false) => (6.0 * pairs, "6·B²·D"),
                (false, true) => (7.5 * pairs, "7.5·B²·D"),
                (true, false) => (4.0 * pairs, "4·B²·D"),
                (true, true) => (5.0 * pairs, "5·B²·D"),
            }
        }
        (Workload::Contrastive { .. }, _) => (6.0 * b * d, "6·N·D"),
        (Workload::Triplet { cfg, .. }, ModeArg::Batch) => {
            if dot(cfg.distance) {
                (2.0 * pairs, "2·B²·D")
            } else {
                (3.0 * pairs, "3·B²·D")
            }
        }
        (Workload::Triplet { .. }, _) => (18.0 * b * d, "18·N·D"),
    }
}

/// `bench --peak`: the adapter's ceilings.
pub(crate) fn peak(args: &BenchArgs) -> Result<ExitCode, Failure> {
    let gpu = args
        .device
        .open()?
        .ok_or_else(|| Failure::usage("--peak applies to --device gpu"))?;
    let p = gpu.probe_peak()?;
    out!("adapter:          {}", gpu.adapter().name);
    out!(
        "FMA peak:         {:.2} GFLOP/s (register-only kernel, FP32)",
        p.fma_flops / 1e9
    );
    out!(
        "storage read:     {:.2} GB/s (streaming kernel)",
        p.storage_bytes_per_s / 1e9
    );
    if args.json {
        let json = serde_json::json!({
            "adapter": gpu.adapter().name,
            "peak_fma_flops": p.fma_flops,
            "peak_storage_bytes_per_s": p.storage_bytes_per_s,
        });
        out!("{json}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench --tune`: the median per call under each configuration, and the fastest.
pub(crate) fn tune(rows: &[(EngineConfig, f64)]) -> Result<ExitCode, Failure> {
    for (engine, t) in rows {
        out!("engine {:<12} median per call {t:.6} s", engine.name());
    }
    if let Some((best, _)) = rows.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
        out!("fastest:          {best} (METRIC_LOSS_ENGINE={best})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The loss's name and the mode as reported.
fn names(work: &Workload<'_>, mode: ModeArg) -> (&'static str, String, String) {
    match work {
        Workload::Against { cfg, reference, .. } => {
            let (name, setting) = match cfg {
                Config::Softmax(s) => (s.loss.name(), format!("temperature {}", s.temperature)),
                Config::Contrastive(c) => ("contrastive", format!("margin {}", c.margin)),
                Config::Triplet(_) => ("triplet", String::new()),
                Config::Siglip(_) => ("siglip", String::new()),
                Config::Weighting(w) => (w.name(), String::new()),
                Config::Proxy(p) => (p.name(), String::new()),
            };
            let mode = format!("against {} detached reference rows", reference.rows());
            (name, mode, setting)
        }
        Workload::Weighting { cfg, .. } => (cfg.name(), "batch".into(), cfg.case_name()),
        Workload::Proxy { cfg, weights, .. } => (
            cfg.name(),
            match cfg.sub_centers {
                1 => format!("against {} classes", weights.rows()),
                k => format!(
                    "against {} classes × {k} sub-centres",
                    cfg.classes_of(weights.rows())
                ),
            },
            cfg.case_name(),
        ),
        Workload::Siglip { cfg, .. } => (
            "siglip",
            "two views".into(),
            format!("log scale {}, bias {}", cfg.log_scale, cfg.bias),
        ),
        Workload::Softmax { cfg, b, .. } => (
            cfg.loss.name(),
            if b.is_some() {
                "two views"
            } else {
                "two views, labelled"
            }
            .into(),
            format!("temperature {}", cfg.temperature),
        ),
        Workload::Triplet { cfg, .. } => (
            "triplet",
            match mode {
                ModeArg::Batch => format!("mined {}", cfg.mining.name()),
                _ => "explicit triplets".into(),
            },
            format!(
                "margin {}",
                match cfg.term {
                    TripletTerm::Margin(m) => m,
                    TripletTerm::Soft => 0.0,
                }
            ),
        ),
        Workload::Contrastive { cfg, .. } => (
            "contrastive",
            match mode {
                ModeArg::Batch => "batch".into(),
                _ => "pairs".into(),
            },
            format!("margin {}", cfg.margin),
        ),
    }
}

pub(crate) fn print(
    args: &BenchArgs,
    work: &Workload<'_>,
    inputs: &Inputs,
    gpu: &Option<Gpu>,
    t: &Timing,
    peak: Option<f64>,
) -> Result<(), Failure> {
    let (b, d) = (inputs.rows, inputs.dim);
    let kernel_s = (!t.kernel.is_empty()).then(|| median(&t.kernel));
    let median = median(&t.wall);
    let (bf, df) = (b as f64, d as f64);
    let (unit, units, model_flops, flops_rule) = rate(work, args.mode, bf, df, t.counts.0);
    let sides = Inputs::sides(args);
    // Explicit rows move every input in (2 or 4 bytes a value) and every gradient out (f32:
    // the host path reads the f32 gradient back), the pair labels in (pairs) and the
    // 32-byte partials out.
    let label_bytes = if sides == 1 { 4.0 } else { 0.0 };
    let value_bytes = inputs.precision.bytes() as f64 + 4.0;
    let bytes_moved = value_bytes * bf * (sides as f64 + 1.0) * df + (32.0 + label_bytes) * bf;
    let active = t.counts.1 as f64 / (t.counts.0.max(1)) as f64;
    let adapter = gpu.as_ref().map(|g| g.adapter().name.clone());
    let peak_bytes = gpu.as_ref().map(|g| g.workspace_bytes().1);
    // Losses without a hinge: every term counts, none is "active".
    let softmax = matches!(
        work,
        Workload::Softmax { .. }
            | Workload::Siglip { .. }
            | Workload::Weighting { .. }
            | Workload::Proxy { .. }
    );
    let (loss_name, mode, setting) = names(work, args.mode);
    out!(
        "adapter:          {}",
        adapter.as_deref().unwrap_or("cpu reference")
    );
    let rows = if args.mode == ModeArg::Batch {
        "B"
    } else {
        "N"
    };
    out!(
        "loss:             {loss_name}, {mode}, {rows}={b}, D={d}, {setting}, {} rows",
        inputs.precision.name()
    );
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
    let (flops, flops_rule_kernel) = kernel_flops(work, args.mode, bf, df);
    let kernel_time = kernel_s.unwrap_or(median);
    let fraction = peak.map(|p| flops / kernel_time / p);
    if let (Some(p), Some(f)) = (peak, fraction) {
        out!(
            "kernel GFLOP/s:   {:.3} ({flops_rule_kernel} executed / kernel time), {:.1}% of \
             the adapter's FMA peak {:.2} GFLOP/s",
            flops / kernel_time / 1e9,
            100.0 * f,
            p / 1e9
        );
    }
    if let Some(g) = gpu {
        out!("engine:           {}", g.engine());
    }
    if args.mode != ModeArg::Batch {
        out!("GB/s moved:       {:.3}", bytes_moved / median / 1e9);
    }
    if softmax {
        out!("terms:            {}", t.counts.0);
    } else {
        out!("active terms:     {:.4} of {} terms", active, t.counts.0);
    }
    if let Some(p) = peak_bytes {
        out!("peak device mem:  {p} bytes (metric-loss workspace)");
    }
    if args.json {
        let json = serde_json::json!({
            "loss": loss_name,
            "mode": mode,
            "device": args.device.name(),
            "adapter": adapter,
            "batch": b,
            "dim": d,
            "precision": inputs.precision.name(),
            "repeat": args.repeat,
            "median_s": median,
            "kernel_s": kernel_s,
            "unit": unit,
            "units_per_s": units / median,
            "pairs_per_s": (unit == "pairs").then_some(units / median),
            "triplets_per_s": (unit == "triplets").then_some(units / median),
            "gflops": model_flops / median / 1e9,
            "gb_per_s": (args.mode != ModeArg::Batch).then_some(bytes_moved / median / 1e9),
            "terms": t.counts.0,
            "active_fraction": (!softmax).then_some(active),
            "peak_device_bytes": peak_bytes,
            "engine": gpu.as_ref().map(|g| g.engine().name()),
            "kernel_flops": flops,
            "kernel_flops_rule": flops_rule_kernel,
            "peak_fma_flops": peak,
            "fma_peak_fraction": fraction,
        });
        out!("{json}");
    }
    Ok(())
}

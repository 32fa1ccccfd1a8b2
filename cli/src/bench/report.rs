//! What `bench` prints: the median time per call, kernel time, a rate, model GFLOP/s, the
//! bytes moved (explicit rows), active terms and peak workspace; with `--json` one JSON
//! object as the last line.

use metric_loss::{Gpu, Mining, TripletTerm};

use super::workload::{Inputs, Workload};
use super::{BenchArgs, ModeArg, Timing};
use crate::Failure;

fn median(v: &[f64]) -> f64 {
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
        (Workload::Softmax { b: Some(_), .. }, _) => ("pairs", b * b, 6.0 * b * b * d, "6·B²·D"),
        (Workload::Softmax { .. }, _) => ("pairs", b * (b - 1.0), 6.0 * b * b * d, "6·B²·D"),
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

/// The loss's name and the mode as reported.
fn names(work: &Workload<'_>, mode: ModeArg) -> (&'static str, String, String) {
    match work {
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
) -> Result<(), Failure> {
    let (b, d) = (inputs.rows, inputs.dim);
    let kernel_s = (!t.kernel.is_empty()).then(|| median(&t.kernel));
    let median = median(&t.wall);
    let (bf, df) = (b as f64, d as f64);
    let (unit, units, model_flops, flops_rule) = rate(work, args.mode, bf, df, t.counts.0);
    let sides = Inputs::sides(args);
    // Explicit rows move every input in and every gradient out, the pair labels in (pairs)
    // and the 32-byte partials out.
    let label_bytes = if sides == 1 { 4.0 } else { 0.0 };
    let bytes_moved = 4.0 * bf * (2.0 * sides as f64 + 2.0) * df + (32.0 + label_bytes) * bf;
    let active = t.counts.1 as f64 / (t.counts.0.max(1)) as f64;
    let adapter = gpu.as_ref().map(|g| g.adapter().name.clone());
    let peak = gpu.as_ref().map(|g| g.workspace_bytes().1);
    let softmax = matches!(work, Workload::Softmax { .. });
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
    if softmax {
        out!("terms:            {}", t.counts.0);
    } else {
        out!("active terms:     {:.4} of {} terms", active, t.counts.0);
    }
    if let Some(p) = peak {
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
            "peak_device_bytes": peak,
        });
        out!("{json}");
    }
    Ok(())
}

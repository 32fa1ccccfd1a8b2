//! One training step of the in-batch contrastive loss (defaults: euclidean, margin 1,
//! squared hinge, mean over the pairs) at B rows of D values, forward and backward, with
//! metric-loss-burn's operation or with the loss written in plain burn tensor ops (the
//! B×B distance matrix by the Gram form, masks, relu), and the process's peak resident
//! memory. On lavapipe the device's memory is the process's, so the peak RSS is the step's
//! whole footprint. `burn/memory.sh` runs it over growing B in separate processes.
//!
//! Run: `cargo run -p metric-loss-burn --release --example memory -- --impl ours|burn
//! --rows B [--dim D]`; one JSON line.

use std::time::Instant;

use burn::tensor::activation::relu;
use burn::tensor::{Distribution, Int, Tensor};
use clap::{Parser, ValueEnum};
use metric_loss::Contrastive;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Impl {
    Ours,
    Burn,
}

#[derive(Parser)]
struct Args {
    #[arg(long = "impl", value_enum)]
    which: Impl,
    #[arg(long)]
    rows: usize,
    #[arg(long, default_value_t = 128)]
    dim: usize,
}

/// The loss in burn tensor ops: what a burn user writes without this crate.
fn burn_contrastive(x: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let b = x.dims()[0];
    let sq = x.clone().powi_scalar(2).sum_dim(1); // [b, 1]
    let gram = x.clone().matmul(x.transpose());
    let d2 = sq.clone() + sq.transpose() - gram.mul_scalar(2.0);
    let d = d2.clamp_min(1e-12).sqrt();
    let same = labels
        .clone()
        .reshape([b, 1])
        .expand([b, b])
        .equal(labels.reshape([1, b]).expand([b, b]));
    let similar = d.clone().powi_scalar(2);
    let dissimilar = relu(d.neg() + 1.0).powi_scalar(2);
    let terms = dissimilar.mask_where(same, similar);
    let upper = Tensor::<2>::ones([b, b], &terms.device()).triu(1);
    (terms * upper).sum() / ((b * (b - 1) / 2) as f64)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args = Args::parse();
    let device = match metric_loss_burn::init(Default::default()) {
        Ok(d) => d.autodiff(),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    device.seed(7);
    let start = Instant::now();
    let x = Tensor::<2>::random(
        [args.rows, args.dim],
        Distribution::Normal(0.0, 0.1),
        &device,
    )
    .require_grad();
    let labels = Tensor::<1, Int>::arange(0..args.rows as i64, &device).remainder_scalar(64);
    let loss = match args.which {
        Impl::Ours => metric_loss_burn::contrastive(x.clone(), labels, &Contrastive::default())
            .unwrap_or_else(|e| {
                eprintln!("error: {e}");
                std::process::exit(1);
            }),
        Impl::Burn => burn_contrastive(x.clone(), labels),
    };
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    let g = x.grad(&grads).expect("x is tracked");
    let norm = g.powi_scalar(2).sum().into_scalar::<f32>().sqrt();
    let json = serde_json::json!({
        "impl": match args.which { Impl::Ours => "metric-loss-burn", Impl::Burn => "burn tensor ops" },
        "rows": args.rows,
        "dim": args.dim,
        "loss": value,
        "grad_norm": norm,
        "seconds": start.elapsed().as_secs_f64(),
        "peak_rss_mb": peak_rss_mb(),
    });
    println!("{json}");
}

//! Soak run: many consecutive loss calls on one `Gpu` with shapes and losses varying from
//! call to call. Every 97th call is checked against the CPU reference under the tolerance
//! rule (contrastive with margins placed clear of the kinks, and the softmax losses, which
//! have none; triplet calls, whose choices may rightly differ near ties on random input,
//! are checked for finite outputs), and the resident set size is sampled to see that it
//! stays flat once the workspace has grown to the largest shape.
//!
//! Run: `cargo run --release --example soak -- [calls (default 10000)] [seed]`.
//! The last line of stdout is one JSON object.

use std::time::Instant;

use metric_loss::testing::{self as check, Rng};
use metric_loss::{
    Contrastive, Embeddings, Gpu, Gradient, Grads, Labels, Mining, Softmax, SoftmaxLoss, Triplet,
};

/// Resident set size in bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(Ok(10_000), |v| v.parse())?;
    let seed: u64 = args.next().map_or(Ok(1), |v| v.parse())?;
    let gpu = Gpu::new()?;
    let mut rng = Rng::new(seed);
    let (mut checked, mut failed) = (0usize, 0usize);
    let mut samples = Vec::new();
    let start = Instant::now();
    for call in 0..calls {
        let rows = 2 + rng.below(95) as usize;
        let dim = 1 + rng.below(20) as usize;
        let x = rng.normals(rows * dim);
        let y = rng.normals(rows * dim);
        let labels: Vec<i64> = (0..rows)
            .map(|_| rng.below(rows as u64 / 4 + 1) as i64)
            .collect();
        let xe = Embeddings::named("x", &x, rows, dim)?;
        let ye = Embeddings::named("y", &y, rows, dim)?;
        let l = Labels::new(&labels);
        // 97 is coprime with the 6 kinds, so every kind is checked in turn.
        let check_now = call % 97 == 0;
        let kind = call % 6;
        let finite = |loss: f64, grads: &[Gradient]| {
            loss.is_finite() && grads.iter().flat_map(|g| g.iter()).all(|v| v.is_finite())
        };
        let ok = match kind {
            0 | 1 => {
                let mut cfg = Contrastive::default();
                if check_now {
                    let d = if kind == 0 {
                        check::batch_distances(&cfg, &xe)
                    } else {
                        check::pair_distances(&cfg, &xe, &ye)
                    };
                    let m = check::median(&d);
                    check::clear_margins(&mut cfg, &d, dim, 0.5 * m, 1.2 * m);
                    checked += 1;
                    if kind == 0 {
                        cfg.batch_check(&gpu, &xe, &l)?.pass()
                    } else {
                        let similar: Vec<bool> = labels.iter().map(|v| v % 2 == 0).collect();
                        cfg.pairs_check(&gpu, &xe, &ye, &similar)?.pass()
                    }
                } else {
                    let out = cfg.batch(&gpu, &xe, &l, Grads::Compute)?;
                    finite(out.loss, &out.grads)
                }
            }
            2 | 3 => {
                let t = Triplet::default();
                let out = if kind == 2 {
                    let mining = [Mining::All, Mining::Hard, Mining::Semihard][call % 3];
                    t.mining(mining).batch(&gpu, &xe, &l, Grads::Compute)?
                } else {
                    t.explicit(&gpu, &xe, &ye, &xe, Grads::Compute)?
                };
                finite(out.loss, &out.grads)
            }
            _ => {
                let loss = [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon, SoftmaxLoss::Clip][call % 3];
                let cfg = Softmax::new(loss);
                match (check_now, loss) {
                    (true, SoftmaxLoss::Clip) => {
                        checked += 1;
                        cfg.pairs_check(&gpu, &xe, &ye)?.pass()
                    }
                    (true, _) => {
                        checked += 1;
                        cfg.batch_check(&gpu, &xe, &l)?.pass()
                    }
                    (false, SoftmaxLoss::Clip) => {
                        let out = cfg.pairs(&gpu, &xe, &ye, Grads::Compute)?;
                        finite(out.loss, &out.grads)
                    }
                    (false, _) => {
                        let out = cfg.batch(&gpu, &xe, &l, Grads::Compute)?;
                        finite(out.loss, &out.grads)
                    }
                }
            }
        };
        if !ok {
            failed += 1;
            eprintln!("call {call}: kind {kind}, B={rows}, D={dim}: failed");
        }
        if call % 500 == 0 || call + 1 == calls {
            samples.push((call, rss()));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // After the first tenth the workspace has met (nearly) every shape: the RSS from there
    // on must not trend upward.
    let settled: Vec<u64> = samples
        .iter()
        .filter(|(c, _)| *c >= calls / 10)
        .map(|s| s.1)
        .collect();
    let (lo, hi) = (
        settled.iter().copied().min().unwrap_or(0),
        settled.iter().copied().max().unwrap_or(0),
    );
    println!(
        "{calls} calls in {seconds:.1} s; {checked} checked against the CPU reference, {failed} failed; \
         RSS after the first tenth {:.1}..{:.1} MB",
        lo as f64 / 1e6,
        hi as f64 / 1e6
    );
    let json = serde_json::json!({
        "calls": calls,
        "seconds": seconds,
        "checked": checked,
        "failed": failed,
        "rss_samples_mb": samples.iter().map(|(c, r)| (c, *r as f64 / 1e6)).collect::<Vec<_>>(),
        "rss_settled_min_mb": lo as f64 / 1e6,
        "rss_settled_max_mb": hi as f64 / 1e6,
        "allocations": format!("{:?}", gpu.allocations()),
        "uncaptured_errors": gpu.uncaptured_errors(),
    });
    println!("{json}");
    if failed > 0 || gpu.uncaptured_errors() > 0 {
        std::process::exit(1);
    }
    Ok(())
}

//! Throughput of the contrastive loss (forward + backward through the host API, upload and
//! readback included) on the default adapter.
//!
//! Run: `cargo bench --bench contrastive` (add `-- B D` for one size).
//! Model GFLOP/s = 6·B²·D / median seconds per call, so that designs stay comparable.

use std::time::Instant;

use metric_loss::testing::Rng;
use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels};

fn main() -> Result<(), metric_loss::Error> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let grid: Vec<(usize, usize)> = match args.as_slice() {
        [b, d, ..] => vec![(*b, *d)],
        _ => vec![(256, 32), (1024, 32), (1024, 128)],
    };
    let gpu = Gpu::new()?;
    println!(
        "adapter: {} ({})",
        gpu.adapter().name,
        gpu.adapter().backend
    );
    println!(
        "{:>6} {:>5} {:>11} {:>13} {:>13} {:>8}",
        "B", "D", "median s", "pairs/s", "model GFLOP/s", "active"
    );
    for (b, d) in grid {
        let mut rng = Rng::new(7);
        // Gaussian rows, L2-normalised, margin 1.5: most dissimilar pairs sit inside the margin.
        let data = rng.unit_rows(b, d);
        let labels = Labels::new(
            &(0..b)
                .map(|_| rng.below((b / 8).max(1) as u64) as i64)
                .collect::<Vec<_>>(),
        );
        let x = Embeddings::new(&data, b, d)?;
        let loss = Contrastive::default().margin(1.5)?;
        let warm = loss.batch(&gpu, &x, &labels, Grads::Compute)?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            loss.batch(&gpu, &x, &labels, Grads::Compute)?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let pairs = (b * (b - 1) / 2) as f64;
        println!(
            "{b:>6} {d:>5} {median:>11.4} {:>13.3e} {:>13.3} {:>8.3}",
            pairs / median,
            6.0 * (b * b * d) as f64 / median / 1e9,
            warm.active_terms().unwrap() as f64 / warm.counts.pairs() as f64
        );
    }
    Ok(())
}

//! Trains a small embedding model on real data with a loss computed on the GPU each step:
//! an MLP (64 → 64 → 8, ReLU, Adam, forward and backward written plainly below) on the UCI
//! handwritten digits (1797 images of 8×8 pixels, 10 classes; data/README.md). 360 images
//! are held out; on them it reports recall@1 and mean average precision before and after
//! training, beside raw-pixel recall@1, and draws the loss curve and a 2-D PCA of the test
//! embeddings.
//!
//! With `--holdout C` class C is left out of training and becomes the anomaly: each test
//! image is scored by its distance to the 5th nearest training image (the normal classes),
//! and the demo reports the ROC AUC of those scores for class C on the raw pixels, the
//! untrained and the trained embedding. Neighbour searches run on the GPU
//! (`metric_loss::measure`).
//!
//! Run: `cargo run --release --example train -- [--loss contrastive|triplet|ntxent]
//! [--epochs N] [--seed S] [--queue K] [--holdout C] [--out DIR]`. The last line of stdout is
//! one JSON object.

#[path = "demo.rs"]
mod demo;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use demo::{anomaly_auc, retrieval, split, Digits, LossKind, Mlp, Settings, EMBED, INPUT};
use metric_loss::testing::Rng;
use metric_loss::Gpu;

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    Contrastive,
    Triplet,
    Ntxent,
}

#[derive(Parser)]
#[command(about = "Train an MLP embedding on the UCI digits with a GPU metric-learning loss")]
struct Args {
    /// The loss (contrastive: --margin, default 2; triplet: semi-hard mining, margin 0.5;
    /// ntxent: the digit classes as labels, τ 0.1).
    #[arg(long, value_enum, default_value = "contrastive")]
    loss: LossArg,
    /// Passes over the 1437 training images.
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// Contrastive: the margin m.
    #[arg(long, default_value_t = 2.0)]
    margin: f32,
    /// Contrastive, NT-Xent: compare each batch with itself followed by a queue of this many
    /// past embeddings (detached, first in first out; MoCo-style). 0: the batch alone.
    #[arg(long, default_value_t = 0)]
    queue: usize,
    /// Leave this class (0–9) out of training and score the test images' distance to the
    /// normal training images as anomaly scores for it (ROC AUC in the JSON).
    #[arg(long)]
    holdout: Option<u32>,
    /// Seed of the weights and the batch order (the split is fixed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the two PNGs go.
    #[arg(long, default_value = "target/train")]
    out: PathBuf,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let loss = match args.loss {
        LossArg::Contrastive => LossKind::Contrastive,
        LossArg::Triplet => LossKind::Triplet,
        LossArg::Ntxent => LossKind::Ntxent,
    };
    if args.epochs == 0 || args.batch < 2 || !args.lr.is_finite() || args.lr <= 0.0 {
        return Err("--epochs must be >= 1, --batch >= 2 and --lr finite and > 0".into());
    }
    if args.queue > 0 && matches!(args.loss, LossArg::Triplet) {
        return Err("--queue applies to --loss contrastive and ntxent".into());
    }
    if args.holdout.is_some_and(|c| c > 9) {
        return Err("--holdout must be a class, 0 to 9".into());
    }
    let data = Digits::load()?;
    let (mut train, test) = split(data.len());
    if let Some(c) = args.holdout {
        train.retain(|&i| data.y[i] != c);
    }
    let (test_x, test_y) = data.rows(&test);
    let (train_x, _) = data.rows(&train);
    let anomalous: Vec<bool> = test_y.iter().map(|&y| Some(y) == args.holdout).collect();
    let gpu = Gpu::new().map_err(|e| e.to_string())?;
    let mut model = Mlp::new(&mut Rng::new(args.seed));
    let metrics = |emb: &[f32], dim| retrieval(&gpu, emb, dim, &test_y).map_err(|e| e.to_string());
    let auc = |model: Option<&Mlp>| -> Result<Option<f64>, String> {
        if args.holdout.is_none() {
            return Ok(None);
        }
        let (q, r, dim) = match model {
            Some(m) => (m.forward(&test_x).0, m.forward(&train_x).0, EMBED),
            None => (test_x.clone(), train_x.clone(), INPUT),
        };
        let auc = anomaly_auc(&gpu, &q, &r, dim, 5, &anomalous).map_err(|e| e.to_string())?;
        Ok(Some(auc))
    };

    let raw_r1 = metrics(&test_x, INPUT)?.0;
    let (before_r1, before_map) = metrics(&model.forward(&test_x).0, EMBED)?;
    let (raw_auc, before_auc) = (auc(None)?, auc(Some(&model))?);
    println!(
        "{} on {}: {} training and {} test images; raw pixels recall@1 {raw_r1:.4}",
        loss.name(),
        gpu.adapter().name,
        train.len(),
        test.len()
    );
    println!("untrained: recall@1 {before_r1:.4}, mAP {before_map:.4}");
    if let (Some(c), Some(raw), Some(before)) = (args.holdout, raw_auc, before_auc) {
        println!("class {c} held out: anomaly ROC AUC raw pixels {raw:.4}, untrained {before:.4}");
    }

    let settings = Settings {
        loss,
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
        margin: args.margin,
        queue: args.queue,
    };
    let bar = indicatif::ProgressBar::new(train.len().div_ceil(args.batch) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix:>3} [{bar:30}] {pos}/{len} steps  loss {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut running, mut seen) = (0.0, 0usize);
    let start = Instant::now();
    let losses = demo::train(&gpu, &data, &train, &mut model, &settings, |s| {
        if s.step == 0 {
            bar.reset();
            bar.set_prefix(format!("{}", s.epoch + 1));
            (running, seen) = (0.0, 0);
        }
        running += s.loss;
        seen += 1;
        bar.set_message(format!("{:.4}", running / seen as f64));
        bar.inc(1);
        if s.step + 1 == s.steps_per_epoch {
            bar.println(format!(
                "epoch {:>3}: mean loss {:.4}",
                s.epoch + 1,
                running / seen as f64
            ));
        }
    })
    .map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let test_emb = model.forward(&test_x).0;
    let (after_r1, after_map) = metrics(&test_emb, EMBED)?;
    let after_auc = auc(Some(&model))?;
    println!("trained:   recall@1 {after_r1:.4}, mAP {after_map:.4} ({seconds:.1} s)");
    if let Some(after) = after_auc {
        println!("trained:   anomaly ROC AUC {after:.4}");
    }
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let curve = args.out.join(format!("loss_{}.png", loss.name()));
    let scatter = args.out.join(format!("pca_{}.png", loss.name()));
    plots::loss_curve(&curve, &losses, loss.name()).map_err(|e| format!("{e}"))?;
    plots::pca_scatter(&scatter, &test_emb, &test_y).map_err(|e| format!("{e}"))?;
    println!("wrote {} and {}", curve.display(), scatter.display());
    let json = serde_json::json!({
        "loss": loss.name(),
        "seed": args.seed,
        "epochs": args.epochs,
        "queue": args.queue,
        "steps": losses.len(),
        "seconds": seconds,
        "adapter": gpu.adapter().name,
        "first_loss": losses.first(),
        "last_epoch_loss": losses.iter().rev().take(train.len().div_ceil(args.batch))
            .sum::<f64>() / train.len().div_ceil(args.batch) as f64,
        "raw_recall_at_1": raw_r1,
        "recall_at_1_before": before_r1,
        "map_before": before_map,
        "recall_at_1_after": after_r1,
        "map_after": after_map,
        "holdout": args.holdout,
        "auc_raw": raw_auc,
        "auc_before": before_auc,
        "auc_after": after_auc,
        "loss_png": path_str(&curve),
        "pca_png": path_str(&scatter),
    });
    println!("{json}");
    Ok(())
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The two pictures (plotters, bitmap backend). Text needs a font: DejaVu Sans is used where
/// the system has it, and the pictures are drawn without labels otherwise.
mod plots {
    use std::error::Error;
    use std::path::Path;

    use plotters::prelude::*;

    fn font() -> bool {
        use std::sync::OnceLock;
        static FOUND: OnceLock<bool> = OnceLock::new();
        *FOUND.get_or_init(|| {
            let paths = [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf",
                "/Library/Fonts/Arial.ttf",
                "C:\\Windows\\Fonts\\arial.ttf",
            ];
            paths.iter().any(|p| {
                std::fs::read(p).ok().is_some_and(|bytes| {
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
                })
            })
        })
    }

    pub fn loss_curve(path: &Path, losses: &[f64], name: &str) -> Result<(), Box<dyn Error>> {
        let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = losses.iter().cloned().fold(0.0, f64::max) * 1.05;
        let mut b = ChartBuilder::on(&root);
        b.margin(15);
        if font() {
            b.caption(format!("{name} loss per step (GPU)"), ("sans-serif", 22))
                .x_label_area_size(40)
                .y_label_area_size(60);
        }
        let mut chart = b.build_cartesian_2d(0..losses.len(), 0.0..top.max(1e-9))?;
        let mut mesh = chart.configure_mesh();
        if font() {
            mesh.x_desc("step").y_desc("loss");
        } else {
            mesh.disable_x_mesh().disable_y_mesh();
        }
        mesh.draw()?;
        chart.draw_series(LineSeries::new(
            losses.iter().enumerate().map(|(i, &l)| (i, l)),
            &BLUE,
        ))?;
        root.present()?;
        Ok(())
    }

    /// The first two principal components of `emb` (rows of 8), by power iteration.
    fn pca2(emb: &[f32], dim: usize) -> Vec<(f64, f64)> {
        let n = emb.len() / dim;
        let mut mean = vec![0.0f64; dim];
        for r in emb.chunks_exact(dim) {
            mean.iter_mut()
                .zip(r)
                .for_each(|(m, &v)| *m += f64::from(v) / n as f64);
        }
        let centred: Vec<Vec<f64>> = emb
            .chunks_exact(dim)
            .map(|r| {
                r.iter()
                    .zip(&mean)
                    .map(|(&v, m)| f64::from(v) - m)
                    .collect()
            })
            .collect();
        let mut cov = vec![vec![0.0f64; dim]; dim];
        for r in &centred {
            for i in 0..dim {
                for j in 0..dim {
                    cov[i][j] += r[i] * r[j];
                }
            }
        }
        let mut axes: Vec<Vec<f64>> = Vec::new();
        for k in 0..2 {
            let mut v: Vec<f64> = (0..dim).map(|i| if i == k { 1.0 } else { 0.5 }).collect();
            for _ in 0..200 {
                let mut w: Vec<f64> = (0..dim)
                    .map(|i| (0..dim).map(|j| cov[i][j] * v[j]).sum())
                    .collect();
                for a in &axes {
                    let d: f64 = w.iter().zip(a).map(|(x, y)| x * y).sum();
                    w.iter_mut().zip(a).for_each(|(x, y)| *x -= d * y);
                }
                let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
                v = w.iter().map(|x| x / norm).collect();
            }
            axes.push(v);
        }
        centred
            .iter()
            .map(|r| {
                let p = |a: &Vec<f64>| r.iter().zip(a).map(|(x, y)| x * y).sum::<f64>();
                (p(&axes[0]), p(&axes[1]))
            })
            .collect()
    }

    pub fn pca_scatter(path: &Path, emb: &[f32], y: &[u32]) -> Result<(), Box<dyn Error>> {
        let pts = pca2(emb, super::EMBED);
        let (mut lo, mut hi) = ((f64::MAX, f64::MAX), (f64::MIN, f64::MIN));
        for &(a, b) in &pts {
            lo = (lo.0.min(a), lo.1.min(b));
            hi = (hi.0.max(a), hi.1.max(b));
        }
        let pad = |l: f64, h: f64| (l - 0.05 * (h - l + 1e-9), h + 0.05 * (h - l + 1e-9));
        let (x0, x1) = pad(lo.0, hi.0);
        let (y0, y1) = pad(lo.1, hi.1);
        let root = BitMapBackend::new(path, (700, 700)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut b = ChartBuilder::on(&root);
        b.margin(15);
        if font() {
            b.caption(
                "test embeddings, first two principal components",
                ("sans-serif", 20),
            )
            .x_label_area_size(35)
            .y_label_area_size(45);
        }
        let mut chart = b.build_cartesian_2d(x0..x1, y0..y1)?;
        let mut mesh = chart.configure_mesh();
        if !font() {
            mesh.disable_x_mesh().disable_y_mesh();
        }
        mesh.draw()?;
        for class in 0..10u32 {
            let colour = Palette99::pick(class as usize).to_rgba();
            chart
                .draw_series(
                    pts.iter()
                        .zip(y)
                        .filter(|(_, &c)| c == class)
                        .map(|(&(a, b), _)| Circle::new((a, b), 3, colour.filled())),
                )?
                .label(format!("{class}"))
                .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
        }
        if font() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    }
}

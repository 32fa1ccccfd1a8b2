//! The training demo written in burn: the same MLP (64 → 64 → 8, ReLU) as burn `Linear`
//! layers with burn's Adam, trained on the UCI digits with `metric_loss_burn::contrastive` or
//! `metric_loss_burn::softmax` (NT-Xent, the digit classes as labels). The embeddings, the
//! loss and its gradient stay on the device; the loss is read once per epoch.
//!
//! In the same run it also trains the host-API demo (`examples/train` of metric-loss: the
//! same weights, batch order and learning-rate schedule, forward and backward on the CPU,
//! the loss on the GPU through host slices), so the two per-step times are measured side by
//! side. It reports recall@1 and mAP on the 360 held-out images before and after training.
//!
//! Run: `cargo run -p metric-loss-burn --release --example burn_train -- [--loss contrastive|ntxent]
//! [--epochs N] [--seed S]`. The last line of stdout is one JSON object.

#[path = "../../examples/train/demo.rs"]
#[allow(dead_code)]
mod demo;

use std::time::Instant;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::{Parser, ValueEnum};
use demo::{permutation, retrieval, split, Digits, LossKind, Mlp, Settings, EMBED, INPUT};
use metric_loss::testing::Rng;
use metric_loss::{Contrastive, Gpu, Softmax};

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    Contrastive,
    Ntxent,
}

#[derive(Parser)]
#[command(about = "Train the digits embedding in burn with metric-loss-burn's losses")]
struct Args {
    /// contrastive (margin 2) or ntxent (τ 0.1).
    #[arg(long, value_enum, default_value = "contrastive")]
    loss: LossArg,
    /// Passes over the 1437 training images.
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// Seed of the weights and the batch order (the split is fixed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const BATCH: usize = 128;
const LR: f64 = 3e-3;
const MARGIN: f32 = 2.0;

/// The demo's MLP as burn modules.
#[derive(Module, Debug)]
struct Model {
    hidden: Linear,
    output: Linear,
}

impl Model {
    /// The host demo's initial weights (He-normal, zero biases) for the same seed.
    fn from_host(mlp: &Mlp, device: &Device) -> Self {
        let p = &mlp.params;
        let (w1, rest) = p.split_at(INPUT * demo::HIDDEN);
        let (b1, rest) = rest.split_at(demo::HIDDEN);
        let (w2, b2) = rest.split_at(demo::HIDDEN * EMBED);
        let linear = |w: &[f32], b: &[f32], fan_in: usize, fan_out: usize| {
            let mut l = LinearConfig::new(fan_in, fan_out).init(device);
            let weight = TensorData::new(w.to_vec(), [fan_in, fan_out]);
            l.weight = Param::from_tensor(Tensor::from_data(weight, device));
            let bias = TensorData::new(b.to_vec(), [fan_out]);
            l.bias = Some(Param::from_tensor(Tensor::from_data(bias, device)));
            l
        };
        Model {
            hidden: linear(w1, b1, INPUT, demo::HIDDEN),
            output: linear(w2, b2, demo::HIDDEN, EMBED),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.output.forward(relu(self.hidden.forward(x)))
    }
}

/// The training rows and labels on the device, uploaded once.
struct TrainSet {
    x: Tensor<2>,
    y: Tensor<1, Int>,
}

impl TrainSet {
    fn upload(x: &[f32], y: &[u32], device: &Device) -> Self {
        let labels: Vec<i32> = y.iter().map(|&c| c as i32).collect();
        TrainSet {
            x: Tensor::from_data(TensorData::new(x.to_vec(), [y.len(), INPUT]), device),
            y: Tensor::from_data(TensorData::new(labels, [y.len()]), device),
        }
    }
}

/// Trains `model` in burn with the host demo's batch order and schedule; `loss: None` puts a
/// trivial loss (mean of squares) in the metric loss's place. Returns the model, each
/// epoch's mean loss and the seconds of training (the losses are read once, at the end).
fn train_burn(
    mut model: Model,
    set: &TrainSet,
    loss: Option<LossKind>,
    epochs: usize,
    seed: u64,
    device: &Device,
) -> Result<(Model, Vec<f64>, f64), String> {
    let rows = set.y.dims()[0];
    let ad = device.clone().autodiff();
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let contrastive = Contrastive::default()
        .margin(MARGIN)
        .map_err(|e| e.to_string())?;
    let ntxent = Softmax::ntxent()
        .temperature(0.1)
        .map_err(|e| e.to_string())?;
    let per_epoch = rows.div_ceil(BATCH);
    let total = (per_epoch * epochs) as f64;
    let mut rng = Rng::new(seed ^ 0x5EED);
    let (mut sums, mut step) = (Vec::new(), 0usize);
    let start = Instant::now();
    for _ in 0..epochs {
        let order = permutation(rows, &mut rng);
        let mut sum = Tensor::<1>::zeros([1], device);
        for chunk in order.chunks(BATCH) {
            let idx: Vec<i32> = chunk.iter().map(|&i| i as i32).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [chunk.len()]), &ad);
            let x = set.x.clone().select(0, idx.clone());
            let y = set.y.clone().select(0, idx);
            let emb = model.forward(x);
            let loss = match loss {
                Some(LossKind::Contrastive) => metric_loss_burn::contrastive(emb, y, &contrastive),
                Some(_) => metric_loss_burn::softmax(emb, y, &ntxent),
                None => Ok(emb.powi_scalar(2).mean()),
            }
            .map_err(|e| e.to_string())?;
            sum = sum + loss.clone().detach().inner();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            // The host demo's cosine decay of the learning rate.
            let t = step as f64 / total;
            let lr = LR * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
            model = optim.step(lr, model, grads);
            step += 1;
        }
        sums.push(sum);
    }
    // The one wait: reading the losses back (this finishes the queued work).
    let losses = sums
        .into_iter()
        .map(|s| f64::from(s.into_scalar::<f32>()) / per_epoch as f64)
        .collect();
    Ok((model, losses, start.elapsed().as_secs_f64()))
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.epochs == 0 {
        return Err("--epochs must be >= 1".into());
    }
    let kind = match args.loss {
        LossArg::Contrastive => LossKind::Contrastive,
        LossArg::Ntxent => LossKind::Ntxent,
    };
    let data = Digits::load()?;
    let (train, test) = split(data.len());
    let (test_x, test_y) = data.rows(&test);
    let host_model = Mlp::new(&mut Rng::new(args.seed));
    // The host-API demo: forward and backward on the CPU, the loss on its own wgpu device.
    let gpu = Gpu::new().map_err(|e| e.to_string())?;
    let retrieval =
        |e: &[f32], dim, y: &[u32]| retrieval(&gpu, e, dim, y).map_err(|e| e.to_string());
    let raw_r1 = retrieval(&test_x, INPUT, &test_y)?.0;
    let settings = Settings {
        loss: kind,
        epochs: args.epochs,
        batch: BATCH,
        lr: LR as f32,
        seed: args.seed,
        margin: MARGIN,
        queue: 0,
    };
    let mut host = host_model.clone();
    let start = Instant::now();
    let host_losses = demo::train(&gpu, &data, &train, &mut host, &settings, |_| {})
        .map_err(|e| e.to_string())?;
    let host_seconds = start.elapsed().as_secs_f64();
    let (host_r1, host_map) = retrieval(&host.forward(&test_x).0, EMBED, &test_y)?;

    // burn: the same model, weights, batch order and schedule.
    let device = metric_loss_burn::init(Default::default()).map_err(|e| e.to_string())?;
    let ad = device.clone().autodiff();
    let model = Model::from_host(&host_model, &ad);
    let embed = |m: &Model| -> Vec<f32> {
        let x = Tensor::<2>::from_data(
            TensorData::new(test_x.clone(), [test_y.len(), INPUT]),
            &device,
        );
        let e = m.valid().forward(x);
        e.into_data().try_to_vec::<f32>().expect("f32 embeddings")
    };
    let (before_r1, before_map) = retrieval(&embed(&model), EMBED, &test_y)?;
    let (train_x, train_y) = data.rows(&train);
    let set = TrainSet::upload(&train_x, &train_y, &ad);
    let per_epoch = train.len().div_ceil(BATCH);
    let (model, epoch_losses, burn_seconds) =
        train_burn(model, &set, Some(kind), args.epochs, args.seed, &device)?;
    // burn's own step with a trivial loss (mean of squares) in place of the metric loss: what
    // burn costs per step on this device before any loss.
    let floor = Model::from_host(&host_model, &ad);
    let (_, _, floor_seconds) = train_burn(floor, &set, None, args.epochs, args.seed, &device)?;
    let (after_r1, after_map) = retrieval(&embed(&model), EMBED, &test_y)?;

    let steps = per_epoch * args.epochs;
    let host_epoch = host_losses[host_losses.len() - per_epoch..]
        .iter()
        .sum::<f64>()
        / per_epoch as f64;
    println!(
        "{} on {}; raw pixels recall@1 {raw_r1:.4}",
        kind.name(),
        gpu.adapter().name
    );
    println!("untrained:        recall@1 {before_r1:.4}, mAP {before_map:.4}");
    println!(
        "burn:             recall@1 {after_r1:.4}, mAP {after_map:.4}, {:.2} ms/step",
        1e3 * burn_seconds / steps as f64
    );
    println!(
        "burn, a trivial loss in its place: {:.2} ms/step",
        1e3 * floor_seconds / steps as f64
    );
    println!(
        "host-API demo:    recall@1 {host_r1:.4}, mAP {host_map:.4}, {:.2} ms/step",
        1e3 * host_seconds / steps as f64
    );
    let json = serde_json::json!({
        "loss": kind.name(),
        "seed": args.seed,
        "epochs": args.epochs,
        "steps": steps,
        "adapter": gpu.adapter().name,
        "raw_recall_at_1": raw_r1,
        "recall_at_1_before": before_r1,
        "map_before": before_map,
        "burn": {
            "recall_at_1": after_r1,
            "map": after_map,
            "last_epoch_loss": epoch_losses.last(),
            "seconds": burn_seconds,
            "ms_per_step": 1e3 * burn_seconds / steps as f64,
            "ms_per_step_with_a_trivial_loss": 1e3 * floor_seconds / steps as f64,
        },
        "host_api": {
            "recall_at_1": host_r1,
            "map": host_map,
            "last_epoch_loss": host_epoch,
            "seconds": host_seconds,
            "ms_per_step": 1e3 * host_seconds / steps as f64,
        },
    });
    println!("{json}");
    Ok(())
}

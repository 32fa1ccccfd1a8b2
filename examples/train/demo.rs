//! The training demo's core, shared with its test (tests/train_demo.rs includes this file):
//! the UCI digits, a fixed split, a small MLP with Adam, the retrieval metrics, and the
//! training loop whose loss and gradient come from the GPU each step.

use metric_loss::measure::{roc_auc, Knn};
use metric_loss::testing::Rng;
use metric_loss::{
    BatchLoss, Contrastive, Embeddings, Error, Gpu, Grads, Labels, Mining, ReferenceGrad,
    ReferenceSet, Softmax, Triplet,
};

/// Pixels per image (8×8) and the embedding size.
pub const INPUT: usize = 64;
pub const HIDDEN: usize = 64;
pub const EMBED: usize = 8;
/// Held-out images.
pub const TEST: usize = 360;
/// The split's seed: fixed, whatever `--seed` is.
const SPLIT_SEED: u64 = 20_261_128;

/// Images (scaled to [0, 1]) and their classes 0..9.
pub struct Digits {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
}

impl Digits {
    /// Parses the shipped CSV: 64 pixels (0..16) and the label on each line.
    pub fn parse(csv: &str) -> Result<Self, String> {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (n, line) in csv
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Vec<u32> = line
                .split(',')
                .map(|f| f.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("line {}: {e}", n + 1))?;
            if v.len() != INPUT + 1 || v[INPUT] > 9 {
                return Err(format!(
                    "line {}: expected 64 pixels and a label 0..9",
                    n + 1
                ));
            }
            x.extend(v[..INPUT].iter().map(|&p| p as f32 / 16.0));
            y.push(v[INPUT]);
        }
        Ok(Self { x, y })
    }

    /// The shipped data (data/digits.csv, built in: this file is shared with
    /// metric-loss-burn's example, whose crate root is elsewhere).
    pub fn load() -> Result<Self, String> {
        Self::parse(include_str!("../../data/digits.csv"))
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Rows `idx` as (pixels, labels).
    pub fn rows(&self, idx: &[usize]) -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::with_capacity(idx.len() * INPUT);
        for &i in idx {
            x.extend_from_slice(&self.x[i * INPUT..(i + 1) * INPUT]);
        }
        (x, idx.iter().map(|&i| self.y[i]).collect())
    }
}

/// A seeded permutation of 0..n (Fisher–Yates).
pub fn permutation(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.below(i as u64 + 1) as usize);
    }
    p
}

/// The fixed split: (train, test) indices, test = the first 360 of a permutation drawn with
/// a fixed seed.
pub fn split(n: usize) -> (Vec<usize>, Vec<usize>) {
    let p = permutation(n, &mut Rng::new(SPLIT_SEED));
    let (test, train) = p.split_at(TEST.min(n));
    (train.to_vec(), test.to_vec())
}

/// 64 → 64 (ReLU) → 8, row-major weights (in × out).
#[derive(Clone)]
pub struct Mlp {
    pub params: Vec<f32>,
}

const W1: usize = 0;
const B1: usize = W1 + INPUT * HIDDEN;
const W2: usize = B1 + HIDDEN;
const B2: usize = W2 + HIDDEN * EMBED;
const PARAMS: usize = B2 + EMBED;

/// What the backward pass needs from the forward pass.
pub struct Cache {
    h: Vec<f32>,
}

impl Mlp {
    /// He-initialised weights, zero biases.
    pub fn new(rng: &mut Rng) -> Self {
        let mut params = vec![0.0f32; PARAMS];
        let s1 = (2.0 / INPUT as f64).sqrt();
        let s2 = (2.0 / HIDDEN as f64).sqrt();
        for w in &mut params[W1..B1] {
            *w = (rng.normal() * s1) as f32;
        }
        for w in &mut params[W2..B2] {
            *w = (rng.normal() * s2) as f32;
        }
        Self { params }
    }

    /// Embeddings of `rows` images (rows × 64 → rows × 8).
    pub fn forward(&self, x: &[f32]) -> (Vec<f32>, Cache) {
        let p = &self.params;
        let rows = x.len() / INPUT;
        let mut h = vec![0.0f32; rows * HIDDEN];
        let mut out = vec![0.0f32; rows * EMBED];
        for r in 0..rows {
            let xr = &x[r * INPUT..(r + 1) * INPUT];
            let hr = &mut h[r * HIDDEN..(r + 1) * HIDDEN];
            hr.copy_from_slice(&p[B1..W2]);
            for (i, &xi) in xr.iter().enumerate() {
                if xi != 0.0 {
                    let w = &p[W1 + i * HIDDEN..W1 + (i + 1) * HIDDEN];
                    hr.iter_mut().zip(w).for_each(|(a, b)| *a += xi * b);
                }
            }
            hr.iter_mut().for_each(|v| *v = v.max(0.0));
            let or = &mut out[r * EMBED..(r + 1) * EMBED];
            or.copy_from_slice(&p[B2..]);
            for (j, &hj) in hr.iter().enumerate() {
                let w = &p[W2 + j * EMBED..W2 + (j + 1) * EMBED];
                or.iter_mut().zip(w).for_each(|(a, b)| *a += hj * b);
            }
        }
        (out, Cache { h })
    }

    /// dLoss/dparams from dLoss/dembeddings.
    pub fn backward(&self, x: &[f32], cache: &Cache, dout: &[f32]) -> Vec<f32> {
        let p = &self.params;
        let rows = x.len() / INPUT;
        let mut g = vec![0.0f32; PARAMS];
        let mut dh = vec![0.0f32; HIDDEN];
        for r in 0..rows {
            let hr = &cache.h[r * HIDDEN..(r + 1) * HIDDEN];
            let dr = &dout[r * EMBED..(r + 1) * EMBED];
            for (j, &hj) in hr.iter().enumerate() {
                let w = &p[W2 + j * EMBED..W2 + (j + 1) * EMBED];
                let gw = &mut g[W2 + j * EMBED..W2 + (j + 1) * EMBED];
                gw.iter_mut().zip(dr).for_each(|(a, d)| *a += hj * d);
                // ReLU: no gradient where the unit was off.
                dh[j] = if hj > 0.0 {
                    w.iter().zip(dr).map(|(a, b)| a * b).sum()
                } else {
                    0.0
                };
            }
            g[B2..].iter_mut().zip(dr).for_each(|(a, d)| *a += d);
            let xr = &x[r * INPUT..(r + 1) * INPUT];
            for (i, &xi) in xr.iter().enumerate() {
                if xi != 0.0 {
                    let gw = &mut g[W1 + i * HIDDEN..W1 + (i + 1) * HIDDEN];
                    gw.iter_mut().zip(&dh).for_each(|(a, d)| *a += xi * d);
                }
            }
            g[B1..W2].iter_mut().zip(&dh).for_each(|(a, d)| *a += d);
        }
        g
    }
}

/// Adam (Kingma & Ba) with the usual defaults.
pub struct Adam {
    lr: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    pub fn new(lr: f32, n: usize) -> Self {
        Self {
            lr,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// One step at `scale` × the learning rate.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32], scale: f32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let lr = self.lr * scale;
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
        }
    }
}

/// Recall@1 (the share of rows whose nearest other row has the same class) and mean average
/// precision (each row a query against all the others, ranked by Euclidean distance, ties
/// to the lower row), from the exact k-NN of every row against the others on the GPU.
pub fn retrieval(gpu: &Gpu, e: &[f32], dim: usize, y: &[u32]) -> Result<(f64, f64), Error> {
    let n = y.len();
    let x = Embeddings::new(e, n, dim)?;
    let nn = Knn::new(n - 1).exclude_self(true).search(gpu, &x, &x)?;
    let (mut hits, mut ap_sum) = (0usize, 0.0f64);
    for i in 0..n {
        let order = nn.row(i).0;
        hits += usize::from(y[order[0] as usize] == y[i]);
        let (mut found, mut ap) = (0usize, 0.0f64);
        for (rank, &j) in order.iter().enumerate() {
            if y[j as usize] == y[i] {
                found += 1;
                ap += found as f64 / (rank + 1) as f64;
            }
        }
        if found > 0 {
            ap_sum += ap / found as f64;
        }
    }
    Ok((hits as f64 / n as f64, ap_sum / n as f64))
}

/// The ROC AUC of anomaly scores: each of `queries` (rows of `dim`) scored by its distance
/// to the `k`-th nearest of the `normal` rows on the GPU, against `anomalous` (one flag a
/// query).
pub fn anomaly_auc(
    gpu: &Gpu,
    queries: &[f32],
    normal: &[f32],
    dim: usize,
    k: usize,
    anomalous: &[bool],
) -> Result<f64, Error> {
    let q = Embeddings::new(queries, queries.len() / dim, dim)?;
    let r = Embeddings::new(normal, normal.len() / dim, dim)?;
    let scores = Knn::new(k).search(gpu, &q, &r)?.kth_distances();
    roc_auc(&scores, anomalous)
}

/// The losses the demo trains with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    Contrastive,
    Triplet,
    Ntxent,
}

impl LossKind {
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Contrastive => "contrastive",
            LossKind::Triplet => "triplet",
            LossKind::Ntxent => "ntxent",
        }
    }

    /// Loss and dLoss/dembeddings of one batch, on the GPU; with a non-empty `queue` of past
    /// embeddings and their classes (contrastive, NT-Xent), the batch's rows are compared
    /// with themselves followed by the queue, detached (a MoCo-style memory of negatives and
    /// positives).
    pub fn step(
        self,
        gpu: &Gpu,
        emb: &[f32],
        labels: &[u32],
        margin: f32,
        queue: &Queue,
    ) -> Result<(f64, Vec<f32>), metric_loss::Error> {
        let ids: Vec<i64> = labels.iter().map(|&c| i64::from(c)).collect();
        let l = Labels::new(&ids);
        let x = Embeddings::new(emb, labels.len(), EMBED)?;
        if !queue.labels.is_empty() && self != LossKind::Triplet {
            return self.step_with_queue(gpu, &x, &ids, margin, queue);
        }
        match self {
            LossKind::Contrastive => {
                loss_and_grad(&Contrastive::default().margin(margin)?, gpu, &x, &l)
            }
            LossKind::Triplet => {
                let loss = Triplet::default().margin(0.5)?.mining(Mining::Semihard);
                loss_and_grad(&loss, gpu, &x, &l)
            }
            LossKind::Ntxent => loss_and_grad(&Softmax::ntxent().temperature(0.1)?, gpu, &x, &l),
        }
    }
}

impl LossKind {
    /// [`LossKind::step`] against the batch followed by the queue: the queries' gradient
    /// plus the batch rows' share of the references' (the queue's is dropped: detached).
    fn step_with_queue(
        self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        ids: &[i64],
        margin: f32,
        queue: &Queue,
    ) -> Result<(f64, Vec<f32>), metric_loss::Error> {
        let n = ids.len();
        let keys: Vec<f32> = [&x.data()[..], &queue.rows].concat();
        let r = Embeddings::named("keys", &keys, n + queue.labels.len(), EMBED)?;
        let set = ReferenceSet::new(&r, ReferenceGrad::Returned).with_queries_at(0);
        let all: Vec<i64> = ids
            .iter()
            .copied()
            .chain(ids.iter().copied())
            .chain(queue.labels.iter().map(|&c| i64::from(c)))
            .collect();
        let l = Labels::new(&all);
        let mut out = match self {
            LossKind::Contrastive => {
                let out = Contrastive::default().margin(margin)?.against(
                    gpu,
                    x,
                    &set,
                    &l,
                    Grads::Compute,
                )?;
                (out.loss, out.grads)
            }
            _ => {
                let out = Softmax::ntxent().temperature(0.1)?.against(
                    gpu,
                    x,
                    &set,
                    &l,
                    Grads::Compute,
                )?;
                (out.loss, out.grads)
            }
        };
        let reference = out.1.swap_remove(1);
        let mut grad = out.1.swap_remove(0).into_values();
        for (g, r) in grad.iter_mut().zip(reference.values()) {
            *g += r;
        }
        Ok((out.0, grad))
    }
}

/// A first-in, first-out queue of past embeddings and their classes, at most `capacity`.
#[derive(Default)]
pub struct Queue {
    pub capacity: usize,
    pub rows: Vec<f32>,
    pub labels: Vec<u32>,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Adds a batch's embeddings (their values: no gradient flows into the queue), dropping
    /// the oldest beyond the capacity.
    pub fn push(&mut self, emb: &[f32], labels: &[u32]) {
        if self.capacity == 0 {
            return;
        }
        self.rows.extend_from_slice(emb);
        self.labels.extend_from_slice(labels);
        let extra = self.labels.len().saturating_sub(self.capacity);
        self.rows.drain(..extra * EMBED);
        self.labels.drain(..extra);
    }
}

/// (loss, dL/dX) of any family's batch call.
fn loss_and_grad<L: BatchLoss>(
    loss: &L,
    gpu: &Gpu,
    x: &Embeddings<'_>,
    labels: &Labels,
) -> Result<(f64, Vec<f32>), metric_loss::Error> {
    let mut out = loss.batch(gpu, x, labels, Grads::Compute)?;
    Ok((out.loss, out.grads.swap_remove(0).into_values()))
}

/// Training settings.
pub struct Settings {
    pub loss: LossKind,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    /// Contrastive: the margin.
    pub margin: f32,
    /// Contrastive, NT-Xent: rows of the queue of past embeddings (0: none).
    pub queue: usize,
}

/// One epoch's report to the caller (progress bars, curves).
pub struct StepInfo {
    pub epoch: usize,
    pub step: usize,
    pub steps_per_epoch: usize,
    pub loss: f64,
}

/// Trains `model` on rows `train` of `data`; `on_step` sees every step's loss.
pub fn train(
    gpu: &Gpu,
    data: &Digits,
    train: &[usize],
    model: &mut Mlp,
    s: &Settings,
    mut on_step: impl FnMut(&StepInfo),
) -> Result<Vec<f64>, metric_loss::Error> {
    let mut rng = Rng::new(s.seed ^ 0x5EED);
    let mut adam = Adam::new(s.lr, model.params.len());
    let mut losses = Vec::new();
    let per_epoch = train.len().div_ceil(s.batch);
    let total = (per_epoch * s.epochs) as f32;
    let mut queue = Queue::new(s.queue);
    for epoch in 0..s.epochs {
        let order = permutation(train.len(), &mut rng);
        for (k, chunk) in order.chunks(s.batch).enumerate() {
            let idx: Vec<usize> = chunk.iter().map(|&i| train[i]).collect();
            let (x, y) = data.rows(&idx);
            let (emb, cache) = model.forward(&x);
            let (loss, demb) = s.loss.step(gpu, &emb, &y, s.margin, &queue)?;
            queue.push(&emb, &y);
            let grad = model.backward(&x, &cache, &demb);
            // Cosine decay of the learning rate over the run.
            let t = losses.len() as f32 / total;
            adam.step(
                &mut model.params,
                &grad,
                0.5 * (1.0 + (std::f32::consts::PI * t).cos()),
            );
            losses.push(loss);
            on_step(&StepInfo {
                epoch,
                step: k,
                steps_per_epoch: per_epoch,
                loss,
            });
        }
    }
    Ok(losses)
}

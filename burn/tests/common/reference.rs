//! Each loss written with plain burn tensor ops (pairwise distances, masks, relu,
//! log-sum-exp) and differentiated by burn's autodiff: what a burn user writes today, with
//! the B×B (or B×B×B) tensors metric-loss's operations avoid.

use burn::tensor::activation::relu;
use burn::tensor::{Bool, Int, Tensor};

/// ‖a_i − b_j‖ for every (i, j), by the difference form: no Gram-matrix cancellation for
/// close rows. Distances of 0 (a row with itself) get gradient 0 through the clamp.
pub fn cdist(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let diff = a.unsqueeze_dim::<3>(1) - b.unsqueeze_dim::<3>(0);
    diff.powi_scalar(2)
        .sum_dim(2)
        .squeeze_dim::<2>(2)
        .clamp_min(1e-30)
        .sqrt()
}

/// ‖a_i − b_i‖ for each row.
pub fn row_dist(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    (a - b)
        .powi_scalar(2)
        .sum_dim(1)
        .squeeze_dim::<1>(1)
        .clamp_min(1e-30)
        .sqrt()
}

/// label_a[i] == label_b[j].
pub fn same(la: Tensor<1, Int>, lb: Tensor<1, Int>) -> Tensor<2, Bool> {
    let (n, m) = (la.dims()[0], lb.dims()[0]);
    la.reshape([n, 1])
        .expand([n, m])
        .equal(lb.reshape([1, m]).expand([n, m]))
}

fn eye(n: usize, device: &burn::tensor::Device) -> Tensor<2, Bool> {
    Tensor::<2>::eye(n, device).equal_elem(1.0)
}

/// Rows divided by their norms.
pub fn normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// log Σ_j exp(s_ij) along dim 1, [n, 1], stable.
pub fn logsumexp(s: Tensor<2>) -> Tensor<2> {
    let max = s.clone().max_dim(1).detach();
    (s - max.clone()).exp().sum_dim(1).log() + max
}

/// Contrastive (defaults: euclidean, squared hinge, mean) over the batch's pairs i < j.
pub fn contrastive(x: Tensor<2>, labels: Tensor<1, Int>, pos: f64, neg: f64) -> Tensor<1> {
    let b = x.dims()[0];
    let d = cdist(x.clone(), x);
    let terms = contrastive_terms(d, same(labels.clone(), labels), pos, neg);
    let upper = Tensor::<2>::ones([b, b], &terms.device()).triu(1);
    (terms * upper).sum() / ((b * (b - 1) / 2) as f64)
}

fn contrastive_terms(d: Tensor<2>, same: Tensor<2, Bool>, pos: f64, neg: f64) -> Tensor<2> {
    let similar = relu(d.clone() - pos).powi_scalar(2);
    let dissimilar = relu(d.neg() + neg).powi_scalar(2);
    dissimilar.mask_where(same, similar)
}

/// Contrastive over matched rows, `similar[i]` non-zero for a similar pair.
pub fn contrastive_pairs(a: Tensor<2>, b: Tensor<2>, similar: Tensor<1, Int>) -> Tensor<1> {
    let d = row_dist(a, b);
    let sim = relu(d.clone()).powi_scalar(2);
    let dis = relu(d.neg() + 1.0).powi_scalar(2);
    dis.mask_where(similar.not_equal_elem(0), sim).mean()
}

/// Contrastive of queries against reference rows: every (query, reference) pair.
pub fn contrastive_against(
    q: Tensor<2>,
    lq: Tensor<1, Int>,
    r: Tensor<2>,
    lr: Tensor<1, Int>,
) -> Tensor<1> {
    contrastive_terms(cdist(q, r), same(lq, lr), 0.0, 1.0).mean()
}

/// NT-Xent (PML's NTXentLoss) of a labelled batch at temperature `tau`.
pub fn nt_xent(x: Tensor<2>, labels: Tensor<1, Int>, tau: f64) -> Tensor<1> {
    let n = x.dims()[0];
    let device = x.device();
    let xn = normalize(x);
    let z = xn.clone().matmul(xn.transpose()) / tau;
    let same = same(labels.clone(), labels);
    let positive = same.clone().bool_and(eye(n, &device).bool_not());
    nt_xent_terms(z, positive, same.bool_not())
}

/// NT-Xent's mean over the positive pairs (a, p) of
/// log(exp(z_ap) + Σ over a's negatives n of exp(z_an)) − z_ap, shifted by each row's max.
fn nt_xent_terms(z: Tensor<2>, positive: Tensor<2, Bool>, negative: Tensor<2, Bool>) -> Tensor<1> {
    let max = z.clone().max_dim(1).detach();
    let shifted = z - max;
    // Σ over negatives of exp(z_an − max_a), [n, 1].
    let neg_sum = shifted
        .clone()
        .exp()
        .mask_fill(negative.bool_not(), 0.0)
        .sum_dim(1);
    let terms = (shifted.clone().exp() + neg_sum).log() - shifted;
    let count = positive.clone().float().sum();
    terms.mask_fill(positive.bool_not(), 0.0).sum() / count
}

/// SupCon (Khosla et al., L_out) of a labelled batch.
pub fn supcon(x: Tensor<2>, labels: Tensor<1, Int>, tau: f64) -> Tensor<1> {
    let n = x.dims()[0];
    let device = x.device();
    let xn = normalize(x);
    let z = xn.clone().matmul(xn.transpose()) / tau;
    let diag = eye(n, &device);
    let positive = same(labels.clone(), labels).bool_and(diag.clone().bool_not());
    // log Σ_{k ≠ a} exp(z_ak): the diagonal masked to a large negative.
    let lse = logsumexp(z.clone().mask_fill(diag, -1e30));
    let log_prob = z - lse;
    let per_anchor = positive.clone().float().sum_dim(1);
    let has = per_anchor.clone().greater_elem(0.0).float();
    let mean_pos =
        log_prob.mask_fill(positive.bool_not(), 0.0).sum_dim(1) / per_anchor.clamp_min(1.0);
    (mean_pos * has.clone()).sum().neg() / has.sum()
}

/// CLIP: (CE(S, I) + CE(Sᵀ, I)) / 2, S = cos(a_i, b_j)/τ.
pub fn clip(a: Tensor<2>, b: Tensor<2>, tau: f64) -> Tensor<1> {
    let s = normalize(a).matmul(normalize(b).transpose()) / tau;
    (cross_entropy_diag(s.clone()) + cross_entropy_diag(s.transpose())) / 2.0
}

/// InfoNCE: mean over anchors i of log Σ_j exp(S_ij) − S_ii, S = scale·cos(a_i, k_j);
/// `masked[i][j]` leaves key j out of anchor i's sum (false negatives).
pub fn infonce(
    a: Tensor<2>,
    keys: Tensor<2>,
    tau: f64,
    masked: Option<Tensor<2, Bool>>,
) -> Tensor<1> {
    let s = normalize(a).matmul(normalize(keys).transpose()) / tau;
    let s = match masked {
        Some(m) => s.mask_fill(m, -1e30),
        None => s,
    };
    cross_entropy_diag(s)
}

/// mean_i (log Σ_j exp(s_ij) − s_ii) over the rows of s ([n, m], m ≥ n).
fn cross_entropy_diag(s: Tensor<2>) -> Tensor<1> {
    let n = s.dims()[0];
    let m = s.dims()[1];
    let diag = Tensor::<2>::eye(n, &s.device())
        .pad((0, m - n, 0, 0), 0.0)
        .equal_elem(1.0);
    let target = s.clone().mask_fill(diag.bool_not(), 0.0).sum_dim(1);
    (logsumexp(s) - target).mean()
}

/// NT-Xent of queries against reference rows (no query among them): each (query,
/// same-label reference) pair against the query's other-label references.
pub fn nt_xent_against(
    q: Tensor<2>,
    lq: Tensor<1, Int>,
    r: Tensor<2>,
    lr: Tensor<1, Int>,
    tau: f64,
) -> Tensor<1> {
    let z = normalize(q).matmul(normalize(r).transpose()) / tau;
    let positive = same(lq, lr);
    nt_xent_terms(z, positive.clone(), positive.bool_not())
}

/// Batch-all triplets (margin m), mean over the active ones.
pub fn triplet_all(x: Tensor<2>, labels: Tensor<1, Int>, m: f64) -> Tensor<1> {
    let n = x.dims()[0];
    let device = x.device();
    let d = cdist(x.clone(), x);
    let same = same(labels.clone(), labels);
    let positive = same.clone().bool_and(eye(n, &device).bool_not());
    let negative = same.bool_not();
    // t[a, p, k] = d(a, p) − d(a, k) + m.
    let t = d.clone().unsqueeze_dim::<3>(2) - d.unsqueeze_dim::<3>(1) + m;
    let valid = positive
        .float()
        .unsqueeze_dim::<3>(2)
        .mul(negative.float().unsqueeze_dim::<3>(1));
    let terms = relu(t) * valid;
    let active = terms.clone().greater_elem(0.0).float().sum().detach();
    terms.sum() / active
}

/// Batch-hard triplets (margin m), mean over the anchors with a positive and a negative.
pub fn triplet_hard(x: Tensor<2>, labels: Tensor<1, Int>, m: f64) -> Tensor<1> {
    let n = x.dims()[0];
    let device = x.device();
    let d = cdist(x.clone(), x);
    let same = same(labels.clone(), labels);
    let positive = same.clone().bool_and(eye(n, &device).bool_not());
    let negative = same.bool_not();
    let hardest_pos = d
        .clone()
        .mask_fill(positive.clone().bool_not(), -1e30)
        .max_dim(1);
    let hardest_neg = d.mask_fill(negative.clone().bool_not(), 1e30).min_dim(1);
    let has = positive.float().sum_dim(1).greater_elem(0.0).float()
        * negative.float().sum_dim(1).greater_elem(0.0).float();
    let terms = relu(hardest_pos - hardest_neg + m) * has.clone();
    terms.sum() / has.sum()
}

/// Explicit triplets (margin m), mean.
pub fn triplet_explicit(a: Tensor<2>, p: Tensor<2>, n: Tensor<2>, m: f64) -> Tensor<1> {
    relu(row_dist(a.clone(), p) - row_dist(a, n) + m).mean()
}

/// SigLIP: −(1/N) Σ_ij log σ(z_ij·(t·cos(a_i, b_j) + bias)), z = +1 where `positive`.
pub fn siglip(
    a: Tensor<2>,
    b: Tensor<2>,
    t: f64,
    bias: f64,
    positive: Tensor<2, Bool>,
) -> Tensor<1> {
    let n = a.dims()[0];
    let x = normalize(a).matmul(normalize(b).transpose()) * t + bias;
    let z = positive.float() * 2.0 - 1.0;
    burn::tensor::activation::log_sigmoid(z * x).sum().neg() / n as f64
}

/// The matched rows (i, i) of an [n, m] pair matrix, m ≥ n.
pub fn matched(n: usize, m: usize, device: &burn::tensor::Device) -> Tensor<2, Bool> {
    Tensor::<2>::eye(n, device)
        .pad((0, m - n, 0, 0), 0.0)
        .equal_elem(1.0)
}

/// log(1 + Σ_j exp(z_ij)) over the kept entries of each row (`keep`), [n, 1]: an extra zero
/// logit, the others masked to −1e30.
fn log1p_sum_exp(z: Tensor<2>, keep: Tensor<2, Bool>) -> Tensor<2> {
    let n = z.dims()[0];
    let zero = Tensor::<2>::zeros([n, 1], &z.device());
    logsumexp(Tensor::cat(
        vec![z.mask_fill(keep.bool_not(), -1e30), zero],
        1,
    ))
}

/// Multi-Similarity without the miner: mean over anchors of (1/α)·log(1 + Σ_P e^(−α(s−λ)))
/// + (1/β)·log(1 + Σ_N e^(β(s−λ))).
pub fn multi_similarity(
    x: Tensor<2>,
    labels: Tensor<1, Int>,
    a: f64,
    b: f64,
    base: f64,
) -> Tensor<1> {
    let n = x.dims()[0];
    let xn = normalize(x);
    let s = xn.clone().matmul(xn.transpose());
    let same = same(labels.clone(), labels);
    let pos = same.clone().bool_and(eye(n, &s.device()).bool_not());
    let lp = log1p_sum_exp((s.clone() - base) * (-a), pos) / a;
    let ln = log1p_sum_exp((s - base) * b, same.bool_not()) / b;
    (lp + ln).mean().reshape([1])
}

/// Circle: softplus(LSE_P u + LSE_N v) over the anchors with both, their mean; the weights
/// [·]₊ detached.
pub fn circle(x: Tensor<2>, labels: Tensor<1, Int>, m: f64, g: f64) -> Tensor<1> {
    let n = x.dims()[0];
    let xn = normalize(x);
    let s = xn.clone().matmul(xn.transpose());
    let w = s.clone().detach();
    let same = same(labels.clone(), labels);
    let pos = same.clone().bool_and(eye(n, &s.device()).bool_not());
    let neg = same.bool_not();
    let u = relu(w.clone().neg() + (1.0 + m)) * (s.clone() - (1.0 - m)) * (-g);
    let v = relu(w + m) * (s - m) * g;
    let lse = |z: Tensor<2>, keep: Tensor<2, Bool>| logsumexp(z.mask_fill(keep.bool_not(), -1e30));
    let both = pos
        .clone()
        .any_dim(1)
        .bool_and(neg.clone().any_dim(1))
        .float();
    let terms = burn::tensor::activation::softplus(lse(u, pos) + lse(v, neg), 1.0) * both.clone();
    terms.sum() / both.sum()
}

/// ArcFace (`arc`: m in radians, PML's continuation past θ = π − m) or CosFace: the mean
/// over queries of log Σ_j e^(z_ij) − z_iy, z = s·cos with the target's cosine ψ-modified.
pub fn proxy(
    x: Tensor<2>,
    classes: Tensor<1, Int>,
    w: Tensor<2>,
    (arc, m, s, k): (bool, f64, f64, usize),
) -> Tensor<1> {
    let (n, c) = (x.dims()[0], w.dims()[0] / k);
    // Each class's cosine the largest of its K sub-centres' (PML's view(-1, C, K).max(2)).
    let cos = normalize(x)
        .matmul(normalize(w).transpose())
        .reshape([n, c, k])
        .max_dim(2)
        .reshape([n, c]);
    let all = Tensor::<1, Int>::arange(0..c as i64, &cos.device());
    let own = same(classes, all);
    let psi = if arc {
        let on_arc = cos.clone().greater_equal_elem(-m.cos());
        let sin = (cos.clone().powi_scalar(2).neg() + 1.0)
            .clamp_min(0.0)
            .sqrt();
        let arc_value = cos.clone() * m.cos() - sin * m.sin();
        let beyond = cos.clone() - m * m.sin();
        beyond.mask_where(on_arc, arc_value)
    } else {
        cos.clone() - m
    };
    let z = cos.mask_where(own.clone(), psi) * s;
    let target = z.clone().mask_fill(own.bool_not(), 0.0).sum_dim(1);
    ((logsumexp(z) - target).sum() / n as f64).reshape([1])
}

//! The body of the `cpu_reference` fuzz target (`fuzz/`, cargo-fuzz), shared with the
//! corpus replay test (`tests/fuzz_corpus.rs`); the CLI's `npy_input` body uses
//! [`assert_finite`]. Nothing may panic on any input; inside the input domain every output
//! must be finite, and outside it the answer must be a typed error.

use crate::{
    Contrastive, Distance, Embeddings, Grads, Hinge, Labels, LossOutput, Mining, Reduction,
    Softmax, SoftmaxLoss, Triplet, TripletTerm,
};

/// Inside the domain: finite output, or one of the typed refusals of valid-looking input (a
/// value too large for the loss at this size, an option out of range or not applicable).
fn accept<C>(what: &str, out: crate::Result<LossOutput<C>>) {
    match out {
        Ok(out) => assert_finite(what, &out),
        Err(
            crate::Error::TooLargeForLoss { .. }
            | crate::Error::InvalidOption { .. }
            | crate::Error::OptionConflict { .. },
        ) => {}
        Err(e) => panic!("{what}: unexpected error {e}"),
    }
}

/// Panics unless the loss, every gradient and dL/dτ are finite.
pub fn assert_finite<C>(what: &str, out: &LossOutput<C>) {
    assert!(out.loss.is_finite(), "{what}: loss {}", out.loss);
    for (k, g) in out.grads.iter().enumerate() {
        if let Some(i) = g.iter().position(|v| !v.is_finite()) {
            panic!("{what}: gradient {k}[{i}] = {}", g[i]);
        }
    }
    if let Some(t) = out.grad_temperature {
        assert!(t.is_finite(), "{what}: dL/dtau {t}");
    }
}

/// Bytes → a family, options, sizes, values (raw f32 bits: NaN, infinities, huge values
/// included) and labels → the CPU reference with gradients.
pub fn cpu_reference(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(8);
    let rows = 1 + usize::from(head[0]) % 10;
    let dim = 1 + usize::from(head[1]) % 5;
    let opt = head[3];
    let mut values = Vec::with_capacity(3 * rows * dim);
    for k in 0..3 * rows * dim {
        let b = rest.get(4 * k..4 * k + 4).unwrap_or(&[0, 0, 0, 0]);
        values.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    }
    let labels: Vec<i64> = (0..rows)
        .map(|i| i64::from(*rest.get(i).unwrap_or(&0) % 4))
        .collect();
    let l = Labels::new(&labels);
    let m = f32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let (a, others) = values.split_at(rows * dim);
    let (b, c) = others.split_at(rows * dim);
    let (Ok(a), Ok(b), Ok(c)) = (
        Embeddings::named("a", a, rows, dim),
        Embeddings::named("b", b, rows, dim),
        Embeddings::named("c", c, rows, dim),
    ) else {
        return;
    };
    let distance = [
        Distance::Euclidean,
        Distance::SquaredEuclidean,
        Distance::Cosine,
    ][usize::from(opt % 3)];
    let normalize = opt & 4 != 0;
    match head[2] % 5 {
        0 | 1 => {
            let cfg = Contrastive {
                distance,
                normalize,
                hinge: if opt & 8 != 0 {
                    Hinge::Linear
                } else {
                    Hinge::Squared
                },
                reduction: [Reduction::Mean, Reduction::Sum, Reduction::MeanNonzero]
                    [usize::from(opt >> 4) % 3],
                // Set directly: the call checks it (the builder would refuse it first).
                margin: m,
                ..Default::default()
            };
            let out = if head[2] % 5 == 0 {
                cfg.batch_cpu(&a, &l, Grads::Compute)
            } else {
                let similar: Vec<bool> = labels.iter().map(|v| v % 2 == 0).collect();
                cfg.pairs_cpu(&a, &b, &similar, Grads::Compute)
            };
            accept("contrastive", out);
        }
        2 | 3 => {
            let t = Triplet {
                distance,
                normalize,
                term: TripletTerm::Margin(m),
                mining: [Mining::All, Mining::Hard, Mining::Semihard][usize::from(opt >> 4) % 3],
                ..Default::default()
            };
            let out = if head[2] % 5 == 2 {
                t.batch_cpu(&a, &l, Grads::Compute)
            } else {
                t.swap(opt & 8 != 0)
                    .explicit_cpu(&a, &b, &c, Grads::Compute)
            };
            accept("triplet", out);
        }
        _ => {
            let loss = [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon, SoftmaxLoss::Clip]
                [usize::from(opt >> 4) % 3];
            let cfg = Softmax {
                loss,
                temperature: m.abs().max(1e-4),
            };
            let out = if loss == SoftmaxLoss::Clip {
                cfg.pairs_cpu(&a, &b, Grads::Compute)
            } else {
                cfg.batch_cpu(&a, &l, Grads::Compute)
            };
            accept("softmax", out);
        }
    }
}

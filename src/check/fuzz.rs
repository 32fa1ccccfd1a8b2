//! The bodies of the fuzz targets (`fuzz/`, cargo-fuzz), shared with the corpus replay test
//! (`tests/fuzz_corpus.rs`). Neither may panic on any input; inside the input domain every
//! output must be finite, and outside it the answer must be a typed error.

use crate::loss::contrastive::{Contrastive, Distance, Hinge, Reduction};
use crate::loss::softmax::{Softmax, SoftmaxLoss};
use crate::loss::triplet::{Mining, Triplet};
use crate::loss::{Grads, LossOutput};
use crate::{npy, Embeddings, Labels};

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

fn assert_finite<C>(what: &str, out: &LossOutput<C>) {
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

/// `.npy` bytes → parse → the conversions the CLI uses → validation; a small valid matrix
/// also goes through the contrastive CPU reference.
pub fn npy_input(data: &[u8]) {
    let Ok(arr) = npy::parse(data) else { return };
    match arr.shape.len() {
        2 => {
            let Ok(v) = arr.to_f32() else { return };
            let (rows, dim) = (arr.shape[0], arr.shape[1]);
            let Ok(x) = Embeddings::new("x", &v, rows, dim) else {
                return;
            };
            if rows <= 16 && dim <= 16 {
                let labels: Vec<i64> = (0..rows as i64).map(|i| i % 3).collect();
                let out = Contrastive::default()
                    .batch_cpu(&x, &Labels::new(&labels), Grads::Compute)
                    .expect("valid input");
                assert_finite("npy contrastive", &out);
            }
        }
        1 => {
            let _ = arr.to_i64();
            let _ = arr.to_f64_any();
        }
        _ => {}
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
        Embeddings::new("a", a, rows, dim),
        Embeddings::new("b", b, rows, dim),
        Embeddings::new("c", c, rows, dim),
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
                ..Default::default()
            }
            .margin(m);
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
                ..Default::default()
            }
            .margin(m);
            let out = if head[2] % 5 == 2 {
                let mining =
                    [Mining::All, Mining::Hard, Mining::Semihard][usize::from(opt >> 4) % 3];
                t.mined_cpu(&a, &l, mining, Grads::Compute)
            } else {
                t.swap(opt & 8 != 0)
                    .explicit_cpu(&a, &b, &c, Grads::Compute)
            };
            accept("triplet", out);
        }
        _ => {
            let loss = [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon, SoftmaxLoss::Clip]
                [usize::from(opt >> 4) % 3];
            let cfg = Softmax::new(loss).temperature(m.abs().max(1e-4));
            let out = if loss == SoftmaxLoss::Clip {
                cfg.pairs_cpu(&a, &b, Grads::Compute)
            } else {
                cfg.batch_cpu(&a, &l, Grads::Compute)
            };
            accept("softmax", out);
        }
    }
}

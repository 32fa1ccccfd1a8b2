//! The body of the `npy_input` fuzz target (`fuzz/`, cargo-fuzz), shared with the corpus
//! replay test (`cli/tests/fuzz_corpus.rs`): `.npy` bytes → parse → the conversions the CLI
//! uses → validation; a small valid matrix also goes through the contrastive CPU reference.
//! Nothing may panic, and valid input gives finite output.

use metric_loss::testing::fuzz::assert_finite;
use metric_loss::{Contrastive, Embeddings, Grads, Labels};

use crate::npy;

/// Runs the target on `data`.
pub fn npy_input(data: &[u8]) {
    let Ok(arr) = npy::parse(data) else { return };
    match arr.shape.len() {
        2 => {
            let Ok(v) = arr.to_f32() else { return };
            let (rows, dim) = (arr.shape[0], arr.shape[1]);
            let Ok(x) = Embeddings::new(&v, rows, dim) else {
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

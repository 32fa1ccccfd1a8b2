//! Contrastive loss inside a training loop: a table of 64 learnable 16-D embeddings, 8
//! classes, plain SGD on the gradient the GPU returns. The loss falls as the classes separate.
//!
//! Run: `cargo run --release --example training_loop`

use metric_loss::testing::Rng;
use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels};

fn main() -> Result<(), metric_loss::Error> {
    let (rows, dim, classes) = (64usize, 16usize, 8u64);
    let mut rng = Rng::new(1);
    let mut table = rng.normals(rows * dim);
    let labels = Labels::new(
        &(0..rows as i64)
            .map(|i| i % classes as i64)
            .collect::<Vec<_>>(),
    );

    let gpu = Gpu::new()?; // once: pipelines and buffers are reused by every step
    let loss = Contrastive::default().margin(6.0)?;
    let lr = 20.0f32; // the mean over 2016 pairs makes each gradient small
    for step in 0..=60 {
        let x = Embeddings::new(&table, rows, dim)?;
        let out = loss.batch(&gpu, &x, &labels, Grads::Compute)?;
        for (w, g) in table.iter_mut().zip(&out.grads[0]) {
            *w -= lr * g;
        }
        if step % 10 == 0 {
            println!(
                "step {step:>3}  loss {:.5}  active terms {:>4} of {}",
                out.loss,
                out.active_terms().unwrap_or(0),
                out.terms()
            );
        }
    }
    Ok(())
}

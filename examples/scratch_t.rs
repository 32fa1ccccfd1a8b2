use metric_loss::{check::Rng, Embeddings, Gpu, Grads, Labels, Softmax};
use std::time::Instant;
fn main() {
    let gpu = Gpu::new().unwrap();
    let b: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let d = 4;
    let x = Rng::new(1).unit_rows(b, d);
    let l: Vec<i64> = (0..b).map(|i| (i % (b / 2)) as i64).collect();
    let e = Embeddings::new("x", &x, b, d).unwrap();
    let l = Labels::new(&l);
    for cfg in [Softmax::supcon(), Softmax::ntxent()] {
        for g in [Grads::Skip, Grads::Compute] {
            cfg.batch(&gpu, &e, &l, g).unwrap();
            let t = Instant::now();
            cfg.batch(&gpu, &e, &l, g).unwrap();
            println!("{:?} {:?} {:.3}", cfg.loss, g, t.elapsed().as_secs_f64());
        }
    }
}

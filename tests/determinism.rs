//! Bitwise determinism: same input, same adapter ⇒ same bits, across reruns and across two
//! separately created `Gpu`s. 160 rows at a 32-row tile is 5 tiles per side.

mod common;

use metric_loss::{Contrastive, Distance, Embeddings, Gpu, Grads, Hinge, Labels, Reduction};

#[test]
fn reruns_and_separate_gpus_agree_bitwise() {
    let Some(first) = common::gpu() else { return };
    let second = Gpu::new().expect("a second Gpu on the same adapter");
    let (rows, dim) = (160, 7);
    let data = common::normals(9, rows * dim);
    let other = common::normals(10, rows * dim);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let b = Embeddings::named("b", &other, rows, dim).unwrap();
    let l = Labels::new(&common::labels(9, rows, 6));
    let similar: Vec<bool> = common::labels(4, rows, 2).iter().map(|&v| v == 0).collect();
    let configs = [
        Contrastive::default(),
        Contrastive::default()
            .distance(Distance::Cosine)
            .normalize(true)
            .reduction(Reduction::MeanNonzero)
            .margin(1.1)
            .unwrap(),
        Contrastive::default()
            .distance(Distance::SquaredEuclidean)
            .hinge(Hinge::Linear)
            .reduction(Reduction::Sum)
            .margin(12.0)
            .unwrap(),
    ];
    for cfg in configs {
        let runs = [first, first, &second]
            .map(|g| common::bits(&cfg.batch(g, &x, &l, Grads::Compute).unwrap()));
        assert!(runs[0] == runs[1], "{cfg:?}: rerun differs");
        assert!(runs[0] == runs[2], "{cfg:?}: second Gpu differs");
        let runs = [first, first, &second]
            .map(|g| common::bits(&cfg.pairs(g, &x, &b, &similar, Grads::Compute).unwrap()));
        assert!(
            runs[0] == runs[1] && runs[0] == runs[2],
            "{cfg:?}: pair mode differs"
        );
    }
}

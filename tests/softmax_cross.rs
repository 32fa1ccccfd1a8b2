//! Softmax-contrastive losses: GPU against the CPU reference over every loss, temperature
//! (down to 0.01) and label pattern (random, two views, one class, all distinct, duplicate
//! rows).

mod common;

use metric_loss::testing::softmax::run_grid;
use metric_loss::testing::Grid;

#[test]
fn grid_matches_reference() {
    let Some(gpu) = common::gpu() else { return };
    for r in run_grid(gpu, &Grid::new(40, 7, 1)).unwrap() {
        println!("{} {:e} {}", r.name, r.max_rel(), r.pass());
        common::assert_report(&r);
    }
}

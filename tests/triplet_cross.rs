//! Triplet losses: GPU against the CPU reference over every option, sizes around the
//! 64-anchor chunk and the 32-row tile, and inputs whose decisions are clear of rounding.

mod common;

use metric_loss::testing::triplet::run_grid;
use metric_loss::testing::Grid;

#[test]
fn grid_matches_reference() {
    let Some(gpu) = common::gpu() else { return };
    for r in run_grid(gpu, &Grid::new(40, 7, 1)).unwrap() {
        println!("{} {:e} {}", r.name, r.max_rel(), r.pass());
        common::assert_report(&r);
    }
}

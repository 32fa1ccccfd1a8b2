//! CPU references: the same inputs and outputs as the GPU path, f64 accumulation, written
//! for clarity rather than speed. Tests and `metric-loss check` compare the two.

pub mod contrastive;
pub mod distance;
pub mod normalize;
pub mod triplet;

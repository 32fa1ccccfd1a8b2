//! The tests' device, inputs, and the read back of burn tensors.
#![allow(dead_code)]

pub mod reference;

use std::sync::OnceLock;

use burn::tensor::{Device, Int, Tensor, TensorData};
use metric_loss::testing::outside::Outside;
use metric_loss::testing::Rng;
use metric_loss::tolerance::Verdict;
use metric_loss::{Embeddings, Labels};

/// One autodiff wgpu device shared by metric-loss (lavapipe in CI, where `CI=true` makes a
/// missing adapter fail rather than skip: there is no skipping here).
pub fn device() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            metric_loss_burn::init(metric_loss_burn::WgpuDevice::default())
                .expect("a wgpu adapter (lavapipe in CI)")
        })
        .clone()
        .autodiff()
}

/// Rows and their host copy.
pub struct Rows {
    pub host: Vec<f32>,
    pub rows: usize,
    pub dim: usize,
}

impl Rows {
    pub fn random(rng: &mut Rng, rows: usize, dim: usize) -> Self {
        Rows {
            host: rng.normals(rows * dim),
            rows,
            dim,
        }
    }

    /// Normal values times `scale` (distances near the margins).
    pub fn scaled(rng: &mut Rng, rows: usize, dim: usize, scale: f32) -> Self {
        Rows {
            host: rng
                .normals(rows * dim)
                .into_iter()
                .map(|v| v * scale)
                .collect(),
            rows,
            dim,
        }
    }

    pub fn tensor(&self) -> Tensor<2> {
        let data = TensorData::new(self.host.clone(), [self.rows, self.dim]);
        Tensor::from_data(data, &device())
    }

    /// A tracked tensor of these rows.
    pub fn tracked(&self) -> Tensor<2> {
        self.tensor().require_grad()
    }

    pub fn embeddings(&self) -> Embeddings<'_> {
        Embeddings::new(&self.host, self.rows, self.dim).expect("valid rows")
    }
}

pub fn labels(rng: &mut Rng, rows: usize, classes: u64) -> Vec<i64> {
    (0..rows).map(|_| rng.below(classes) as i64).collect()
}

pub fn int_tensor(values: &[i64]) -> Tensor<1, Int> {
    let v: Vec<i32> = values.iter().map(|&x| x as i32).collect();
    Tensor::from_data(TensorData::new(v, [values.len()]), &device())
}

pub fn host_labels(values: &[i64]) -> Labels {
    Labels::new(values)
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 values")
}

/// A loss and the gradients of `inputs` after its backward pass.
pub fn outside(loss: Tensor<1>, inputs: &[&Tensor<2>]) -> Outside {
    let grads = loss.backward();
    Outside {
        loss: f64::from(values(loss)[0]),
        grads: inputs
            .iter()
            .map(|x| values(x.grad(&grads).expect("a tracked input has a gradient")))
            .collect(),
    }
}

pub fn assert_pass(what: &str, v: &Verdict) {
    assert!(v.pass(), "{what}: {:?}\n{:#?}", v.failures(), v);
}

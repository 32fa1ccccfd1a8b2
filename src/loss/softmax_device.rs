//! The softmax-contrastive losses on the caller's own buffers (see [`crate::device`]).

use crate::device::{self, DeviceGrad, DeviceLabels, DeviceLoss, DeviceRows, Target};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::loss::magnitude;
use crate::loss::plan::Plan;
use crate::loss::softmax::{build, Softmax, SoftmaxLoss};
use crate::loss::steps::{alloc_sides, record, Buffers};

impl Softmax {
    /// [`Softmax::batch`] (NT-Xent, SupCon) on embeddings and u32 labels in the caller's
    /// buffers. dL/dterm is counted on the device from the labels; the loss and dL/dτ stay
    /// on the device ([`DeviceLoss::read_all`]), and the gradient (when `grad` is given) is
    /// written into the caller's buffer, scaled and overwriting or accumulating.
    pub fn batch_device(
        &self,
        gpu: &Gpu,
        x: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate()?;
        if self.loss == SoftmaxLoss::Clip {
            return Err(Error::OptionConflict {
                option: "loss clip",
                reason: "it takes two views (pairs_device), not a labelled batch",
            });
        }
        device::check_batch(&x, &labels, grad.as_ref())?;
        run(gpu, self, &[x], Some(labels), &[grad], target)
    }

    /// [`Softmax::pairs`] (CLIP) on views A and B in the caller's buffers; `grads` are
    /// where dL/dA and dL/dB go.
    pub fn pairs_device(
        &self,
        gpu: &Gpu,
        a: DeviceRows<'_>,
        b: DeviceRows<'_>,
        grads: Option<[DeviceGrad<'_>; 2]>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate()?;
        if self.loss != SoftmaxLoss::Clip {
            return Err(Error::OptionConflict {
                option: "loss ntxent/supcon",
                reason: "it takes a labelled batch (batch_device), not two views",
            });
        }
        let [ga, gb] = grads.map_or([None, None], |[a, b]| [Some(a), Some(b)]);
        device::check_side("a", &a, ga.as_ref())?;
        device::check_side("b", &b, gb.as_ref())?;
        if (a.rows, a.dim) != (b.rows, b.dim) {
            return Err(Error::ShapeMismatch {
                what: "b (rows × dim)",
                expected: a.rows * a.dim,
                got: b.rows * b.dim,
            });
        }
        run(gpu, self, &[a, b], None, &[ga, gb], target)
    }
}

fn run(
    gpu: &Gpu,
    cfg: &Softmax,
    inputs: &[DeviceRows<'_>],
    labels: Option<DeviceLabels<'_>>,
    grads: &[Option<DeviceGrad<'_>>],
    target: Target<'_>,
) -> Result<DeviceLoss> {
    let (rows, dim) = (inputs[0].rows as u64, inputs[0].dim as u64);
    let limit = magnitude::softmax_limit(
        inputs[0].dim,
        inputs.len() * inputs[0].rows,
        cfg.temperature,
    )?;
    let want = grads.iter().any(Option::is_some);
    let mut out = None;
    gpu.execute_device("softmax loss (device-resident)", target, |rec| {
        let plan = Plan::new(rec, rows, dim, 0)?;
        let mut bufs = Buffers::default();
        let sides = alloc_sides(rec, &plan, &mut bufs, inputs.len(), 1, want);
        let classes = bufs.push(rec.rows_buffer("classes", plan.capacity * 4, true));
        let (mut steps, flags) =
            device::gather_sides(rec, &plan, &mut bufs, &sides, inputs, limit)?;
        match &labels {
            Some(l) => steps.extend(device::gather_ids(rec, &plan, &mut bufs, l, classes)?),
            // CLIP: row i of A matches row i of B.
            None => steps.extend(device::iota_ids(&plan, classes)),
        }
        let built = build(rec, &plan, &mut bufs, cfg, &sides, classes, None, want);
        steps.extend(built.steps);
        // The results: the loss reduction runs last in `built`; the gradients follow.
        steps.extend(device::scatter_sides(
            rec, &plan, &mut bufs, &sides, grads, dim,
        )?);
        record(rec, &plan, &bufs, &steps);
        out = Some(DeviceLoss {
            loss: bufs.list[built.dev].clone(),
            flags: bufs.list[flags].clone(),
            limit,
            call: rec.next_device_call(),
            temperature: want,
        });
        Ok(())
    })?;
    Ok(out.unwrap_or_else(|| unreachable!("execute_device ran the recorder")))
}

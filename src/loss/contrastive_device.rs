//! The contrastive loss over a batch in the caller's own buffers (see [`crate::device`]).

use crate::device::{self, DeviceGrad, DeviceLabels, DeviceLoss, DeviceRows, Target};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::loss::contrastive::{Contrastive, Dispatch, Mode};
use crate::loss::plan::{Plan, PARTIAL_BYTES};
use crate::loss::steps::{alloc_sides, normalize_forward, record, Buffers};

impl Contrastive {
    /// [`Contrastive::batch`] on embeddings and labels in the caller's buffers: the
    /// gradient (when `grad` is given) is written into the caller's buffer, scaled and
    /// overwriting or accumulating, and the loss stays on the device ([`DeviceLoss`]). The
    /// work is submitted, or recorded into the caller's encoder ([`Target`]); nothing is
    /// read back. The loss is reduced on the device in f32 (the host path adds the per-row
    /// sums in f64), in a fixed order.
    pub fn batch_device(
        &self,
        gpu: &Gpu,
        x: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate()?;
        device::check_batch(&x, &labels, grad.as_ref())?;
        let (rows, dim) = (x.rows as u64, x.dim as u64);
        let limit = self.magnitude_limit(Mode::Batch, x.rows, x.dim)?;
        let mut out = None;
        gpu.execute_device("contrastive loss (device-resident)", target, |rec| {
            let plan = Plan::new(rec, rows, dim, 0)?;
            let mut bufs = Buffers::default();
            let stages = self.distance.normalize_stages(self.normalize);
            let sides = alloc_sides(rec, &plan, &mut bufs, 1, stages, grad.is_some());
            let classes = bufs.push(rec.rows_buffer("classes", plan.capacity * 4, true));
            let partials =
                bufs.push(rec.rows_buffer("partials", plan.capacity * PARTIAL_BYTES, false));
            let scales = bufs.push(rec.small("scales", 48));
            let loss = device::loss_buffer(rec);
            let loss_i = bufs.push(loss.clone());
            let (mut steps, flags) =
                device::gather_sides(rec, &plan, &mut bufs, &sides, &[x], limit)?;
            steps.extend(device::gather_ids(rec, &plan, &mut bufs, &labels, classes)?);
            steps.extend(normalize_forward(&plan, &sides));
            let d = Dispatch {
                cfg: self,
                plan: &plan,
                x: sides[0].rows(),
                classes,
                partials,
            };
            // Forward, then the counts and dL/dterm on the device (the labels are not on the
            // host), then the loss and the gradient.
            steps.extend(d.batch_forward());
            steps.extend(d.per_window("contrastive_finalize", &[(6, scales)]));
            steps.extend(d.per_window("contrastive_loss", &[(9, loss_i), (6, scales)]));
            if let Some(gi) = sides[0].grad {
                steps.extend(d.batch_backward("contrastive_batch_backward", scales, gi));
                steps.extend(device::scatter_sides(
                    rec,
                    &plan,
                    &mut bufs,
                    &sides,
                    &[grad],
                    dim,
                )?);
            }
            record(rec, &plan, &bufs, &steps);
            out = Some(DeviceLoss {
                loss,
                flags: bufs.list[flags].clone(),
                limit,
                call: rec.next_device_call(),
                temperature: false,
            });
            Ok(())
        })?;
        Ok(out.unwrap_or_else(|| unreachable!("execute_device ran the recorder")))
    }
}

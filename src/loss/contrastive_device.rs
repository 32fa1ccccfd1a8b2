//! The contrastive loss over a batch in the caller's own buffers (see [`crate::device`]).

use crate::device::{self, DeviceGrad, DeviceLabels, DeviceLoss, DeviceRows, Target};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::loss::contrastive::{Contrastive, MODULE};
use crate::loss::plan::{Plan, PARTIAL_BYTES, ROW_TILE};
use crate::loss::steps::{alloc_sides, normalize_forward, record, Buffers, Step};

/// Bytes of the loss buffer: f32 words [loss, Σ similar terms, Σ dissimilar terms, unused]
/// (32, as the softmax losses use it, so that the shared buffer never regrows).
const LOSS_BYTES: u64 = 32;

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
            let loss = rec.small("device_loss", LOSS_BYTES);
            let loss_i = bufs.push(loss.clone());
            let (mut steps, flags) = device::gather_sides(rec, &plan, &mut bufs, &sides, &[x])?;
            steps.extend(device::gather_ids(rec, &plan, &mut bufs, &labels, classes)?);
            steps.extend(normalize_forward(&plan, &sides));
            let xr = sides[0].rows();
            let (rb, n) = (plan.row_bytes, plan.windows);
            let params = |r: u64, c: u64, accumulate: bool, last: bool| {
                let mut p = self.params(rows as usize, plan.dim4 as usize);
                p.row_start = plan.start(r) as u32;
                p.col_start = plan.start(c) as u32;
                p.window_rows = plan.window_rows as u32;
                p.accumulate = u32::from(accumulate);
                p.last = u32::from(last);
                bytemuck::bytes_of(&p).to_vec()
            };
            let core = |r: u64, c: u64| {
                vec![
                    (1, xr, rb, r),
                    (2, xr, rb, c),
                    (3, classes, 4, r),
                    (4, classes, 4, c),
                    (5, partials, PARTIAL_BYTES, r),
                ]
            };
            let tiles = |r: u64| plan.rows_in(r).div_ceil(ROW_TILE);
            // Forward, then the counts and dL/dterm on the device (the labels are not on the
            // host), then the loss and the gradient.
            for r in 0..n {
                for c in r..n {
                    steps.push(Step {
                        module: MODULE,
                        entry: "contrastive_batch_forward",
                        params: params(r, c, c > r, false),
                        bindings: core(r, c),
                        groups: tiles(r),
                    });
                }
            }
            for (entry, binding, extra) in [
                ("contrastive_finalize", 6, scales),
                ("contrastive_loss", 9, loss_i),
            ] {
                for r in 0..n {
                    let mut bindings =
                        vec![(5, partials, PARTIAL_BYTES, r), (binding, extra, 0, 0)];
                    if binding == 9 {
                        bindings.push((6, scales, 0, 0));
                    }
                    steps.push(Step {
                        module: MODULE,
                        entry,
                        params: params(r, r, r > 0, r + 1 == n),
                        bindings,
                        groups: 1,
                    });
                }
            }
            if let Some(gi) = sides[0].grad {
                for r in 0..n {
                    for c in 0..n {
                        let mut b = core(r, c);
                        b.push((6, scales, 0, 0));
                        b.push((7, gi, rb, r));
                        steps.push(Step {
                            module: MODULE,
                            entry: "contrastive_batch_backward",
                            params: params(r, c, c > 0, false),
                            bindings: b,
                            groups: tiles(r),
                        });
                    }
                }
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
                temperature: false,
            });
            Ok(())
        })?;
        Ok(out.unwrap_or_else(|| unreachable!("execute_device ran the recorder")))
    }
}

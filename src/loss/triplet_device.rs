//! The triplet losses on the caller's own buffers (see [`crate::device`]).

use crate::device::{self, DeviceGrad, DeviceLabels, DeviceLoss, DeviceRows, Target};
use crate::error::{Error, Result};
use crate::gpu::params::TripletParams;
use crate::gpu::Gpu;
use crate::loss::plan::Plan;
use crate::loss::steps::{alloc_sides, record, Buffers, Step};
use crate::loss::triplet::{explicit_steps, mined_steps, Mining, Triplet, CHUNK_ROW_BYTES};

const MODULE: &str = "triplet.wgsl";
const PARTIAL: u64 = std::mem::size_of::<crate::gpu::params::TripletPartial>() as u64;

impl Triplet {
    /// [`Triplet::explicit`] on rows i of A, P and N in the caller's buffers; `grads` are
    /// where dL/dA, dL/dP and dL/dN go. The loss stays on the device ([`DeviceLoss`]).
    pub fn explicit_device(
        &self,
        gpu: &Gpu,
        inputs: [DeviceRows<'_>; 3],
        grads: Option<[DeviceGrad<'_>; 3]>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate(None)?;
        let g = grads.map_or([None, None, None], |[a, p, n]| [Some(a), Some(p), Some(n)]);
        for ((what, x), gr) in ["anchor", "positive", "negative"]
            .into_iter()
            .zip(&inputs)
            .zip(&g)
        {
            device::check_side(what, x, gr.as_ref())?;
            if (x.rows, x.dim) != (inputs[0].rows, inputs[0].dim) {
                return Err(Error::ShapeMismatch {
                    what,
                    expected: inputs[0].rows * inputs[0].dim,
                    got: x.rows * x.dim,
                });
            }
        }
        run(gpu, self, None, &inputs, None, &g, target)
    }

    /// [`Triplet::mined`] on embeddings and u32 labels in the caller's buffers. The term
    /// count the mean divides by is counted on the device, so `mean` with gradients runs the
    /// chunks' forward pass twice, as `mean-nonzero` does.
    pub fn mined_device(
        &self,
        gpu: &Gpu,
        x: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        mining: Mining,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate(Some(mining))?;
        device::check_batch(&x, &labels, grad.as_ref())?;
        run(gpu, self, Some(mining), &[x], Some(labels), &[grad], target)
    }
}

fn run(
    gpu: &Gpu,
    cfg: &Triplet,
    mining: Option<Mining>,
    inputs: &[DeviceRows<'_>],
    labels: Option<DeviceLabels<'_>>,
    grads: &[Option<DeviceGrad<'_>>],
    target: Target<'_>,
) -> Result<DeviceLoss> {
    let (rows, dim) = (inputs[0].rows as u64, inputs[0].dim as u64);
    // The labels are on the device: mined calls take the most terms their mining can form.
    let n = rows as f64;
    let terms = match mining {
        None | Some(Mining::Hard) => n,
        Some(Mining::All) => n * n * n,
        Some(Mining::Semihard) => n * n,
    };
    let limit = cfg.magnitude_limit(inputs[0].dim, terms)?;
    let want = grads.iter().any(Option::is_some);
    let mut out = None;
    gpu.execute_device("triplet loss (device-resident)", target, |rec| {
        let whole = if mining.is_some() { CHUNK_ROW_BYTES } else { 0 };
        let plan = Plan::new(rec, rows, dim, whole)?;
        let mut bufs = Buffers::default();
        let stages = cfg.distance.normalize_stages(cfg.normalize);
        let sides = alloc_sides(rec, &plan, &mut bufs, inputs.len(), stages, want);
        let (mut steps, flags) =
            device::gather_sides(rec, &plan, &mut bufs, &sides, inputs, limit)?;
        let dev = bufs.push(device::loss_buffer(rec));
        let (partials, whole_partials) = match (mining, &labels) {
            (Some(m), Some(l)) => {
                let classes = bufs.push(rec.rows_buffer("classes", plan.capacity * 4, true));
                steps.extend(device::gather_ids(rec, &plan, &mut bufs, l, classes)?);
                let (s, p) = mined_steps(rec, cfg, m, &plan, &mut bufs, &sides, classes, None)?;
                steps.extend(s);
                (p, true)
            }
            _ => {
                let p = bufs.push(rec.rows_buffer("partials", plan.capacity * PARTIAL, false));
                steps.extend(explicit_steps(cfg, &plan, &sides, p));
                (p, false)
            }
        };
        // The loss: mined partials are bound whole (every anchor at once), explicit ones by
        // row window.
        let reduction = cfg.reduction_for(mining).kernel_code();
        let loss_windows = if whole_partials { 1 } else { plan.windows };
        for w in 0..loss_windows {
            let p = TripletParams {
                rows: rows as u32,
                row_start: if whole_partials {
                    0
                } else {
                    plan.start(w) as u32
                },
                window_rows: if whole_partials {
                    rows as u32
                } else {
                    plan.window_rows as u32
                },
                accumulate: u32::from(w > 0),
                reduction,
                last: u32::from(w + 1 == loss_windows),
                ..Default::default()
            };
            let part = if whole_partials {
                (5, partials, 0, 0)
            } else {
                (5, partials, PARTIAL, w)
            };
            steps.push(Step {
                module: MODULE,
                entry: "triplet_loss",
                params: bytemuck::bytes_of(&p).to_vec(),
                bindings: vec![part, (14, dev, 0, 0)],
                groups: 1,
            });
        }
        steps.extend(device::scatter_sides(
            rec, &plan, &mut bufs, &sides, grads, dim,
        )?);
        record(rec, &plan, &bufs, &steps);
        out = Some(DeviceLoss {
            loss: bufs.list[dev].clone(),
            flags: bufs.list[flags].clone(),
            limit,
            call: rec.next_device_call(),
            temperature: false,
        });
        Ok(())
    })?;
    Ok(out.unwrap_or_else(|| unreachable!("execute_device ran the recorder")))
}

//! The operation on burn's wgpu tensors: metric-loss's device-resident calls on the tensors'
//! own buffers.
//!
//! Ordering without a host wait: asking cubecl for a tensor's `wgpu::Buffer`
//! (`get_resource`) first submits the work burn has queued for it, and metric-loss submits
//! its own work to the same `wgpu::Queue` before returning, so the queue runs burn's
//! producers, then the loss, then whatever burn queues afterwards on the outputs. The
//! resources are held until the submit, so cubecl cannot hand their memory to another tensor
//! in between.

use burn::backend::wgpu::{CubeBackend, CubeTensor, WgpuResource};
use burn::backend::CubeDevice;
use burn::cubecl::wgpu::{AutoCompiler, WgpuServer};
use burn::tensor::{DType, Shape};
use metric_loss::device::{DeviceGrad, DeviceLabels, DeviceReference, DeviceRows, Target};
use metric_loss::{Gpu, Precision};

use crate::backend::MetricLossBackend;
use crate::call::{output_shapes, Family, Form, LossCall};
use crate::setup::gpu_of;

type Server = WgpuServer<AutoCompiler>;

impl MetricLossBackend for CubeBackend {
    fn metric_loss_with_grads(
        a: CubeTensor,
        b: CubeTensor,
        c: CubeTensor,
        labels: CubeTensor,
        call: LossCall,
    ) -> (CubeTensor, CubeTensor, CubeTensor, CubeTensor) {
        // The public functions checked the device, shapes, element types and options.
        let CubeDevice::Wgpu(device) = &a.device else {
            panic!("metric-loss-burn: a loss reached a non-wgpu cubecl device");
        };
        let gpu =
            gpu_of(device).expect("metric-loss-burn: the device was checked to be registered");
        let sides = call.form.sides();
        let dims = [&a, &b, &c].map(|t| t.meta.shape().to_vec());
        let shapes = output_shapes(&call, [&dims[0], &dims[1], &dims[2]]);
        // Only the form's sides are read; the others are whatever tensor the caller passed.
        let inputs: Vec<CubeTensor> = [a, b, c]
            .into_iter()
            .take(sides)
            .map(readable_rows)
            .collect();
        let labels = if labels.meta.strides()[0] == 1 {
            labels
        } else {
            burn::backend::wgpu::into_contiguous(labels)
        };
        let outputs = shapes.map(|s| empty_f32(&inputs[0], s));

        let client = inputs[0].client.clone();
        let resource = |t: &CubeTensor| {
            client
                .get_resource::<Server>(t.handle.clone())
                .expect("metric-loss-burn: cubecl gave no wgpu buffer for a tensor")
        };
        let held_inputs: Vec<_> = inputs.iter().map(resource).collect();
        let held_labels = resource(&labels);
        let held_outputs: Vec<_> = outputs.iter().map(resource).collect();

        let rows: Vec<DeviceRows<'_>> = inputs
            .iter()
            .zip(&held_inputs)
            .map(|(t, r)| rows_of(t, r.resource()))
            .collect();
        let grads: Vec<Option<DeviceGrad<'_>>> = (0..sides)
            .map(|i| {
                call.grads[i].then(|| {
                    let r = held_outputs[1 + i].resource();
                    DeviceGrad {
                        offset: r.offset,
                        ..DeviceGrad::new(&r.buffer, dims[i][1])
                    }
                })
            })
            .collect();
        let label_res = held_labels.resource();
        let labels_at = |row: usize| DeviceLabels {
            buffer: &label_res.buffer,
            offset: label_res.offset + 4 * row as u64,
        };

        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        let target = Target::Encoder(&mut encoder);
        let loss = record(&gpu, &call, &rows, labels_at, &grads, target)
            .unwrap_or_else(|e| panic!("metric-loss-burn: {e}"));
        let out = held_outputs[0].resource();
        encoder.copy_buffer_to_buffer(loss.buffer(), 0, &out.buffer, out.offset, 4);
        gpu.queue().submit([encoder.finish()]);
        drop((held_inputs, held_labels, held_outputs));

        let [l, ga, gb, gc] = outputs;
        (l, ga, gb, gc)
    }
}

/// Records the call's metric-loss device-resident call.
fn record<'b>(
    gpu: &Gpu,
    call: &LossCall,
    rows: &[DeviceRows<'b>],
    labels_at: impl Fn(usize) -> DeviceLabels<'b>,
    grads: &[Option<DeviceGrad<'b>>],
    target: Target<'_>,
) -> metric_loss::Result<metric_loss::device::DeviceLoss> {
    let all = |g: &[Option<DeviceGrad<'b>>]| -> Option<Vec<DeviceGrad<'b>>> {
        g.iter().copied().collect()
    };
    let pair = || all(grads).map(|g| [g[0], g[1]]);
    match (call.family, call.form) {
        (Family::Contrastive(l), Form::Batch) => {
            l.batch_device(gpu, rows[0], labels_at(0), grads[0], target)
        }
        (Family::Softmax(l), Form::Batch) => {
            l.batch_device(gpu, rows[0], labels_at(0), grads[0], target)
        }
        (Family::Weighting(l), Form::Batch) => {
            l.batch_device(gpu, rows[0], labels_at(0), grads[0], target)
        }
        (Family::Triplet(l), Form::Batch) => {
            l.batch_device(gpu, rows[0], labels_at(0), grads[0], target)
        }
        (Family::Contrastive(l), Form::Pairs) => {
            l.pairs_device(gpu, rows[0], rows[1], labels_at(0), pair(), target)
        }
        (Family::Softmax(l), Form::Pairs) => l.pairs_device(gpu, rows[0], rows[1], pair(), target),
        (Family::Softmax(l), Form::PairsLabelled { split }) => l.pairs_labelled_device(
            gpu,
            rows[0],
            rows[1],
            labels_at(0),
            labels_at(split),
            pair(),
            target,
        ),
        (Family::Siglip(l), Form::Pairs) => l.pairs_device(gpu, rows[0], rows[1], pair(), target),
        (Family::Siglip(l), Form::PairsLabelled { split }) => l.pairs_labelled_device(
            gpu,
            rows[0],
            rows[1],
            labels_at(0),
            labels_at(split),
            pair(),
            target,
        ),
        (Family::Contrastive(l), Form::Against { split, queries_at }) => {
            let reference = reference(rows[1], labels_at(split), queries_at, grads[1]);
            l.against_device(gpu, rows[0], labels_at(0), reference, grads[0], target)
        }
        (Family::Softmax(l), Form::Against { split, queries_at }) => {
            let reference = reference(rows[1], labels_at(split), queries_at, grads[1]);
            l.against_device(gpu, rows[0], labels_at(0), reference, grads[0], target)
        }
        (Family::Proxy(l), Form::Classes) => l.batch_device(
            gpu,
            rows[0],
            labels_at(0),
            rows[1],
            grads[0],
            grads[1],
            target,
        ),
        (Family::Triplet(l), Form::Explicit) => {
            let g = all(grads).map(|g| [g[0], g[1], g[2]]);
            l.explicit_device(gpu, rows[0], rows[1], rows[2], g, target)
        }
        (family, form) => unreachable!("metric-loss-burn: {family:?} has no {form:?} form"),
    }
}

fn reference<'b>(
    rows: DeviceRows<'b>,
    labels: DeviceLabels<'b>,
    queries_at: Option<usize>,
    grad: Option<DeviceGrad<'b>>,
) -> DeviceReference<'b> {
    DeviceReference {
        rows,
        labels,
        queries_at,
        grad,
    }
}

/// Rows metric-loss reads in place: each row's values contiguous (a slice of rows of a
/// larger tensor keeps its buffer offset and row stride); anything else is copied first.
fn readable_rows(t: CubeTensor) -> CubeTensor {
    let shape = t.meta.shape();
    let strides = t.meta.strides();
    let in_place = shape.num_dims() == 2
        && (strides[1] == 1 || shape[1] <= 1)
        && (strides[0] >= shape[1] || shape[0] <= 1);
    if in_place {
        t
    } else {
        burn::backend::wgpu::into_contiguous(t)
    }
}

fn rows_of<'b>(t: &CubeTensor, r: &'b WgpuResource) -> DeviceRows<'b> {
    let shape = t.meta.shape();
    let (rows, dim) = (shape[0], shape[1]);
    DeviceRows {
        buffer: &r.buffer,
        offset: r.offset,
        rows,
        dim,
        stride: if rows > 1 { t.meta.strides()[0] } else { dim },
        // The operations take f32 tensors (the backend's float element).
        precision: Precision::F32,
    }
}

fn empty_f32(like: &CubeTensor, shape: Vec<usize>) -> CubeTensor {
    let shape = Shape::from(shape);
    let handle = like.client.empty(shape.num_elements() * 4);
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        handle,
        DType::F32,
    )
}

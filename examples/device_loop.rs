//! The device-resident API in a loop: a table of learnable embeddings lives in the caller's
//! own `wgpu` buffer on the caller's device; each step records metric-loss's contrastive
//! loss and gradient into the caller's command encoder, then the caller's own update (SGD
//! on the host here, to stay short; a framework would run its optimiser as its own compute
//! pass in the same encoder). The loss is read back only when printed: 4.26 at step 0,
//! below 1e-4 by step 40.
//!
//! Run: `cargo run --release --example device_loop`

use metric_loss::testing::Rng;
use metric_loss::device::{DeviceGrad, DeviceLabels, DeviceRows, Target};
use metric_loss::{Contrastive, Gpu};
use wgpu::util::DeviceExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The caller's device (a training framework would already have one).
    let instance = wgpu::Instance::default();
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default()))?;
    let gpu = Gpu::from_device(device.clone(), queue.clone()).unwrap();

    let (rows, dim, classes) = (64usize, 16usize, 8u32);
    let mut table = Rng::new(1).normals(rows * dim);
    let labels: Vec<u32> = (0..rows as u32).map(|i| i % classes).collect();
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let make = |label: &str, bytes: &[u8]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage,
        })
    };
    let x = make("embeddings", bytemuck::cast_slice(&table));
    let y = make("labels", bytemuck::cast_slice(&labels));
    let g = make("gradient", &vec![0u8; rows * dim * 4]);
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("gradient readback"),
        size: (rows * dim * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });

    let loss = Contrastive::default().margin(6.0).unwrap();
    let lr = 20.0f32;
    for step in 0..=60 {
        let mut encoder = device.create_command_encoder(&Default::default());
        let out = loss.batch_device(
            &gpu,
            DeviceRows::new(&x, rows, dim),
            DeviceLabels::new(&y),
            Some(DeviceGrad::new(&g, dim)),
            Target::Encoder(&mut encoder),
        )?;
        encoder.copy_buffer_to_buffer(&g, 0, &staging, 0, staging.size());
        queue.submit([encoder.finish()]);
        // The caller's update: SGD on the host here (a framework would run its optimiser
        // on the device).
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, |r| r.expect("map"));
        device.poll(wgpu::PollType::wait_indefinitely())?;
        {
            let view = staging.slice(..).get_mapped_range()?;
            let grad: &[f32] = bytemuck::cast_slice(&view);
            for (w, d) in table.iter_mut().zip(grad) {
                *w -= lr * d;
            }
        }
        staging.unmap();
        queue.write_buffer(&x, 0, bytemuck::cast_slice(&table));
        if step % 10 == 0 {
            println!("step {step:>3}  loss {:.5}", out.read(&gpu)?);
        }
    }
    Ok(())
}

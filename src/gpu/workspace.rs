//! Grow-only buffers reused across calls, one per role.

use std::collections::HashMap;

/// Buffers by role. A buffer is replaced only when a call needs more than its capacity;
/// capacity then at least doubles (up to the device's limit), so a training loop whose
/// batches do not grow allocates nothing after its first step.
#[derive(Default)]
pub(crate) struct Workspace {
    buffers: HashMap<&'static str, wgpu::Buffer>,
}

impl Workspace {
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        max_buffer_size: u64,
        role: &'static str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let size = round_up(size.max(16), 16);
        if let Some(b) = self.buffers.get(role) {
            if b.size() >= size && b.usage() == usage {
                return b.clone();
            }
        }
        let old = self.buffers.get(role).map_or(0, |b| b.size());
        let capacity = size.max(round_up(old.saturating_mul(2), 16).min(max_buffer_size));
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(role),
            size: capacity,
            usage,
            mapped_at_creation: false,
        });
        self.buffers.insert(role, buffer.clone());
        buffer
    }
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

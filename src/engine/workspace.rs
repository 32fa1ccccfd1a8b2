//! Grow-only buffers by role, the bounded bind-group cache, and allocation counts.

use std::collections::HashMap;

/// How many wgpu objects a [`crate::Gpu`] has created: a training loop whose batches do not
/// grow must see these stay constant after its first step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocations {
    /// Buffers created.
    pub buffers: u64,
    /// Bind groups created.
    pub bind_groups: u64,
    /// Compute pipelines created.
    pub pipelines: u64,
    /// Shader modules created.
    pub shader_modules: u64,
    /// Query sets created.
    pub query_sets: u64,
}

/// A workspace buffer and its identity (new identity on every reallocation).
#[derive(Clone)]
pub(crate) struct Held {
    pub buffer: wgpu::Buffer,
    pub id: u64,
}

/// Most bind groups kept; beyond it the cache starts afresh, so ever-changing shapes cannot
/// grow it without limit.
const BIND_GROUP_CACHE: usize = 512;

/// Most caller buffers remembered at once (see [`Workspace::external_id`]).
const EXTERNAL: usize = 64;

/// Identity of a bind group: entry point and (binding, buffer id, offset, size) per entry.
pub(crate) type BindKey = (
    &'static str,
    Option<super::rows::RowShape>,
    Vec<(u32, u64, u64, u64)>,
);

/// Buffers by role. A buffer is replaced only when a call needs more than its capacity;
/// capacity then at least doubles (up to the device's limit), so a training loop whose
/// batches do not grow allocates nothing after its first step.
#[derive(Default)]
pub(crate) struct Workspace {
    buffers: HashMap<&'static str, Held>,
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
    /// Identities of caller buffers bound by device-resident calls (held, so bounded).
    external: HashMap<wgpu::Buffer, u64>,
    next_id: u64,
    /// Rows every row-indexed buffer is sized for (grow-only).
    pub row_capacity: u64,
    /// Next free slot of the device-resident calls' parameter ring.
    pub device_ring: u64,
    pub counts: Allocations,
    /// Bytes held by workspace buffers now.
    pub bytes: u64,
    /// Most bytes ever held at once.
    pub peak_bytes: u64,
}

impl Workspace {
    /// A buffer for `role` with at least `size` bytes. `exact` buffers are sized to `size`
    /// (row-indexed buffers whose capacity is planned by the caller); others grow by doubling.
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        max_buffer_size: u64,
        role: &'static str,
        size: u64,
        usage: wgpu::BufferUsages,
        exact: bool,
    ) -> Held {
        let size = round_up(size.max(16), 16);
        if let Some(s) = self.buffers.get(role) {
            if s.buffer.size() >= size && s.buffer.usage() == usage {
                return s.clone();
            }
        }
        let old = self.buffers.get(role).map_or(0, |s| s.buffer.size());
        let capacity = if exact {
            size
        } else {
            size.max(round_up(old.saturating_mul(2), 16).min(max_buffer_size))
        };
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(role),
            size: capacity,
            usage,
            mapped_at_creation: false,
        });
        self.counts.buffers += 1;
        self.next_id += 1;
        let slot = Held {
            buffer,
            id: self.next_id,
        };
        self.bytes = self.bytes - old + capacity;
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        if let Some(prev) = self.buffers.insert(role, slot.clone()) {
            // Bind groups hold their buffers alive: drop the ones that name the old buffer.
            self.bind_groups
                .retain(|(_, _, entries), _| entries.iter().all(|e| e.1 != prev.id));
        }
        slot
    }

    /// The identity of a caller's buffer in bind-group keys. At most `EXTERNAL` are
    /// remembered (each held alive); past that the map and the bind groups start afresh.
    pub fn external_id(&mut self, buffer: &wgpu::Buffer) -> u64 {
        if let Some(&id) = self.external.get(buffer) {
            return id;
        }
        if self.external.len() >= EXTERNAL {
            self.external.clear();
            self.bind_groups.clear();
        }
        self.next_id += 1;
        self.external.insert(buffer.clone(), self.next_id);
        self.next_id
    }

    /// The cached bind group for `key`, created by `make` on a miss.
    pub fn bind_group(
        &mut self,
        key: BindKey,
        make: impl FnOnce() -> wgpu::BindGroup,
    ) -> wgpu::BindGroup {
        if let Some(bg) = self.bind_groups.get(&key) {
            return bg.clone();
        }
        if self.bind_groups.len() >= BIND_GROUP_CACHE {
            self.bind_groups.clear();
        }
        let bg = make();
        self.counts.bind_groups += 1;
        self.bind_groups.insert(key, bg.clone());
        bg
    }

    /// Drops every buffer and bind group (after a timeout, a buffer may still be pending a
    /// map); counts survive.
    pub fn reset(&mut self) {
        self.buffers.clear();
        self.bind_groups.clear();
        self.external.clear();
        self.row_capacity = 0;
        self.bytes = 0;
    }
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

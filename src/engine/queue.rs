//! A fixed-capacity queue of reference rows on the device (MoCo's queue of keys, a
//! cross-batch memory): rows and class ids pushed from the caller's buffers by buffer
//! copies, read by `against_device` calls as their reference set, nothing through the host.

use super::gpu::Gpu;
use crate::error::{Error, Result};
use crate::input::{DeviceLabels, DeviceReference, DeviceRows, Precision, Target};

/// A queue of at most `capacity` rows of `dim` f32 values and their u32 class ids, in two
/// buffers of its own (`STORAGE | COPY_DST | COPY_SRC`) allocated once.
///
/// - **Push**: [`DeviceQueue::push`] copies the newest rows in (first in, first out): rows
///   go to slots in turn, from slot 0, wrapping around; beyond the capacity each new row
///   overwrites the oldest. A push of more rows than the capacity keeps its last
///   `capacity` rows.
/// - **Not yet full**: [`DeviceQueue::len`] rows are valid, slots `0..len`, oldest first;
///   a reference set of them is those rows only.
/// - **Order**: once full, the rows are in slot order, the oldest at
///   [`DeviceQueue::oldest`]: a loss over the set does not depend on its order beyond f32
///   rounding (a given sequence of pushes gives the same bits every run).
///
/// The copies are recorded into the caller's encoder, or submitted ([`Target`]); the
/// queue's own bookkeeping (length, next slot) is on the host, so a push takes effect for
/// the calls recorded after it.
pub struct DeviceQueue {
    rows: wgpu::Buffer,
    labels: wgpu::Buffer,
    capacity: usize,
    dim: usize,
    len: usize,
    next: usize,
}

impl DeviceQueue {
    /// An empty queue of `capacity` rows of `dim` values on `gpu`'s device.
    pub fn new(gpu: &Gpu, capacity: usize, dim: usize) -> Result<Self> {
        if capacity == 0 || dim == 0 {
            return Err(Error::InvalidOption {
                name: "queue capacity and dim",
                value: capacity.min(dim) as f64,
                rule: "must be at least 1",
            });
        }
        let bytes = (capacity as u64).saturating_mul(dim as u64 * 4);
        let limit = gpu.limits().max_buffer_size;
        if bytes > limit {
            return Err(Error::LimitExceeded {
                what: "the queue's rows (bytes, max_buffer_size)".into(),
                needed: u128::from(bytes),
                limit: u128::from(limit),
                hint: "use a smaller capacity or dimension",
            });
        }
        let buffer = |label, size| {
            gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        Ok(Self {
            rows: buffer("metric-loss queue rows", bytes),
            labels: buffer("metric-loss queue labels", capacity as u64 * 4),
            capacity,
            dim,
            len: 0,
            next: 0,
        })
    }

    /// Copies `rows` (f32, contiguous: stride = dim, the queue's dim; the buffer needs
    /// `COPY_SRC`) and their class ids `labels` (`COPY_SRC`) in as the newest rows. f16 rows
    /// are an [`Error::InvalidBuffer`]: the queue holds f32 rows (f16 queries may still run
    /// against it).
    pub fn push(
        &mut self,
        gpu: &Gpu,
        rows: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        target: Target<'_>,
    ) -> Result<()> {
        let bad = |what, reason: &str| {
            Err(Error::InvalidBuffer {
                what,
                reason: reason.into(),
            })
        };
        if rows.dim != self.dim || rows.stride != self.dim {
            return bad("pushed rows", "the queue's dim, contiguous (stride = dim)");
        }
        if rows.precision != Precision::F32 {
            // Pushes are buffer copies into f32 slots; f16 batches still query the queue.
            return bad("pushed rows", "the queue holds f32 rows: push f32 rows");
        }
        for (what, b, offset) in [
            ("pushed rows", rows.buffer, rows.offset),
            ("pushed labels", labels.buffer, labels.offset),
        ] {
            if !b.usage().contains(wgpu::BufferUsages::COPY_SRC) {
                return bad(what, "a push copies from it: it needs COPY_SRC usage");
            }
            if offset % 4 != 0 {
                return bad(what, "the offset must be a multiple of 4");
            }
        }
        let n = rows.rows;
        let row_bytes = self.dim as u64 * 4;
        if rows.offset + n as u64 * row_bytes > rows.buffer.size()
            || labels.offset + n as u64 * 4 > labels.buffer.size()
        {
            return bad(
                "pushed rows",
                "the rows or labels run past the buffer's end",
            );
        }
        // Only the last `capacity` rows can stay.
        let skip = n.saturating_sub(self.capacity);
        let mut copies = Vec::new();
        let (mut from, mut left) = (skip, n - skip);
        while left > 0 {
            let run = left.min(self.capacity - self.next);
            copies.push((from, self.next, run));
            self.next = (self.next + run) % self.capacity;
            self.len = (self.len + run).min(self.capacity);
            from += run;
            left -= run;
        }
        let record = |enc: &mut wgpu::CommandEncoder| {
            for &(from, slot, run) in &copies {
                enc.copy_buffer_to_buffer(
                    rows.buffer,
                    rows.offset + from as u64 * row_bytes,
                    &self.rows,
                    slot as u64 * row_bytes,
                    run as u64 * row_bytes,
                );
                enc.copy_buffer_to_buffer(
                    labels.buffer,
                    labels.offset + from as u64 * 4,
                    &self.labels,
                    slot as u64 * 4,
                    run as u64 * 4,
                );
            }
        };
        match target {
            Target::Encoder(enc) => record(enc),
            Target::Submit => {
                let mut enc = gpu.device().create_command_encoder(&Default::default());
                record(&mut enc);
                gpu.queue().submit([enc.finish()]);
            }
        }
        Ok(())
    }

    /// Rows it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Valid rows: the rows pushed so far, at most the capacity.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True once the capacity is reached (a push then overwrites the oldest rows).
    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// The slot of the oldest row (0 until the queue is full).
    pub fn oldest(&self) -> usize {
        if self.is_full() {
            self.next
        } else {
            0
        }
    }

    /// The valid rows, in slot order.
    pub fn rows(&self) -> DeviceRows<'_> {
        DeviceRows::new(&self.rows, self.len, self.dim)
    }

    /// Their class ids.
    pub fn labels(&self) -> DeviceLabels<'_> {
        DeviceLabels::new(&self.labels)
    }

    /// The valid rows as a detached reference set (no pair excluded, no gradient).
    pub fn reference(&self) -> DeviceReference<'_> {
        DeviceReference {
            rows: self.rows(),
            labels: self.labels(),
            queries_at: None,
            grad: None,
        }
    }
}

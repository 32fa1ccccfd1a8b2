//! The adapter's own FMA throughput and storage bandwidth, measured in the caller's process
//! (shaders/probe.wgsl), so that a loss kernel's speed can be stated as a fraction of what
//! this adapter can do rather than of a datasheet.

use crate::engine::rows::GradLayout;
use std::time::Instant;

use bytemuck::{Pod, Zeroable};

use super::gpu::Gpu;
#[cfg(test)]
use super::kernel::Layout;
use super::kernel::{mirrored, Kernel, Slot, Step, Table};
use super::shader::Module;
use crate::error::Result;

static MODULE: Module = Module {
    file: "probe.wgsl",
    source: include_str!("../../shaders/probe.wgsl"),
    includes: &[],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

/// Keep in sync with `ProbeParams` in shaders/probe.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct ProbeParams {
    iters: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
mirrored!(ProbeParams, "ProbeParams", [iters, _pad0, _pad1, _pad2]);

const OUT: Slot = Slot::read_write(1, "out");
const DATA: Slot = Slot::read(2, "data");

static FMA: Kernel<ProbeParams> = Kernel::new(&MODULE, "probe_fma", &[OUT]);
static STREAM: Kernel<ProbeParams> = Kernel::new(&MODULE, "probe_stream", &[OUT, DATA]);

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[&FMA.info, &STREAM.info],
    #[cfg(test)]
    structs: &[Layout::of::<ProbeParams>()],
};

/// Workgroups of the probes (64 invocations each): enough to fill any adapter.
const GROUPS: u64 = 2048;
/// FLOPs per invocation and step of probe_fma: 8 vec4 FMAs.
const FLOPS_PER_STEP: f64 = 64.0;
/// A probe is repeated with more work until one run takes at least this long.
const MIN_SECONDS: f64 = 0.25;

/// What [`Gpu::probe_peak`] measured.
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    /// FP32 FLOP/s of a register-only kernel of independent FMA chains (an FMA is 2 FLOPs).
    pub fma_flops: f64,
    /// Bytes/s read from a storage buffer by a streaming kernel.
    pub storage_bytes_per_s: f64,
}

impl Gpu {
    /// Measures this adapter's FMA throughput and storage read bandwidth (about a second on
    /// a software adapter): the ceilings `metric-loss bench --peak` reports.
    pub fn probe_peak(&self) -> Result<Peak> {
        Ok(Peak {
            fma_flops: self.probe_fma()?,
            storage_bytes_per_s: self.probe_storage()?,
        })
    }

    /// Runs `steps` once (one submit, a 16-byte read back) and returns the wall time.
    fn probe_run(
        &self,
        out: &wgpu::Buffer,
        steps: &dyn Fn(&mut super::recorder::Recorder<'_>) -> Vec<Step>,
    ) -> Result<f64> {
        let start = Instant::now();
        self.execute("probing the adapter", 0.0, |rec| {
            let s = steps(rec);
            rec.record(&s)?;
            let o = rec.external(out, 0, 16);
            rec.read_back(&o, 16);
            Ok(())
        })?;
        Ok(start.elapsed().as_secs_f64())
    }

    fn probe_out(&self) -> wgpu::Buffer {
        self.storage_buffer("probe_out", &vec![0u8; (GROUPS * 64 * 16) as usize])
    }

    /// FP32 FLOP/s of a register-only kernel (no buffer beyond one vec4 per invocation),
    /// the ceiling every `metric-loss bench` result is reported against.
    pub fn probe_fma(&self) -> Result<f64> {
        let out = self.probe_out();
        let mut iters = 64u32;
        loop {
            let t = self.probe_run(&out, &|rec| {
                let o = rec.external(&out, 0, out.size());
                let p = ProbeParams {
                    iters,
                    ..Default::default()
                };
                vec![Step::new(&FMA, p, GROUPS).bind(OUT, o)]
            })?;
            if t >= MIN_SECONDS || iters >= 1 << 24 {
                return Ok((GROUPS * 64) as f64 * f64::from(iters) * FLOPS_PER_STEP / t);
            }
            iters = iters.saturating_mul(if t < MIN_SECONDS / 16.0 { 8 } else { 2 });
        }
    }

    /// Bytes/s a streaming kernel reads from a storage buffer of up to 256 MiB (as large as
    /// one binding allows).
    pub fn probe_storage(&self) -> Result<f64> {
        let out = self.probe_out();
        let limits = self.limits();
        let bytes = (256u64 << 20)
            .min(limits.max_storage_buffer_binding_size)
            .min(limits.max_buffer_size)
            / 16
            * 16;
        let data = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("probe_data"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let mut passes = 1u32;
        loop {
            let t = self.probe_run(&out, &|rec| {
                let o = rec.external(&out, 0, out.size());
                let d = rec.external(&data, 0, bytes);
                let p = ProbeParams {
                    iters: passes,
                    ..Default::default()
                };
                vec![Step::new(&STREAM, p, GROUPS).bind(OUT, o).bind(DATA, d)]
            })?;
            if t >= MIN_SECONDS || passes >= 4096 {
                return Ok(f64::from(passes) * bytes as f64 / t);
            }
            passes *= if t < MIN_SECONDS / 16.0 { 8 } else { 2 };
        }
    }
}

//! `metric-loss info`: the adapter, its limits and features, and the pair engine's
//! configuration.

use std::process::ExitCode;

use metric_loss::{wgpu, Gpu};

use crate::Failure;

pub(crate) fn run() -> Result<ExitCode, Failure> {
    let gpu = Gpu::new()?;
    let a = gpu.adapter();
    let l = gpu.limits();
    out!("adapter:      {}", a.name);
    out!("graphics API: {}", a.backend);
    out!("driver:       {}", a.driver);
    out!("device type:  {}", a.device_type);
    out!("limits:");
    for (name, value) in [
        ("max_buffer_size", l.max_buffer_size),
        (
            "max_storage_buffer_binding_size",
            l.max_storage_buffer_binding_size,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            u64::from(l.max_storage_buffers_per_shader_stage),
        ),
        (
            "max_compute_workgroups_per_dimension",
            u64::from(l.max_compute_workgroups_per_dimension),
        ),
        (
            "max_compute_invocations_per_workgroup",
            u64::from(l.max_compute_invocations_per_workgroup),
        ),
        (
            "max_compute_workgroup_storage_size",
            u64::from(l.max_compute_workgroup_storage_size),
        ),
    ] {
        out!("  {name:<37} {value}");
    }
    let f = gpu.features();
    let names: Vec<&str> = [
        (wgpu::Features::SUBGROUP, "SUBGROUP"),
        (wgpu::Features::SHADER_F16, "SHADER_F16"),
        (wgpu::Features::SHADER_F64, "SHADER_F64"),
        (wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
        (
            wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
            "TIMESTAMP_QUERY_INSIDE_PASSES",
        ),
        (wgpu::Features::PIPELINE_CACHE, "PIPELINE_CACHE"),
    ]
    .into_iter()
    .filter(|(flag, _)| f.contains(*flag))
    .map(|(_, n)| n)
    .collect();
    out!(
        "features:     {}",
        if names.is_empty() {
            "(none of note)".into()
        } else {
            names.join(" ")
        }
    );
    let chosen = match std::env::var(metric_loss::ENGINE_ENV) {
        Ok(v) if !v.trim().is_empty() => metric_loss::ENGINE_ENV,
        _ => "automatic",
    };
    out!("pair engine:  {} ({chosen})", gpu.engine());
    Ok(ExitCode::SUCCESS)
}

//! Every assembled shader parses and validates with naga: no GPU needed.

use metric_loss::gpu::shader::{assemble, MODULES};
use wgpu::naga;

#[test]
fn every_module_parses_and_validates() {
    for (name, _) in MODULES {
        let src = assemble(name);
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        assert!(
            !module.entry_points.is_empty(),
            "{name} has no entry points"
        );
    }
}

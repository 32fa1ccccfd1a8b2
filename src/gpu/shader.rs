//! WGSL sources and the tiny resolver that joins shared snippets into kernel modules.
//!
//! Each module names the snippets it needs in [`MODULES`]; they are prepended in that order,
//! each once, with a marker comment so that naga's error positions can be traced back.
//! Sources are embedded with `include_str!`, so nothing is read at run time.

/// Every WGSL file under shaders/, by its path relative to that folder.
const SOURCES: &[(&str, &str)] = &[
    (
        "common/distance.wgsl",
        include_str!("../../shaders/common/distance.wgsl"),
    ),
    (
        "common/hinge.wgsl",
        include_str!("../../shaders/common/hinge.wgsl"),
    ),
    (
        "common/reduce.wgsl",
        include_str!("../../shaders/common/reduce.wgsl"),
    ),
    (
        "common/tile.wgsl",
        include_str!("../../shaders/common/tile.wgsl"),
    ),
    (
        "common/grad.wgsl",
        include_str!("../../shaders/common/grad.wgsl"),
    ),
    ("triplet.wgsl", include_str!("../../shaders/triplet.wgsl")),
    ("softmax.wgsl", include_str!("../../shaders/softmax.wgsl")),
    ("device.wgsl", include_str!("../../shaders/device.wgsl")),
    (
        "normalize.wgsl",
        include_str!("../../shaders/normalize.wgsl"),
    ),
    (
        "contrastive.wgsl",
        include_str!("../../shaders/contrastive.wgsl"),
    ),
];

/// The kernel modules (files with entry points) and the snippets each one includes.
pub const MODULES: &[(&str, &[&str])] = &[
    ("normalize.wgsl", &[]),
    ("device.wgsl", &[]),
    (
        "contrastive.wgsl",
        &[
            "common/distance.wgsl",
            "common/hinge.wgsl",
            "common/reduce.wgsl",
            "common/tile.wgsl",
            "common/grad.wgsl",
        ],
    ),
    (
        "triplet.wgsl",
        &[
            "common/distance.wgsl",
            "common/reduce.wgsl",
            "common/tile.wgsl",
        ],
    ),
    (
        "softmax.wgsl",
        &[
            "common/distance.wgsl",
            "common/reduce.wgsl",
            "common/tile.wgsl",
            "common/grad.wgsl",
        ],
    ),
];

fn source(name: &str) -> &'static str {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("no shader source named {name}"))
}

/// The module `name` with its snippets prepended, in the order listed in [`MODULES`].
pub fn assemble(name: &str) -> String {
    let (_, includes) = MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no shader module named {name}"));
    let mut out = String::new();
    for inc in includes.iter() {
        out.push_str(&format!("// ---- {inc} ----\n"));
        out.push_str(source(inc));
        out.push('\n');
    }
    out.push_str(&format!("// ---- {name} ----\n"));
    out.push_str(source(name));
    out
}

/// The bind-group layout entries of `entry` in the assembled module `source`: every global
/// the entry point uses (naga's analysis of the call graph, as wgpu's automatic layouts do),
/// with the uniform parameters bound at a dynamic offset so that one bind group serves every
/// dispatch of a call whatever its parameter slot.
pub(crate) fn layout_entries(
    module: &wgpu::naga::Module,
    info: &wgpu::naga::valid::ModuleInfo,
    entry: &str,
) -> Vec<wgpu::BindGroupLayoutEntry> {
    use wgpu::naga::AddressSpace;
    let index = module
        .entry_points
        .iter()
        .position(|e| e.name == entry)
        .unwrap_or_else(|| panic!("no entry point named {entry}"));
    let uses = info.get_entry_point(index);
    let mut out: Vec<wgpu::BindGroupLayoutEntry> = module
        .global_variables
        .iter()
        .filter(|(handle, _)| !uses[*handle].is_empty())
        .filter_map(|(_, var)| {
            let binding = var.binding.as_ref()?.binding;
            let ty = match var.space {
                AddressSpace::Uniform => wgpu::BufferBindingType::Uniform,
                AddressSpace::Storage { access } => wgpu::BufferBindingType::Storage {
                    read_only: !access.contains(wgpu::naga::StorageAccess::STORE),
                },
                _ => return None,
            };
            Some(wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    has_dynamic_offset: ty == wgpu::BufferBindingType::Uniform,
                    ty,
                    min_binding_size: None,
                },
                count: None,
            })
        })
        .collect();
    out.sort_by_key(|e| e.binding);
    out
}

/// Parses and validates `src`, the assembled module `name` (for its layouts).
pub(crate) fn reflect(
    name: &str,
    src: &str,
) -> (wgpu::naga::Module, wgpu::naga::valid::ModuleInfo) {
    let module = wgpu::naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let info = wgpu::naga::valid::Validator::new(
        wgpu::naga::valid::ValidationFlags::all(),
        wgpu::naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    (module, info)
}

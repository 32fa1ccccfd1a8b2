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
    (
        "contrastive.wgsl",
        &[
            "common/distance.wgsl",
            "common/hinge.wgsl",
            "common/reduce.wgsl",
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

//! WGSL sources and the tiny resolver that joins shared snippets into kernel modules.
//!
//! A [`Module`] names the snippets it needs; they are prepended in that order, each with a
//! marker comment so that naga's error positions can be traced back. Sources are embedded
//! with `include_str!`, so nothing is read at run time.

/// A shared piece of WGSL under shaders/common/ (no entry points).
pub(crate) struct Snippet {
    /// Path relative to shaders/.
    pub file: &'static str,
    pub source: &'static str,
}

/// A WGSL file with entry points, and the snippets it includes.
pub(crate) struct Module {
    /// Path relative to shaders/.
    pub file: &'static str,
    pub source: &'static str,
    pub includes: &'static [&'static Snippet],
}

macro_rules! snippet {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: Snippet = Snippet {
            file: $file,
            source: include_str!(concat!("../../shaders/", $file)),
        };
    };
}

snippet!(DISTANCE, "common/distance.wgsl");
snippet!(HINGE, "common/hinge.wgsl");
snippet!(REDUCE, "common/reduce.wgsl");
snippet!(SMOOTH, "common/smooth.wgsl");
snippet!(TILE, "common/tile.wgsl");
snippet!(TILE_CLASSES, "common/tile_classes.wgsl");
snippet!(TILE_GRAD, "common/tile_grad.wgsl");

impl Module {
    /// The module with its snippets prepended, in the order listed.
    pub fn assemble(&self) -> String {
        let mut out = String::new();
        for inc in self.includes {
            out.push_str(&format!("// ---- {} ----\n", inc.file));
            out.push_str(inc.source);
            out.push('\n');
        }
        out.push_str(&format!("// ---- {} ----\n", self.file));
        out.push_str(self.source);
        out
    }
}

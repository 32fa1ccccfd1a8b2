//! WGSL sources and the tiny resolver that joins shared snippets into kernel modules.
//!
//! A [`Module`] names the snippets it needs; they are prepended in that order, each with a
//! marker comment so that naga's error positions can be traced back. Sources are embedded
//! with `include_str!`, so nothing is read at run time.

use super::rows::{GradLayout, RowShape};

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
    /// The elementwise maps of a register-row module (common/rows.wgsl), each instantiating
    /// the engine's sweeps; empty for every other module. A register-row module is
    /// assembled per [`RowShape`], whose generated prelude comes first.
    pub maps: &'static [RowMap],
    /// How the module's `grad` is laid out, for the register-row gradient helpers.
    pub grad: GradLayout,
    /// The module this one builds on, assembled before it with its snippets: a
    /// register-row module's family module (its declarations, bindings and reductions).
    pub base: Option<&'static Module>,
}

/// An elementwise map of a register-row module: the prefix of its hooks, and whether it
/// has a gradient sweep.
pub(crate) struct RowMap {
    pub name: &'static str,
    pub grad: bool,
}

/// The lines of common/rows.wgsl after which the engine is instantiated once per map, and
/// once per map with a gradient.
const PER_MAP: &str = "// ---- per map ----";
const PER_GRAD_MAP: &str = "// ---- per map with gradient ----";

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
snippet!(ROW_ENGINE, "common/rows.wgsl");

impl Module {
    /// Whether this module holds register-row kernels (assembled per [`RowShape`]).
    pub fn rows(&self) -> bool {
        !self.maps.is_empty()
    }

    /// The engine's sweeps for each of the module's maps.
    fn engine(&self) -> String {
        let (shared, rest) = ROW_ENGINE
            .source
            .split_once(PER_MAP)
            .expect("common/rows.wgsl has its per-map marker");
        let (sweep, sweep_grad) = rest
            .split_once(PER_GRAD_MAP)
            .expect("common/rows.wgsl has its per-gradient-map marker");
        let mut out = format!("// ---- {} ----\n{shared}", ROW_ENGINE.file);
        for map in self.maps {
            let prefix = format!("{}_", map.name);
            out.push_str(&format!(
                "// ---- {} for the map {} ----",
                ROW_ENGINE.file, map.name
            ));
            out.push_str(&sweep.replace("MAP_", &prefix));
            if map.grad {
                out.push_str(&sweep_grad.replace("MAP_", &prefix));
            }
        }
        out
    }
}

impl Module {
    /// The module with its snippets prepended, in the order listed, after the prelude of
    /// `shape` (register-row modules only).
    pub fn assemble(&self, shape: Option<&RowShape>) -> String {
        let mut out = String::new();
        if let Some(shape) = shape {
            out.push_str(&shape.prelude(self.grad));
            out.push_str(&self.engine());
        }
        self.push_sources(&mut out);
        out
    }

    /// The base module's sources, then the snippets, then this file.
    fn push_sources(&self, out: &mut String) {
        if let Some(base) = self.base {
            base.push_sources(out);
            out.push('\n');
        }
        for inc in self.includes {
            out.push_str(&format!("// ---- {} ----\n", inc.file));
            out.push_str(inc.source);
            out.push('\n');
        }
        out.push_str(&format!("// ---- {} ----\n", self.file));
        out.push_str(self.source);
    }
}

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
    /// The elementwise maps of a pair-engine module, each instantiating the engine's sweeps
    /// (common/rows.wgsl or common/staged.wgsl); empty for every other module. A
    /// pair-engine module is assembled per [`RowShape`], whose generated prelude comes
    /// first.
    pub maps: &'static [RowMap],
    /// How the module's `grad` is laid out, for the engine's gradient helpers.
    pub grad: GradLayout,
    /// Whether the module builds on the staged shape too (false: its entry points use the
    /// register-row helpers themselves, and run on register shapes only).
    pub staged: bool,
    /// The module this one builds on, assembled before it with its snippets: a
    /// pair-engine module's family module (its declarations, bindings and reductions).
    pub base: Option<&'static Module>,
}

/// An elementwise map of a pair-engine module: the prefix of its hooks, and whether it
/// has a gradient sweep.
pub(crate) struct RowMap {
    pub name: &'static str,
    pub grad: bool,
}

/// The lines of each engine template after which it is instantiated once per map, and once
/// per map with a gradient.
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
snippet!(TRANSFER, "common/transfer.wgsl");
snippet!(HINGE, "common/hinge.wgsl");
snippet!(REDUCE, "common/reduce.wgsl");
snippet!(SMOOTH, "common/smooth.wgsl");
snippet!(LOGSUMEXP, "common/logsumexp.wgsl");
snippet!(ROW_ENGINE, "common/rows.wgsl");
snippet!(STAGED_ENGINE, "common/staged.wgsl");

impl Module {
    /// Whether the module reads or writes f16 values (it enables WGSL's `f16`): it is built
    /// only on devices with `SHADER_F16`.
    pub fn half(&self) -> bool {
        self.source.starts_with("enable f16;")
    }

    /// Whether this module holds pair-engine kernels (assembled per [`RowShape`]).
    pub fn rows(&self) -> bool {
        !self.maps.is_empty()
    }

    /// Whether the module can be assembled for `shape`.
    pub fn builds_on(&self, shape: &RowShape) -> bool {
        self.rows() && (self.staged || matches!(shape, RowShape::Registers(_)))
    }

    /// The engine's sweeps of `shape`'s template for each of the module's maps.
    fn engine(&self, shape: &RowShape) -> String {
        let template = match shape {
            RowShape::Registers(_) => &ROW_ENGINE,
            RowShape::Staged { .. } => &STAGED_ENGINE,
        };
        let (shared, rest) = template
            .source
            .split_once(PER_MAP)
            .expect("an engine template has its per-map marker");
        let (sweep, sweep_grad) = rest
            .split_once(PER_GRAD_MAP)
            .expect("an engine template has its per-gradient-map marker");
        let mut out = format!("// ---- {} ----\n{shared}", template.file);
        for map in self.maps {
            let prefix = format!("{}_", map.name);
            out.push_str(&format!(
                "// ---- {} for the map {} ----",
                template.file, map.name
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
    /// The module with its snippets prepended, in the order listed, after the prelude and
    /// engine of `shape` (pair-engine modules only).
    pub fn assemble(&self, shape: Option<&RowShape>) -> String {
        let mut out = String::new();
        if let Some(shape) = shape {
            debug_assert!(self.builds_on(shape), "{} on {shape:?}", self.file);
            out.push_str(&shape.prelude(self.grad));
            out.push_str(&self.engine(shape));
        }
        self.push_sources(&mut out);
        out
    }

    /// This file's `enable` directives (WGSL wants them before every declaration), the base
    /// module's sources, then the snippets, then the rest of this file.
    fn push_sources(&self, out: &mut String) {
        let body = self.source.trim_start();
        let directives = body
            .lines()
            .take_while(|l| l.starts_with("enable "))
            .map(|l| l.len() + 1)
            .sum::<usize>()
            .min(body.len());
        out.push_str(&body[..directives]);
        let body = &body[directives..];
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
        out.push_str(body);
    }
}

//! The pair engine's shapes ([`RowShape`]) and the register-row shape's generated WGSL
//! (shaders/common/rows.wgsl): what it needs unrolled for one row width.
//!
//! A row lives in registers as `RowV`, an array of `RW4` vec4s indexed only by constants,
//! so that the driver keeps it in registers rather than in scratch memory. WGSL cannot unroll
//! a loop or take a lane index that is not a constant, so every helper that touches a
//! `RowV` element by element is written out for the width. Widths come from a small set
//! ([`RowShape::for_dim4`]) so that few variants are ever compiled.

use std::fmt::Write as _;

use super::config::EngineConfig;

/// Widest row the register shape holds, in vec4s (128 values): wider rows spill the
/// registers of two rows and their gradients, and run on the staged shape.
pub(crate) const MAX_WIDTH4: u64 = 32;

/// Rows per workgroup of the pair engine's kernels (both shapes): 64 invocations, two rows
/// each.
pub(crate) const ROWS_PER_GROUP: u64 = 128;

/// How a pair-engine module stores gradients (the preludes' gradient helpers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GradLayout {
    /// No gradient helpers.
    None,
    /// `grad: array<f32>`, row-major, dim4 vec4s a row.
    Scalars,
    /// `grad: array<vec4<f32>>`, dim4 a row.
    Vec4s,
}

impl GradLayout {
    /// WGSL that reads vec4 `at` of `grad` (an expression) and the statement that writes
    /// `value` there; `None` without a gradient.
    pub fn access(self, at: &str, value: &str) -> Option<(String, String)> {
        match self {
            GradLayout::None => None,
            GradLayout::Scalars => Some((
                format!(
                    "vec4<f32>(grad[({at}) * 4u], grad[({at}) * 4u + 1u], \
                     grad[({at}) * 4u + 2u], grad[({at}) * 4u + 3u])"
                ),
                format!(
                    "grad[({at}) * 4u] = {value}.x; grad[({at}) * 4u + 1u] = {value}.y; \
                     grad[({at}) * 4u + 2u] = {value}.z; grad[({at}) * 4u + 3u] = {value}.w;"
                ),
            )),
            GradLayout::Vec4s => Some((format!("grad[{at}]"), format!("grad[{at}] = {value};"))),
        }
    }
}

/// `r[q] = <source>[b + q]` for the `w` vec4s of a row, zeros from vec4 `n` on (the index
/// clamped so that it stays inside the row; with n = 0, a row past the batch, every value
/// is 0 and the bounds-checked load's index does not matter).
fn load_each(s: &mut String, w: u32, source: &str) {
    for q in 0..w {
        let _ = writeln!(
            s,
            "    r[{q}] = select(vec4<f32>(0.0), {source}[b + min({q}u, n - 1u)], {q}u < n);"
        );
    }
}

/// One generated variant of the pair engine's kernels: register rows for a row width
/// (common/rows.wgsl), or workgroup-staged tiles for any width (common/staged.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RowShape {
    /// Two rows an invocation in registers.
    Registers(Registers),
    /// Tiles staged in workgroup memory with a register micro-tile per invocation.
    Staged {
        /// Dot products rather than squared differences.
        dot: bool,
    },
}

/// The register-row variant's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Registers {
    /// vec4s held per row (`RW4`); the call's rows have at most this many.
    pub width4: u32,
    /// Subgroup size the column broadcast is generated for; 0: every invocation loads each
    /// column itself.
    pub lanes: u32,
    /// Dot products (`S = X_I·X_Jᵀ`, gradient `W·X_J`) rather than squared differences
    /// (`Σ (u − v)²`, gradient `W·(X_I − X_J)`).
    pub dot: bool,
}

impl RowShape {
    /// The shape for rows of `dim4` vec4s under `config` (`lanes`: the adapter's fixed
    /// subgroup size, for [`EngineConfig::Rows`]): staged tiles under
    /// [`EngineConfig::Tile`] and for rows wider than [`MAX_WIDTH4`], else register rows.
    pub fn for_dim4(config: EngineConfig, lanes: Option<u32>, dim4: u64, dot: bool) -> Self {
        let lanes = match (config, lanes) {
            (EngineConfig::Rows, Some(lanes)) => lanes,
            (EngineConfig::RowsDirect, _) => 0,
            _ => return RowShape::Staged { dot },
        };
        if dim4 > MAX_WIDTH4 {
            return RowShape::Staged { dot };
        }
        // 1, 2, 4, 8, then multiples of 8: at most 7 widths, at most 7/8 of a width wasted
        // above 8.
        let width4 = if dim4 <= 8 {
            dim4.max(1).next_power_of_two()
        } else {
            dim4.div_ceil(8) * 8
        };
        RowShape::Registers(Registers {
            width4: width4 as u32,
            lanes,
            dot,
        })
    }

    /// Whether the shape uses subgroup operations.
    #[cfg(test)]
    pub fn subgroups(&self) -> bool {
        matches!(self, RowShape::Registers(r) if r.lanes > 0)
    }

    /// The generated WGSL the shape's template needs (see [`Registers::prelude`] and
    /// [`super::staged::prelude`]).
    pub fn prelude(&self, grad: GradLayout) -> String {
        match self {
            RowShape::Registers(r) => r.prelude(grad),
            RowShape::Staged { dot } => {
                super::staged::prelude(*dot, grad.access("l * params.dim4 + q", "v"))
            }
        }
    }

    /// Every shape the contract test validates for a module: each width, both forms, with
    /// and without broadcasts, and the staged shape in both forms.
    #[cfg(test)]
    pub fn all() -> Vec<Self> {
        let mut out = vec![
            RowShape::Staged { dot: false },
            RowShape::Staged { dot: true },
        ];
        for width4 in [1, 2, 4, 8, 16, 24, 32] {
            for lanes in [0, 8, 32] {
                for dot in [false, true] {
                    out.push(RowShape::Registers(Registers { width4, lanes, dot }));
                }
            }
        }
        out
    }
}

impl Registers {
    /// vec4s each lane loads of a broadcast column.
    fn per_lane(&self) -> u32 {
        self.width4.div_ceil(self.lanes.max(1))
    }

    /// The generated WGSL: constants, the `RowsIds` entry-point input, and the unrolled
    /// helpers common/rows.wgsl documents (the gradient's in the module's `grad` layout).
    /// Depends on the including module's globals `rows`, `cols` (array<vec4<f32>>), `grad`
    /// (unless [`GradLayout::None`]) and `params` (field dim4).
    pub fn prelude(&self, grad: GradLayout) -> String {
        let w = self.width4;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "// Generated by src/engine/rows.rs: width {w} vec4s, {}, {} form.",
            if self.lanes > 0 {
                format!("{}-lane broadcast", self.lanes)
            } else {
                "direct loads".to_string()
            },
            if self.dot { "dot" } else { "difference" }
        );
        let _ = writeln!(s, "const RW4: u32 = {w}u;");
        // Lanes that share per-column values through rows_shuffle_u4 (1: none shared).
        let _ = writeln!(s, "const RW_LANES: u32 = {}u;", self.lanes.max(1));
        s.push_str("alias RowV = array<vec4<f32>, RW4>;\n");
        if self.lanes > 0 {
            s.push_str(
                "struct RowsIds {\n    @builtin(workgroup_id) wg: vec3<u32>,\n    \
                 @builtin(local_invocation_index) lid: u32,\n    \
                 @builtin(subgroup_invocation_id) lane: u32,\n}\n",
            );
        } else {
            s.push_str(
                "struct RowsIds {\n    @builtin(workgroup_id) wg: vec3<u32>,\n    \
                 @builtin(local_invocation_index) lid: u32,\n}\n",
            );
        }
        // A lane's index for values shared by rows_shuffle_u4, the sharing itself, and
        // whether any lane of the subgroup holds a condition (uniform when broadcasting, so
        // a branch on it can skip work for the whole subgroup).
        if self.lanes > 0 {
            s.push_str(
                "fn rows_lane(ids: RowsIds) -> u32 {\n    return ids.lane;\n}\n\
                 fn rows_shuffle_u4(v: vec4<u32>, k: u32) -> vec4<u32> {\n    \
                 return subgroupShuffle(v, k);\n}\n\
                 fn rows_any(b: bool) -> bool {\n    return subgroupAny(b);\n}\n",
            );
        } else {
            s.push_str(
                "fn rows_lane(ids: RowsIds) -> u32 {\n    return 0u;\n}\n\
                 fn rows_shuffle_u4(v: vec4<u32>, k: u32) -> vec4<u32> {\n    return v;\n}\n\
                 fn rows_any(b: bool) -> bool {\n    return b;\n}\n",
            );
        }
        // Column j of the column window loaded by this invocation alone (divergent code).
        s.push_str("fn rows_load_col(j: u32) -> RowV {\n    var r: RowV;\n    let b = j * params.dim4;\n    let n = params.dim4;\n");
        load_each(&mut s, w, "cols");
        s.push_str("    return r;\n}\n");
        // Row `l` of the row window, zeros past `n` vec4s (n = 0 for rows past the batch).
        s.push_str("fn rows_read(l: u32, n: u32) -> RowV {\n    var r: RowV;\n    let b = l * params.dim4;\n");
        load_each(&mut s, w, "rows");
        s.push_str("    return r;\n}\n");
        // Column j of the column window.
        s.push_str("fn rows_col(j: u32, ids: RowsIds) -> RowV {\n    var r: RowV;\n    let b = j * params.dim4;\n    let n = params.dim4;\n");
        if self.lanes > 0 {
            let p = self.per_lane();
            for m in 0..p {
                let _ = writeln!(
                    s,
                    "    let q{m} = ids.lane * {p}u + {m}u;\n    \
                     let k{m} = select(vec4<f32>(0.0), cols[b + min(q{m}, n - 1u)], q{m} < n);"
                );
            }
            for q in 0..w {
                let _ = writeln!(s, "    r[{q}] = subgroupBroadcast(k{}, {}u);", q % p, q / p);
            }
        } else {
            load_each(&mut s, w, "cols");
        }
        s.push_str("    return r;\n}\n");
        // S: the dot product or squared distance, two accumulators (even, odd vec4s).
        s.push_str("fn rows_pair(x: RowV, v: RowV) -> f32 {\n    var a = vec4<f32>(0.0);\n    var b = vec4<f32>(0.0);\n");
        for q in 0..w {
            let acc = if q % 2 == 0 { "a" } else { "b" };
            if self.dot {
                let _ = writeln!(s, "    {acc} = fma(x[{q}], v[{q}], {acc});");
            } else {
                let _ = writeln!(
                    s,
                    "    {{ let t = x[{q}] - v[{q}]; {acc} = fma(t, t, {acc}); }}"
                );
            }
        }
        s.push_str("    let c = a + b;\n    return (c.x + c.y) + (c.z + c.w);\n}\n");
        // The gradient update of one pair.
        s.push_str("fn rows_axpy(g: RowV, w: f32, x: RowV, v: RowV) -> RowV {\n    var r: RowV;\n    let s = vec4<f32>(w);\n");
        for q in 0..w {
            if self.dot {
                let _ = writeln!(s, "    r[{q}] = fma(s, v[{q}], g[{q}]);");
            } else {
                let _ = writeln!(s, "    r[{q}] = fma(s, x[{q}] - v[{q}], g[{q}]);");
            }
        }
        s.push_str("    return r;\n}\n");
        let Some((read, write)) = grad.access("b + {q}u", "g[{q}]") else {
            return s;
        };
        s.push_str("fn rows_grad_read(l: u32, n: u32) -> RowV {\n    var r: RowV;\n    let b = l * params.dim4;\n");
        for q in 0..w {
            let _ = writeln!(
                s,
                "    if ({q}u < n) {{ r[{q}] = {}; }}",
                read.replace("{q}", &q.to_string())
            );
        }
        s.push_str("    return r;\n}\n");
        s.push_str("fn rows_grad_write(l: u32, n: u32, g: RowV) {\n    let b = l * params.dim4;\n");
        for q in 0..w {
            let _ = writeln!(
                s,
                "    if ({q}u < n) {{ {} }}",
                write.replace("{q}", &q.to_string())
            );
        }
        s.push_str("}\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registers(shape: RowShape) -> Registers {
        match shape {
            RowShape::Registers(r) => r,
            RowShape::Staged { .. } => panic!("{shape:?}: not register rows"),
        }
    }

    #[test]
    fn widths_come_from_a_small_set() {
        let widths: std::collections::BTreeSet<u32> = (1..=MAX_WIDTH4)
            .map(|d| registers(RowShape::for_dim4(EngineConfig::RowsDirect, None, d, false)).width4)
            .collect();
        assert_eq!(
            widths.into_iter().collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 24, 32]
        );
        for d in 1..=MAX_WIDTH4 {
            let w = registers(RowShape::for_dim4(EngineConfig::Rows, Some(8), d, true));
            assert!(u64::from(w.width4) >= d && w.lanes == 8);
        }
        let staged = |dot| RowShape::Staged { dot };
        assert_eq!(
            RowShape::for_dim4(EngineConfig::Rows, Some(8), MAX_WIDTH4 + 1, true),
            staged(true)
        );
        assert_eq!(
            RowShape::for_dim4(EngineConfig::Rows, None, 4, true),
            staged(true)
        );
        assert_eq!(
            RowShape::for_dim4(EngineConfig::Tile, Some(8), 4, false),
            staged(false)
        );
    }
}

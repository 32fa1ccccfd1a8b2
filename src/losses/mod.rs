//! The loss families, one folder each with the same files: `mod.rs` (options and public
//! calls), `kernels.rs` (the shader's entry points and bindings), `steps.rs` (its dispatches,
//! the [`crate::engine::call::LossCall`] it implements), `reference.rs` (the f64 mirror),
//! `tolerance.rs` (the tolerance rule's scales) and `limit.rs` (the magnitude limit).

pub mod contrastive;
pub mod proxy;
pub mod sigmoid;
pub mod softmax;
pub mod triplet;
pub mod weighting;

use crate::engine::kernel::Table;
use crate::engine::{DeviceLoss, Gpu};
use crate::error::Result;
use crate::input::{DeviceGrad, DeviceLabels, DeviceRows, Embeddings, Labels, Target};
use crate::options::{Counts, Grads, LossOutput};
use crate::tolerance::Verdict;

/// The `batch` calls every family has (a labelled batch of rows), as a trait: for code that
/// switches losses, e.g. `fn step<L: BatchLoss>(loss: &L, ...)`. Each method is the
/// family's inherent method of the same name.
pub trait BatchLoss {
    /// The family's counts.
    type Counts: Counts;
    /// The loss and, with [`Grads::Compute`], `[dL/dX]` on host slices.
    fn batch(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<LossOutput<Self::Counts>>;
    /// The f64 CPU reference of [`BatchLoss::batch`].
    fn batch_cpu(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<LossOutput<Self::Counts>>;
    /// [`BatchLoss::batch`] on the caller's device buffers (see [`crate::device`]).
    fn batch_device(
        &self,
        gpu: &Gpu,
        x: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss>;
    /// Both paths compared under the tolerance rule.
    fn batch_check(&self, gpu: &Gpu, x: &Embeddings<'_>, labels: &Labels) -> Result<Verdict>;
}

macro_rules! batch_loss {
    ($ty:ty, $counts:ty) => {
        impl BatchLoss for $ty {
            type Counts = $counts;
            fn batch(
                &self,
                gpu: &Gpu,
                x: &Embeddings<'_>,
                labels: &Labels,
                grads: Grads,
            ) -> Result<LossOutput<$counts>> {
                <$ty>::batch(self, gpu, x, labels, grads)
            }
            fn batch_cpu(
                &self,
                x: &Embeddings<'_>,
                labels: &Labels,
                grads: Grads,
            ) -> Result<LossOutput<$counts>> {
                <$ty>::batch_cpu(self, x, labels, grads)
            }
            fn batch_device(
                &self,
                gpu: &Gpu,
                x: DeviceRows<'_>,
                labels: DeviceLabels<'_>,
                grad: Option<DeviceGrad<'_>>,
                target: Target<'_>,
            ) -> Result<DeviceLoss> {
                <$ty>::batch_device(self, gpu, x, labels, grad, target)
            }
            fn batch_check(
                &self,
                gpu: &Gpu,
                x: &Embeddings<'_>,
                labels: &Labels,
            ) -> Result<Verdict> {
                <$ty>::batch_check(self, gpu, x, labels)
            }
        }
    };
}

batch_loss!(contrastive::Contrastive, contrastive::ContrastiveCounts);
batch_loss!(triplet::Triplet, triplet::TripletCounts);
batch_loss!(softmax::Softmax, softmax::SoftmaxCounts);
batch_loss!(weighting::Weighting, weighting::WeightingCounts);

/// Every module's table of entry points: the engine's and each family's.
pub(crate) static TABLES: [&Table; 18] = [
    &crate::engine::sides::TABLE,
    &crate::engine::resident::TABLE,
    &crate::engine::resident::HALF_TABLE,
    &crate::engine::probe::TABLE,
    &contrastive::TABLE,
    &contrastive::ROWS_TABLE,
    &triplet::TABLE,
    &triplet::ROWS_TABLE,
    &triplet::HARD_TABLE,
    &softmax::TABLE,
    &softmax::ROWS_TABLE,
    &sigmoid::TABLE,
    &sigmoid::ROWS_TABLE,
    &weighting::TABLE,
    &weighting::ROWS_TABLE,
    &proxy::TABLE,
    &proxy::ROWS_TABLE,
    &crate::measure::TABLE,
];

impl Gpu {
    /// Builds every kernel's pipeline now rather than at its first use, so that the first
    /// training step (or a benchmark's first call) does not pay for shader compilation (the
    /// f16 gather and scatter only where the device has `SHADER_F16`).
    pub fn prepare(&self) -> Result<()> {
        let f16 = self.supports_f16();
        let kernels: Vec<_> = TABLES
            .iter()
            .flat_map(|t| t.kernels.iter().copied())
            .filter(|k| f16 || !k.module.half())
            .collect();
        self.prepare_kernels(&kernels)
    }
}

#[cfg(test)]
mod tests {
    //! The Rust–WGSL contract, checked against naga's reflection of every assembled module
    //! (no GPU needed): every entry point the host dispatches exists, binds exactly its
    //! table's slots (numbers, names, uniform vs storage, read-only vs read-write), takes a
    //! parameter struct of the size the host writes; every mirrored struct has the host's
    //! fields at the host's offsets; and no entry point is left out of a table.

    use super::TABLES;
    use crate::engine::kernel::{self, Access, Slot, PARAMS};
    use crate::engine::rows::{Registers, RowShape};
    use wgpu::naga;

    /// The shape the pair-engine modules are checked with (every shape is validated by
    /// `every_row_shape_validates`).
    const SHAPE: RowShape = RowShape::Registers(Registers {
        width4: 8,
        lanes: 8,
        dot: false,
    });

    fn parse(table: &kernel::Table) -> (naga::Module, naga::valid::ModuleInfo, String) {
        let shape = table.module.rows().then_some(SHAPE);
        parse_shaped(table.module, shape.as_ref())
    }

    /// Parses and validates `module` (with `shape`'s prelude), allowing subgroup operations
    /// only when the shape broadcasts: a direct shape must run on devices without them.
    fn parse_shaped(
        module: &crate::engine::shader::Module,
        shape: Option<&RowShape>,
    ) -> (naga::Module, naga::valid::ModuleInfo, String) {
        let src = module.assemble(shape);
        let parsed = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", module.file, e.emit_to_string(&src)));
        let mut caps = if shape.is_some_and(|s| s.subgroups()) {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        if module.half() {
            caps |= naga::valid::Capabilities::SHADER_FLOAT16;
        }
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&parsed)
            .unwrap_or_else(|e| panic!("{} {shape:?}: {}", module.file, e.emit_to_string(&src)));
        (parsed, info, src)
    }

    #[test]
    fn every_row_shape_validates() {
        for table in TABLES.iter().filter(|t| t.module.rows()) {
            for shape in RowShape::all() {
                if table.module.builds_on(&shape) {
                    parse_shaped(table.module, Some(&shape));
                }
            }
        }
    }

    /// The globals entry point `index` uses, as slots (naga's analysis of the call graph).
    fn used_slots(
        module: &naga::Module,
        info: &naga::valid::ModuleInfo,
        index: usize,
    ) -> Vec<Slot> {
        let uses = info.get_entry_point(index);
        let mut out: Vec<Slot> = module
            .global_variables
            .iter()
            .filter(|(handle, _)| !uses[*handle].is_empty())
            .filter_map(|(_, var)| {
                let binding = var.binding.as_ref()?;
                assert_eq!(binding.group, 0, "{:?}: group", var.name);
                let access = match var.space {
                    naga::AddressSpace::Uniform => Access::Uniform,
                    naga::AddressSpace::Storage { access } => {
                        if access.contains(naga::StorageAccess::STORE) {
                            Access::ReadWrite
                        } else {
                            Access::Read
                        }
                    }
                    _ => return None,
                };
                let name: &'static str = Box::leak(var.name.clone()?.into_boxed_str());
                Some(Slot {
                    binding: binding.binding,
                    name,
                    access,
                })
            })
            .collect();
        out.sort_by_key(|s| s.binding);
        out
    }

    #[test]
    fn every_kernel_table_matches_its_shader() {
        let mut entries = std::collections::HashSet::new();
        let all: Vec<&str> = TABLES
            .iter()
            .flat_map(|t| t.kernels.iter().map(|k| k.entry))
            .collect();
        for table in TABLES {
            let (module, info, _) = parse(table);
            for k in table.kernels {
                assert!(entries.insert(k.entry), "{}: entry named twice", k.entry);
                assert!(std::ptr::eq(k.module, table.module), "{}: module", k.entry);
                let index = module
                    .entry_points
                    .iter()
                    .position(|e| e.name == k.entry)
                    .unwrap_or_else(|| panic!("{}: no such entry point", k.entry));
                let mut expected: Vec<Slot> = std::iter::once(PARAMS)
                    .chain(k.slots.iter().copied())
                    .collect();
                expected.sort_by_key(|s| s.binding);
                assert_eq!(used_slots(&module, &info, index), expected, "{}", k.entry);
                // The uniform's WGSL type is the parameter struct the host writes.
                let params = module
                    .global_variables
                    .iter()
                    .find(|(_, v)| v.binding.as_ref().is_some_and(|b| b.binding == 0))
                    .map(|(_, v)| v.ty)
                    .expect("binding 0");
                let size = module.types[params].inner.size(module.to_ctx()) as usize;
                assert_eq!(size, k.params_size, "{}: parameter struct size", k.entry);
            }
            // A register-row module includes its family's module (and its entry points).
            for e in &module.entry_points {
                assert!(
                    all.contains(&e.name.as_str()),
                    "{}: entry point {} is in no table",
                    table.module.file,
                    e.name
                );
            }
        }
    }

    #[test]
    fn every_mirrored_struct_has_the_hosts_layout() {
        for table in TABLES {
            let (module, _, _) = parse(table);
            for s in table.structs {
                let (_, ty) = module
                    .types
                    .iter()
                    .find(|(_, t)| t.name.as_deref() == Some(s.wgsl))
                    .unwrap_or_else(|| panic!("{}: no struct {}", table.module.file, s.wgsl));
                let naga::TypeInner::Struct { members, span } = &ty.inner else {
                    panic!("{} is not a struct", s.wgsl);
                };
                assert_eq!(*span as usize, s.size, "{}: size", s.wgsl);
                let wgsl: Vec<(&str, usize)> = members
                    .iter()
                    .map(|m| (m.name.as_deref().unwrap_or(""), m.offset as usize))
                    .collect();
                assert_eq!(wgsl, s.fields.to_vec(), "{}: fields and offsets", s.wgsl);
            }
        }
    }

    #[test]
    fn the_device_requirements_cover_every_kernel() {
        let mut storage = 0;
        let mut workgroup = 0;
        let mut invocations = 0;
        // Every shape a module is assembled in: the staged one has the most workgroup memory.
        let assembled = TABLES.iter().flat_map(|t| {
            let shapes: Vec<Option<RowShape>> = if t.module.rows() {
                RowShape::all()
                    .into_iter()
                    .filter(|s| t.module.builds_on(s))
                    .map(Some)
                    .collect()
            } else {
                vec![None]
            };
            shapes
                .into_iter()
                .map(move |s| parse_shaped(t.module, s.as_ref()))
        });
        for (module, info, _) in assembled {
            for (index, e) in module.entry_points.iter().enumerate() {
                let uses = info.get_entry_point(index);
                storage = storage.max(
                    module
                        .global_variables
                        .iter()
                        .filter(|(h, v)| {
                            !uses[*h].is_empty()
                                && matches!(v.space, naga::AddressSpace::Storage { .. })
                        })
                        .count() as u32,
                );
                let bytes: u32 = module
                    .global_variables
                    .iter()
                    .filter(|(h, v)| {
                        !uses[*h].is_empty() && v.space == naga::AddressSpace::WorkGroup
                    })
                    .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
                    .sum();
                workgroup = workgroup.max(bytes);
                invocations = invocations.max(e.workgroup_size.iter().product::<u32>());
            }
        }
        assert_eq!(
            storage,
            kernel::STORAGE_BUFFERS_PER_STAGE,
            "storage buffers"
        );
        assert_eq!(
            workgroup,
            kernel::WORKGROUP_STORAGE_BYTES,
            "workgroup bytes"
        );
        assert_eq!(
            invocations,
            kernel::INVOCATIONS_PER_WORKGROUP,
            "invocations"
        );
    }
}

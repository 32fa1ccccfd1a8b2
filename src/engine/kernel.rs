//! The typed contract between the host and the WGSL entry points it dispatches.
//!
//! Each entry point is a [`Kernel`] value: its module, its name, the named [`Slot`]s it binds
//! and (as a type parameter) the uniform parameter struct at binding 0. A [`Step`] binds
//! buffers to slots by name and is checked against its kernel before it is recorded. The
//! tables are checked against naga's reflection of the shaders by a test that needs no GPU
//! (`losses::tests`), and the bind-group layouts are built from them.

use std::marker::PhantomData;

use crate::engine::rows::RowShape;
use crate::engine::shader::Module;
use crate::error::{Error, Result};

/// How a slot is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// `var<uniform>` (binding 0, the parameters, at a dynamic offset).
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// A binding of a module: its number, the WGSL global's name and how it is accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub binding: u32,
    pub name: &'static str,
    pub access: Access,
}

impl Slot {
    pub const fn read(binding: u32, name: &'static str) -> Self {
        Self {
            binding,
            name,
            access: Access::Read,
        }
    }

    pub const fn read_write(binding: u32, name: &'static str) -> Self {
        Self {
            binding,
            name,
            access: Access::ReadWrite,
        }
    }
}

/// The pair engine's bindings, the same number and name in every module on it: the row
/// window's rows, the column window's, and their class ids (the last two where the module
/// has class ids).
pub(crate) const ROWS: Slot = Slot::read(1, "rows");
pub(crate) const COLS: Slot = Slot::read(2, "cols");
pub(crate) const ROW_CLASS: Slot = Slot::read(3, "row_class");
pub(crate) const COL_CLASS: Slot = Slot::read(4, "col_class");

/// Binding 0 of every module: the dispatch's uniform parameters.
pub(crate) const PARAMS: Slot = Slot {
    binding: 0,
    name: "params",
    access: Access::Uniform,
};

/// A window of a buffer bound to a kernel: `size` bytes from `offset`.
#[derive(Clone)]
pub(crate) struct Bound {
    pub buffer: wgpu::Buffer,
    pub id: u64,
    pub offset: u64,
    pub size: u64,
}

impl Bound {
    /// The window `[offset, offset + size)` of this buffer.
    pub fn window(&self, offset: u64, size: u64) -> Bound {
        Bound {
            buffer: self.buffer.clone(),
            id: self.id,
            offset,
            size,
        }
    }
}

/// An entry point without its parameter type (what tables and the pipeline cache hold).
pub(crate) struct KernelInfo {
    pub module: &'static Module,
    pub entry: &'static str,
    /// The storage slots it uses ([`PARAMS`] is implied).
    pub slots: &'static [Slot],
    /// Bytes of its parameter struct (the WGSL uniform struct's size).
    #[cfg(test)]
    pub params_size: usize,
}

/// An entry point whose uniform parameters are a `P`.
pub(crate) struct Kernel<P> {
    pub info: KernelInfo,
    params: PhantomData<fn(P)>,
}

impl<P: bytemuck::Pod> Kernel<P> {
    pub const fn new(module: &'static Module, entry: &'static str, slots: &'static [Slot]) -> Self {
        Self {
            info: KernelInfo {
                module,
                entry,
                slots,
                #[cfg(test)]
                params_size: std::mem::size_of::<P>(),
            },
            params: PhantomData,
        }
    }
}

impl KernelInfo {
    /// The bind-group layout: the parameters at a dynamic offset, then every slot.
    pub fn layout_entries(&self) -> Vec<wgpu::BindGroupLayoutEntry> {
        std::iter::once(&PARAMS)
            .chain(self.slots)
            .map(|s| wgpu::BindGroupLayoutEntry {
                binding: s.binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match s.access {
                        Access::Uniform => wgpu::BufferBindingType::Uniform,
                        Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: s.access == Access::Uniform,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect()
    }
}

/// One dispatch: its kernel, parameters, buffers by slot and workgroup count.
pub(crate) struct Step {
    pub kernel: &'static KernelInfo,
    /// The generated variant of a register-row kernel (`None` for every other kernel).
    pub shape: Option<RowShape>,
    pub params: Vec<u8>,
    pub bindings: Vec<(Slot, Bound)>,
    pub groups: u64,
}

impl Step {
    pub fn new<P: bytemuck::Pod>(kernel: &'static Kernel<P>, params: P, groups: u64) -> Self {
        Self {
            kernel: &kernel.info,
            shape: None,
            params: bytemuck::bytes_of(&params).to_vec(),
            bindings: Vec::new(),
            groups,
        }
    }

    /// Runs the register-row kernel's variant `shape`.
    pub fn shaped(mut self, shape: RowShape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// Binds `buffer` to `slot`.
    pub fn bind(mut self, slot: Slot, buffer: Bound) -> Self {
        self.bindings.push((slot, buffer));
        self
    }

    /// Every slot of the kernel bound exactly once, and nothing else: a step built against
    /// the wrong kernel is an error before anything reaches the device.
    pub fn check(&self) -> Result<()> {
        let k = self.kernel;
        let missing = k
            .slots
            .iter()
            .find(|s| self.bindings.iter().filter(|(b, _)| b == *s).count() != 1);
        let foreign = self.bindings.iter().find(|(b, _)| !k.slots.contains(b));
        if self.shape.is_some() != k.module.rows() {
            return Err(Error::Validation {
                during: "recording a dispatch",
                description: format!(
                    "{}: a row shape goes with register-row kernels only",
                    k.entry
                ),
            });
        }
        match (missing, foreign) {
            (None, None) => Ok(()),
            (m, f) => Err(Error::Validation {
                during: "recording a dispatch",
                description: format!(
                    "{}: slot {:?} unbound or bound twice, or {:?} not one of its slots",
                    k.entry,
                    m.map(|s| s.name),
                    f.map(|s| s.0.name)
                ),
            }),
        }
    }
}

/// A `#[repr(C)]` struct mirrored in WGSL: its WGSL name and each field's name and offset,
/// which the contract test compares with naga's layout of the WGSL struct.
#[cfg(test)]
pub(crate) trait Mirrored {
    const WGSL: &'static str;
    const FIELDS: &'static [(&'static str, usize)];
}

/// Implements [`Mirrored`] for a struct from its field list.
macro_rules! mirrored {
    ($ty:ty, $wgsl:literal, [$($field:ident),* $(,)?]) => {
        #[cfg(test)]
        impl $crate::engine::kernel::Mirrored for $ty {
            const WGSL: &'static str = $wgsl;
            const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($field), std::mem::offset_of!($ty, $field))),*];
        }
    };
}
pub(crate) use mirrored;

/// A mirrored struct as the contract test sees it: WGSL name, Rust size, fields.
#[cfg(test)]
pub(crate) struct Layout {
    pub wgsl: &'static str,
    pub size: usize,
    pub fields: &'static [(&'static str, usize)],
}

#[cfg(test)]
impl Layout {
    pub const fn of<T: Mirrored>() -> Self {
        Self {
            wgsl: T::WGSL,
            size: std::mem::size_of::<T>(),
            fields: T::FIELDS,
        }
    }
}

/// A module's kernels (and, for the contract test, the structs it mirrors).
pub(crate) struct Table {
    #[cfg(test)]
    pub module: &'static Module,
    pub kernels: &'static [&'static KernelInfo],
    #[cfg(test)]
    pub structs: &'static [Layout],
}

/// What the kernels need of a device (within WebGPU's defaults; checked by
/// [`crate::Gpu::from_device`]; the contract test derives them from the shaders).
/// Storage buffers of the kernel that binds the most.
pub(crate) const STORAGE_BUFFERS_PER_STAGE: u32 = 8;
/// Bytes of workgroup memory of the hungriest kernel.
pub(crate) const WORKGROUP_STORAGE_BYTES: u32 = 13824;
/// Invocations of the largest workgroup.
pub(crate) const INVOCATIONS_PER_WORKGROUP: u32 = 64;

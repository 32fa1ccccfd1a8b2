//! The inputs every loss takes: validated host views ([`Embeddings`], [`Labels`]) and the
//! caller's own device buffers for the device-resident calls ([`DeviceRows`],
//! [`DeviceLabels`], [`DeviceGrad`], [`Target`]; layout in [`crate::device`]).

use std::borrow::Cow;

use crate::error::{Error, Result};

/// Largest magnitude an input value may have. Squared distances of values this large stay
/// finite in f32 for any practical dimension (4·1e30·D < 3.4e38 for D < 8·10⁷); squared
/// terms and large sums narrow it per call ([`crate::Error::TooLargeForLoss`]).
pub const MAX_ABS_VALUE: f64 = 1e15;

/// The format of an input's values, or of a gradient written for one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// IEEE binary32.
    #[default]
    F32,
    /// IEEE binary16 ([`half::f16`]): read where the adapter has `SHADER_F16`, widened to
    /// f32 exactly, computed in f32 ([`crate::Error::MissingFeature`] elsewhere).
    F16,
}

impl Precision {
    /// Bytes per value.
    pub fn bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }

    /// The format's name, as `.npy` files and messages spell it (`f32`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }
}

/// An input's values as the caller holds them.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [half::f16]),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> f32 {
        match self {
            Self::F32(v) => v[i],
            Self::F16(v) => v[i].to_f32(),
        }
    }
}

/// A row-major `rows × dim` matrix of f32 or f16 embeddings whose values are all in the
/// input domain (finite, `|x| <= 1e15`).
///
/// ```
/// use metric_loss::{half::f16, Embeddings, Precision};
/// let data = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
/// let x = Embeddings::new(&data, 3, 2)?;
/// assert_eq!((x.rows(), x.dim()), (3, 2));
/// assert_eq!(x.row(1).as_deref(), Some(&[2.0, 3.0][..]));
/// assert!(Embeddings::new(&[f32::NAN], 1, 1).is_err());
/// let halves: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
/// let h = Embeddings::new_f16(&halves, 3, 2)?;
/// assert_eq!(h.precision(), Precision::F16);
/// assert_eq!(h.data(), x.data()); // widened exactly
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Embeddings<'a> {
    values: Values<'a>,
    rows: usize,
    dim: usize,
    what: &'static str,
    max_abs: f64,
}

impl<'a> Embeddings<'a> {
    /// Checks the shape and the domain; errors call the input "embeddings".
    pub fn new(data: &'a [f32], rows: usize, dim: usize) -> Result<Self> {
        Self::named("embeddings", data, rows, dim)
    }

    /// [`Embeddings::new`] with the name errors give the input (e.g. `"anchor"`).
    pub fn named(what: &'static str, data: &'a [f32], rows: usize, dim: usize) -> Result<Self> {
        Self::checked(what, Values::F32(data), rows, dim)
    }

    /// f16 embeddings: every loss reads them where the adapter has `SHADER_F16`, widens
    /// them to f32 exactly on the device and computes in f32; gradients come back rounded
    /// to f16 unless [`crate::Grads::ComputeF32`] asks for f32.
    pub fn new_f16(data: &'a [half::f16], rows: usize, dim: usize) -> Result<Self> {
        Self::named_f16("embeddings", data, rows, dim)
    }

    /// [`Embeddings::new_f16`] with the name errors give the input.
    pub fn named_f16(
        what: &'static str,
        data: &'a [half::f16],
        rows: usize,
        dim: usize,
    ) -> Result<Self> {
        Self::checked(what, Values::F16(data), rows, dim)
    }

    fn checked(what: &'static str, values: Values<'a>, rows: usize, dim: usize) -> Result<Self> {
        if rows == 0 {
            return Err(Error::EmptyInput { what });
        }
        if dim == 0 {
            return Err(Error::ZeroDim { what });
        }
        let expected = rows.checked_mul(dim).ok_or_else(|| Error::LimitExceeded {
            what: format!("{what}: values ({rows} rows × {dim})"),
            needed: rows as u128 * dim as u128,
            limit: usize::MAX as u128,
            hint: crate::error::SMALLER_BATCH,
        })?;
        if values.len() != expected {
            return Err(Error::ShapeMismatch {
                what,
                expected,
                got: values.len(),
            });
        }
        let mut max = 0.0f32;
        for index in 0..expected {
            let v = values.get(index);
            if !v.is_finite() || f64::from(v.abs()) > MAX_ABS_VALUE {
                return Err(Error::OutOfDomain {
                    what,
                    row: index / dim,
                    column: index % dim,
                    value: f64::from(v),
                });
            }
            max = max.max(v.abs());
        }
        Ok(Self {
            values,
            rows,
            dim,
            what,
            max_abs: f64::from(max),
        })
    }

    /// The name errors give this input.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The largest magnitude of a value (each loss bounds it further at large sizes: see
    /// [`crate::Error::TooLargeForLoss`]).
    pub fn max_abs(&self) -> f64 {
        self.max_abs
    }

    /// The values as given.
    pub fn values(&self) -> Values<'a> {
        self.values
    }

    /// The values' format.
    pub fn precision(&self) -> Precision {
        match self.values {
            Values::F32(_) => Precision::F32,
            Values::F16(_) => Precision::F16,
        }
    }

    /// The values, row-major, as f32 (borrowed, or f16 values widened exactly).
    pub fn data(&self) -> Cow<'a, [f32]> {
        match self.values {
            Values::F32(v) => Cow::Borrowed(v),
            Values::F16(v) => Cow::Owned(v.iter().map(|h| h.to_f32()).collect()),
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i` as f32, or `None` past the last row.
    pub fn row(&self, i: usize) -> Option<Cow<'a, [f32]>> {
        let range = i * self.dim..(i + 1) * self.dim;
        (i < self.rows).then(|| match self.values {
            Values::F32(v) => Cow::Borrowed(&v[range]),
            Values::F16(v) => Cow::Owned(v[range].iter().map(|h| h.to_f32()).collect()),
        })
    }

    /// The same rows under another name (each loss names its inputs in errors).
    pub(crate) fn as_input(self, what: &'static str) -> Self {
        Self { what, ..self }
    }
}

/// Class labels remapped to dense ids `0..classes` (equal labels map to equal ids), so any
/// integer values may be used.
///
/// ```
/// use metric_loss::Labels;
/// let l = Labels::new(&[7, -3, 7, 100]);
/// assert_eq!(l.ids(), &[0, 1, 0, 2]);
/// assert_eq!(l.classes(), 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    ids: Vec<u32>,
    classes: usize,
}

impl Labels {
    /// Remaps `labels` in order of first appearance.
    pub fn new(labels: &[i64]) -> Self {
        let mut seen = std::collections::HashMap::new();
        let ids = labels
            .iter()
            .map(|l| {
                let next = seen.len() as u32;
                *seen.entry(*l).or_insert(next)
            })
            .collect();
        Self {
            ids,
            classes: seen.len(),
        }
    }

    /// The dense ids, one per row: what a [`DeviceLabels`] buffer holds
    /// (`bytemuck::cast_slice(labels.ids())`, or [`crate::Gpu::storage_buffer`]).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Number of rows labelled.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of distinct classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The most rows sharing one class (0 when empty). NT-Xent skips a sweep when it is at
    /// most 2: no row then has two positives.
    pub fn largest_class(&self) -> usize {
        largest_class(&self.ids)
    }
}

/// The most entries sharing one id (0 when empty).
pub(crate) fn largest_class(ids: &[u32]) -> usize {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted
        .chunk_by(|a, b| a == b)
        .map(<[u32]>::len)
        .max()
        .unwrap_or(0)
}

/// Where a device-resident call's work goes.
pub enum Target<'e> {
    /// metric-loss submits it to the queue now (without waiting for it).
    Submit,
    /// Recorded into the caller's encoder, after what it already holds; nothing is
    /// submitted. The caller submits the encoder before reading the loss.
    Encoder(&'e mut wgpu::CommandEncoder),
}

/// Embeddings in a caller's buffer (see [`crate::device`] for the layout).
#[derive(Clone, Copy, Debug)]
pub struct DeviceRows<'a> {
    /// The buffer (`STORAGE` usage).
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of row 0 (a multiple of 4).
    pub offset: u64,
    /// Rows.
    pub rows: usize,
    /// Values per row.
    pub dim: usize,
    /// Values from one row's start to the next (≥ `dim`).
    pub stride: usize,
    /// The values' format (f16 needs `SHADER_F16`: [`crate::Error::MissingFeature`]).
    pub precision: Precision,
}

impl<'a> DeviceRows<'a> {
    /// Densely packed f32 rows from the start of `buffer` (offset 0, stride `dim`).
    pub fn new(buffer: &'a wgpu::Buffer, rows: usize, dim: usize) -> Self {
        Self {
            buffer,
            offset: 0,
            rows,
            dim,
            stride: dim,
            precision: Precision::F32,
        }
    }

    /// The same layout with values of format `p`.
    pub fn precision(mut self, p: Precision) -> Self {
        self.precision = p;
        self
    }
}

/// u32 values in a caller's buffer, one per row: class ids for a batch (rows with equal ids
/// are in one class; any values, e.g. [`Labels::ids`]), or pair labels for contrastive pairs
/// (0 dissimilar, anything else similar).
#[derive(Clone, Copy, Debug)]
pub struct DeviceLabels<'a> {
    /// The buffer (`STORAGE` usage).
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of row 0's value (a multiple of 4).
    pub offset: u64,
}

impl<'a> DeviceLabels<'a> {
    /// Values from the start of `buffer`.
    pub fn new(buffer: &'a wgpu::Buffer) -> Self {
        Self { buffer, offset: 0 }
    }
}

/// A reference set in the caller's buffers (`against_device` calls): its rows, their class
/// ids (as a batch's labels), where the queries sit among them (see
/// [`crate::ReferenceSet::queries_at`]; on the device this is the caller's promise, not
/// checked), and where its gradient goes (`None`: detached, and its sweep is not run).
#[derive(Clone, Copy, Debug)]
pub struct DeviceReference<'a> {
    /// The reference rows.
    pub rows: DeviceRows<'a>,
    /// Their class ids.
    pub labels: DeviceLabels<'a>,
    /// Query i is reference row o + i.
    pub queries_at: Option<usize>,
    /// Where dL/dR goes.
    pub grad: Option<DeviceGrad<'a>>,
}

/// Where a gradient goes, and how.
#[derive(Clone, Copy, Debug)]
pub struct DeviceGrad<'a> {
    /// The buffer (`STORAGE` usage).
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of row 0 (a multiple of 4).
    pub offset: u64,
    /// Values from one row's start to the next (≥ the embeddings' `dim`).
    pub stride: usize,
    /// dLoss/dloss: the gradient written is `scale · dL/dX` (a weighted sum of losses).
    pub scale: f32,
    /// Add into the buffer's values instead of overwriting them.
    pub accumulate: bool,
    /// The format the gradient is written in: f32, or f16 (rounded; a value beyond f16's
    /// range, 65504, is an error when the loss is read: [`crate::Error::GradientOverflow`]).
    pub precision: Precision,
}

impl<'a> DeviceGrad<'a> {
    /// Densely packed rows from the start of `buffer`, scale 1, overwriting.
    pub fn new(buffer: &'a wgpu::Buffer, dim: usize) -> Self {
        Self {
            buffer,
            offset: 0,
            stride: dim,
            scale: 1.0,
            accumulate: false,
            precision: Precision::F32,
        }
    }

    /// Sets the scale.
    pub fn scale(mut self, s: f32) -> Self {
        self.scale = s;
        self
    }

    /// Adds into the buffer instead of overwriting it.
    pub fn accumulate(mut self, on: bool) -> Self {
        self.accumulate = on;
        self
    }

    /// Writes the gradient in format `p`.
    pub fn precision(mut self, p: Precision) -> Self {
        self.precision = p;
        self
    }
}

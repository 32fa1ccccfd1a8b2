//! The inputs every loss takes: validated host views ([`Embeddings`], [`Labels`]) and the
//! caller's own device buffers for the device-resident calls ([`DeviceRows`],
//! [`DeviceLabels`], [`DeviceGrad`], [`Target`]; layout in [`crate::device`]).

use crate::error::{Error, Result};

/// Largest magnitude an input value may have. Squared distances of values this large stay
/// finite in f32 for any practical dimension (4·1e30·D < 3.4e38 for D < 8·10⁷); squared
/// terms and large sums narrow it per call ([`crate::Error::TooLargeForLoss`]).
pub const MAX_ABS_VALUE: f64 = 1e15;

/// A row-major `rows × dim` matrix of f32 embeddings whose values are all in the input
/// domain (finite, `|x| <= 1e15`).
///
/// ```
/// use metric_loss::Embeddings;
/// let data = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
/// let x = Embeddings::new(&data, 3, 2)?;
/// assert_eq!((x.rows(), x.dim()), (3, 2));
/// assert_eq!(x.row(1), Some(&[2.0, 3.0][..]));
/// assert!(Embeddings::new(&[f32::NAN], 1, 1).is_err());
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Embeddings<'a> {
    data: &'a [f32],
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
        if data.len() != expected {
            return Err(Error::ShapeMismatch {
                what,
                expected,
                got: data.len(),
            });
        }
        let mut max = 0.0f32;
        for (index, v) in data.iter().enumerate() {
            if !v.is_finite() || f64::from(v.abs()) > MAX_ABS_VALUE {
                return Err(Error::OutOfDomain {
                    what,
                    row: index / dim,
                    column: index % dim,
                    value: f64::from(*v),
                });
            }
            max = max.max(v.abs());
        }
        Ok(Self {
            data,
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

    /// The values, row-major.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`, or `None` past the last row.
    pub fn row(&self, i: usize) -> Option<&'a [f32]> {
        (i < self.rows).then(|| &self.data[i * self.dim..(i + 1) * self.dim])
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
}

impl<'a> DeviceRows<'a> {
    /// Densely packed rows from the start of `buffer` (offset 0, stride `dim`).
    pub fn new(buffer: &'a wgpu::Buffer, rows: usize, dim: usize) -> Self {
        Self {
            buffer,
            offset: 0,
            rows,
            dim,
            stride: dim,
        }
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
}

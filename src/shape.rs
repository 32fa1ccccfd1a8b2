//! Validated views of user input: every loss takes these, on the GPU and on the CPU.

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
/// let x = Embeddings::new("embeddings", &data, 3, 2).unwrap();
/// assert_eq!((x.rows(), x.dim()), (3, 2));
/// assert!(Embeddings::new("embeddings", &[f32::NAN], 1, 1).is_err());
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
    /// Checks the shape and the domain. `what` names the input in error messages.
    pub fn new(what: &'static str, data: &'a [f32], rows: usize, dim: usize) -> Result<Self> {
        if rows == 0 {
            return Err(Error::EmptyInput { what });
        }
        if dim == 0 {
            return Err(Error::ZeroDim { what });
        }
        let expected = rows.checked_mul(dim).ok_or(Error::LimitExceeded {
            what: format!("{what}: rows × dim"),
            needed: u64::MAX,
            limit: usize::MAX as u64,
        })?;
        if data.len() != expected {
            return Err(Error::ShapeMismatch {
                what,
                expected,
                got: data.len(),
            });
        }
        let max_abs = domain_max(what, data)?;
        Ok(Self {
            data,
            rows,
            dim,
            what,
            max_abs,
        })
    }

    /// The name given to [`Embeddings::new`], for error messages.
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

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Returns the first value outside the domain as an error.
pub fn check_domain(what: &'static str, data: &[f32]) -> Result<()> {
    domain_max(what, data).map(|_| ())
}

/// The largest magnitude, or the first value outside the domain as an error.
fn domain_max(what: &'static str, data: &[f32]) -> Result<f64> {
    let mut max = 0.0f32;
    for (index, v) in data.iter().enumerate() {
        if !v.is_finite() || f64::from(v.abs()) > MAX_ABS_VALUE {
            return Err(Error::OutOfDomain {
                what,
                index,
                value: f64::from(*v),
            });
        }
        max = max.max(v.abs());
    }
    Ok(f64::from(max))
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

    /// The dense ids, one per row.
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
}

/// Checks that `got` rows match `expected` rows.
pub(crate) fn same_rows(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected,
            got,
        })
    }
}

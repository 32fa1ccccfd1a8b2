//! Reading the `.npy` inputs (validated as the library will see them) and writing the
//! gradients: every output path is checked before anything is computed, and the outputs are
//! written all or none.

use std::path::{Path, PathBuf};

use metric_loss::half::f16;
use metric_loss::{Embeddings, Gradient, Labels, Precision};

use crate::npy::{self, NpyArray};
use crate::Failure;

/// An embeddings matrix read from a file.
pub(crate) struct Matrix {
    /// The values as f32 (a float16 file's widened exactly).
    pub data: Vec<f32>,
    /// A float16 file's values, which the library is given as they are.
    pub halves: Option<Vec<f16>>,
    pub rows: usize,
    pub dim: usize,
}

impl Matrix {
    /// The validated view the library takes (f16 for a float16 file), named as the flag.
    pub fn view(&self, what: &'static str) -> Result<Embeddings<'_>, Failure> {
        Ok(match &self.halves {
            Some(h) => Embeddings::named_f16(what, h, self.rows, self.dim)?,
            None => Embeddings::named(what, &self.data, self.rows, self.dim)?,
        })
    }

    /// `--flag` must have this matrix's rows and dimension.
    pub fn same_shape(&self, flag: &str, other: &Matrix, base: &str) -> Result<(), Failure> {
        rows_match(flag, self.rows, other.rows)?;
        if other.dim != self.dim {
            return Err(Failure::usage(format!(
                "--{flag} has dimension {} but --{base} has {}",
                other.dim, self.dim
            )));
        }
        Ok(())
    }
}

fn load(flag: &str, path: &Path) -> Result<NpyArray, Failure> {
    npy::read(path).map_err(|e| Failure::usage(format!("--{flag} {}: {e}", path.display())))
}

/// A 2-D float array whose values are in the input domain.
pub(crate) fn matrix(flag: &'static str, path: &Path) -> Result<Matrix, Failure> {
    let arr = load(flag, path)?;
    if arr.shape.len() != 2 {
        return Err(Failure::usage(format!(
            "--{flag} {}: expected a 2-D array (rows × dim), got shape {:?}",
            path.display(),
            arr.shape
        )));
    }
    let (rows, dim) = (arr.shape[0], arr.shape[1]);
    let data = arr
        .to_f32()
        .map_err(|e| Failure::usage(format!("--{flag} {}: {e}", path.display())))?;
    // float64 values beyond f32's range become infinite here and are caught below.
    Embeddings::named(flag, &data, rows, dim).map_err(|e| match e {
        metric_loss::Error::EmptyInput { .. } => {
            Failure::usage(format!("--{flag}: the array has no rows (empty batch)"))
        }
        metric_loss::Error::ZeroDim { .. } => {
            Failure::usage(format!("--{flag}: the array has dimension 0 (D = 0)"))
        }
        other => Failure::from(other),
    })?;
    let halves = matches!(arr.dtype, npy::Dtype::F16)
        .then(|| arr.to_f16())
        .transpose()
        .map_err(|e| Failure::usage(format!("--{flag} {}: {e}", path.display())))?;
    Ok(Matrix {
        data,
        halves,
        rows,
        dim,
    })
}

fn vector(flag: &str, path: &Path) -> Result<NpyArray, Failure> {
    let arr = load(flag, path)?;
    if arr.shape.len() != 1 {
        return Err(Failure::usage(format!(
            "--{flag} {}: expected a 1-D array, got shape {:?}",
            path.display(),
            arr.shape
        )));
    }
    Ok(arr)
}

/// `--flag` has `got` rows where the embeddings have `expected`.
pub(crate) fn rows_match(flag: &str, expected: usize, got: usize) -> Result<(), Failure> {
    if expected == got {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "--{flag} has {got} rows but the embeddings have {expected}"
        )))
    }
}

/// Batch-mode embeddings and their int32/int64 labels.
pub(crate) fn batch(px: &Path, pl: &Path) -> Result<(Matrix, Labels), Failure> {
    let x = matrix("embeddings", px)?;
    let ids = int_labels("labels", pl, "the embeddings", x.rows)?;
    Ok((x, Labels::new(&ids)))
}

/// `--flag`'s int32/int64 labels, one per row of `of` (`rows` of them).
pub(crate) fn int_labels(
    flag: &str,
    pl: &Path,
    of: &str,
    rows: usize,
) -> Result<Vec<i64>, Failure> {
    let l = vector(flag, pl)?;
    if !matches!(l.dtype, npy::Dtype::Int(4) | npy::Dtype::Int(8)) {
        return Err(Failure::usage(format!(
            "--{flag} {}: dtype {} is not int32 or int64",
            pl.display(),
            l.dtype.name()
        )));
    }
    if l.len() != rows {
        return Err(Failure::usage(format!(
            "--{flag} has {} rows but {of} have {rows}",
            l.len()
        )));
    }
    l.to_i64()
        .map_err(|e| Failure::usage(format!("--{flag} {}: {e}", pl.display())))
}

/// Pair labels: 0 (dissimilar) or 1 (similar), any numeric dtype, `rows` of them.
pub(crate) fn pair_labels(py: &Path, rows: usize) -> Result<Vec<bool>, Failure> {
    zero_one("y", py, rows, ("dissimilar", "similar"))
}

/// `--flag`'s 0/1 values (any numeric dtype, or bool), one per row of the embeddings;
/// `meaning` names what 0 and 1 stand for in the error.
pub(crate) fn zero_one(
    flag: &str,
    path: &Path,
    rows: usize,
    meaning: (&str, &str),
) -> Result<Vec<bool>, Failure> {
    let y = vector(flag, path)?;
    rows_match(flag, rows, y.len())?;
    let values = y
        .to_f64_any()
        .map_err(|e| Failure::usage(format!("--{flag} {}: {e}", path.display())))?;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| match v {
            1.0 => Ok(true),
            0.0 => Ok(false),
            v => Err(Failure::usage(format!(
                "--{flag}[{i}] = {v}: must be 0 ({}) or 1 ({})",
                meaning.0, meaning.1
            ))),
        })
        .collect()
}

/// A required path flag of a mode, or the usage error naming what the mode needs.
pub(crate) fn need<'a>(
    path: &'a Option<PathBuf>,
    flag: &str,
    needs: &str,
) -> Result<&'a Path, Failure> {
    path.as_deref()
        .ok_or_else(|| Failure::usage(format!("{needs}; --{flag} is missing")))
}

/// Output files, checked before anything is computed and written all or none: each is
/// first a temporary file beside its target, renamed into place once every one is written.
pub(crate) struct Outputs {
    /// (flag, target, temporary) of each requested output, in argument order; `None` where
    /// the output was not asked for.
    files: Vec<Option<(String, PathBuf, PathBuf)>>,
}

impl Outputs {
    /// Checks the requested paths (`(flag, path)`; `None` for an output not asked for): a
    /// directory that exists, not a directory itself, no two the same, and writable (a
    /// temporary file is created there now).
    pub fn prepare(requested: &[(&str, &Option<PathBuf>)]) -> Result<Self, Failure> {
        let mut out = Outputs { files: Vec::new() };
        let mut seen: Vec<(PathBuf, String)> = Vec::new();
        for (flag, path) in requested {
            let Some(path) = path else {
                out.files.push(None);
                continue;
            };
            let bad = |why: String| Failure::usage(format!("--{flag} {}: {why}", path.display()));
            let name = path
                .file_name()
                .ok_or_else(|| bad("not a file name".into()))?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let dir = dir
                .canonicalize()
                .map_err(|e| bad(format!("its directory cannot be used ({e})")))?;
            if !dir.is_dir() {
                return Err(bad("its directory is not a directory".into()));
            }
            if path.is_dir() {
                return Err(bad("is a directory".into()));
            }
            let target = dir.join(name);
            if let Some((_, other)) = seen.iter().find(|(p, _)| *p == target) {
                return Err(bad(format!("is also the path of --{other}")));
            }
            seen.push((target.clone(), flag.to_string()));
            let tmp = dir.join(format!(
                ".{}.metric-loss-{}.tmp",
                name.to_string_lossy(),
                std::process::id()
            ));
            std::fs::File::create(&tmp).map_err(|e| bad(format!("cannot be written ({e})")))?;
            out.files.push(Some((flag.to_string(), target, tmp)));
        }
        Ok(out)
    }

    /// Writes `data[k]` (`.npy`, rows × dim, float16 for a gradient in f16, else float32)
    /// for every requested output k, then moves them all into place; on a failure none is
    /// moved.
    pub fn commit(self, data: &[Gradient]) -> Result<(), Failure> {
        let encoded: Vec<Vec<u8>> = data
            .iter()
            .map(|g| match g.precision() {
                Precision::F16 => npy::to_bytes_f16(&[g.rows(), g.dim()], &g.to_f16()),
                Precision::F32 => npy::to_bytes_f32(&[g.rows(), g.dim()], g),
            })
            .collect();
        self.commit_encoded(&encoded)
    }

    /// Writes the encoded file `data[k]` for every requested output k, then moves them all
    /// into place; on a failure none is moved.
    pub fn commit_encoded(mut self, data: &[Vec<u8>]) -> Result<(), Failure> {
        for (file, bytes) in self.files.iter().zip(data) {
            if let Some((flag, _, tmp)) = file {
                std::fs::write(tmp, bytes)
                    .map_err(|e| Failure::runtime(format!("writing --{flag}: {e}")))?;
            }
        }
        for (flag, target, tmp) in self.files.iter().flatten() {
            std::fs::rename(tmp, target)
                .map_err(|e| Failure::runtime(format!("writing --{flag}: {e}")))?;
        }
        self.files.clear();
        Ok(())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for (_, _, tmp) in self.files.iter().flatten() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Refuses sizes whose indices overflow, that exceed 32-bit row indices, or whose inputs
/// (`inputs` matrices of `b × d` f32) the host cannot allocate, before anything is made.
pub(crate) fn host_sizes(b: usize, d: usize, inputs: usize) -> Result<(), Failure> {
    if b > u32::MAX as usize {
        return Err(Failure::usage(format!(
            "--batch {b}: at most {} rows (32-bit row indices)",
            u32::MAX
        )));
    }
    let values = b
        .checked_mul(d)
        .and_then(|v| v.checked_mul(inputs))
        .filter(|&v| v <= isize::MAX as usize / 8)
        .ok_or_else(|| {
            Failure::usage(format!(
                "--batch {b} × --dim {d}: too many values to index in memory"
            ))
        })?;
    let mut probe: Vec<f32> = Vec::new();
    probe.try_reserve_exact(values).map_err(|_| {
        Failure::usage(format!(
            "--batch {b} × --dim {d} needs {:.1} GB of host memory for its inputs, more than \
             can be allocated; use a smaller batch or dimension",
            values as f64 * 4e-9
        ))
    })?;
    Ok(())
}

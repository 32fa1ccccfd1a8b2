//! Minimal `.npy` reading and writing (format versions 1.0–3.0), for the CLI and its tests.
//!
//! Reads C-order arrays of bool, signed and unsigned integers (1–8 bytes) and f32/f64, in
//! either byte order; writes little-endian f32. A file is read header first, and its data
//! only up to the size the header declares. Malformed input is an [`NpyError`], never a
//! panic.
//!
//! ```
//! use metric_loss_cli::npy;
//! let bytes = npy::to_bytes_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
//! let a = npy::parse(&bytes).unwrap();
//! assert_eq!(a.shape, vec![2, 2]);
//! assert_eq!(a.to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
//! ```

use std::io::Read;
use std::path::Path;

use metric_loss::half::f16;

/// What went wrong reading an `.npy` file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with the `.npy` magic string.
    #[error("not a .npy file (bad magic string)")]
    BadMagic,
    /// The header is malformed.
    #[error("malformed .npy header: {0}")]
    BadHeader(&'static str),
    /// The dtype is not one this reader handles.
    #[error("unsupported dtype {0:?} (use float32, float64, int32 or int64)")]
    UnsupportedDtype(String),
    /// The array is stored in Fortran order.
    #[error("array is in Fortran order; save it C-contiguous (np.ascontiguousarray)")]
    FortranOrder,
    /// The data section is shorter or longer than the shape says.
    #[error("data section has {got} bytes, the header's shape and dtype need {expected}")]
    DataLength {
        /// Bytes the header implies.
        expected: u64,
        /// Bytes present.
        got: u64,
    },
    /// The file goes on past the data section the header declares.
    #[error("data section is longer than the {expected} bytes the header's shape and dtype need")]
    TrailingData {
        /// Bytes the header implies.
        expected: u64,
    },
    /// The dtype cannot be converted to what the caller needs.
    #[error("dtype {dtype} cannot be used as {wanted}")]
    WrongDtype {
        /// The array's dtype.
        dtype: &'static str,
        /// What was needed.
        wanted: &'static str,
    },
}

/// Element type of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// bool.
    Bool,
    /// Signed integer of this many bytes.
    Int(u8),
    /// Unsigned integer of this many bytes.
    UInt(u8),
    /// float16.
    F16,
    /// float32.
    F32,
    /// float64.
    F64,
}

impl Dtype {
    /// numpy's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::Int(1) => "int8",
            Dtype::Int(2) => "int16",
            Dtype::Int(4) => "int32",
            Dtype::Int(_) => "int64",
            Dtype::UInt(1) => "uint8",
            Dtype::UInt(2) => "uint16",
            Dtype::UInt(4) => "uint32",
            Dtype::UInt(_) => "uint64",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    fn size(self) -> usize {
        match self {
            Dtype::Bool => 1,
            Dtype::Int(n) | Dtype::UInt(n) => n as usize,
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// A parsed array: its shape, dtype and raw little-endian element bytes.
#[derive(Clone, Debug)]
pub struct NpyArray {
    /// The shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The element type.
    pub dtype: Dtype,
    data: Vec<u8>,
}

impl NpyArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn elems(&self) -> impl Iterator<Item = &[u8]> {
        self.data.chunks_exact(self.dtype.size())
    }

    /// The values as f32 (from float32, float16 widened exactly, or float64 rounded to
    /// nearest).
    pub fn to_f32(&self) -> Result<Vec<f32>, NpyError> {
        match self.dtype {
            Dtype::F32 => Ok(self
                .elems()
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()),
            Dtype::F16 => Ok(self.to_f16()?.iter().map(|h| h.to_f32()).collect()),
            Dtype::F64 => Ok(self.to_f64_raw().into_iter().map(|v| v as f32).collect()),
            other => Err(NpyError::WrongDtype {
                dtype: other.name(),
                wanted: "float16, float32 or float64",
            }),
        }
    }

    /// The values of a float16 array.
    pub fn to_f16(&self) -> Result<Vec<f16>, NpyError> {
        match self.dtype {
            Dtype::F16 => Ok(self
                .elems()
                .map(|b| f16::from_le_bytes([b[0], b[1]]))
                .collect()),
            other => Err(NpyError::WrongDtype {
                dtype: other.name(),
                wanted: "float16",
            }),
        }
    }

    fn to_f64_raw(&self) -> Vec<f64> {
        self.elems()
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect()
    }

    /// The values as f64 (any float dtype).
    pub fn to_f64(&self) -> Result<Vec<f64>, NpyError> {
        match self.dtype {
            Dtype::F64 => Ok(self.to_f64_raw()),
            Dtype::F16 | Dtype::F32 => Ok(self.to_f32()?.into_iter().map(f64::from).collect()),
            other => Err(NpyError::WrongDtype {
                dtype: other.name(),
                wanted: "float16, float32 or float64",
            }),
        }
    }

    /// The values as i64 (any signed or unsigned integer dtype up to 63 bits of value).
    pub fn to_i64(&self) -> Result<Vec<i64>, NpyError> {
        let int = |b: &[u8], signed: bool| -> Option<i64> {
            let mut buf = [0u8; 8];
            buf[..b.len()].copy_from_slice(b);
            if signed && b[b.len() - 1] & 0x80 != 0 {
                buf[b.len()..].fill(0xff);
            }
            let v = i64::from_le_bytes(buf);
            (signed || v >= 0).then_some(v)
        };
        match self.dtype {
            Dtype::Int(_) | Dtype::UInt(_) => {
                let signed = matches!(self.dtype, Dtype::Int(_));
                self.elems()
                    .map(|b| int(b, signed))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(NpyError::WrongDtype {
                        dtype: self.dtype.name(),
                        wanted: "int64 (a value exceeds it)",
                    })
            }
            other => Err(NpyError::WrongDtype {
                dtype: other.name(),
                wanted: "an integer",
            }),
        }
    }

    /// The values as f64 whatever the dtype (integers and bools converted exactly up to 2⁵³).
    pub fn to_f64_any(&self) -> Result<Vec<f64>, NpyError> {
        match self.dtype {
            Dtype::F16 | Dtype::F32 | Dtype::F64 => self.to_f64(),
            Dtype::Bool => Ok(self
                .data
                .iter()
                .map(|&b| f64::from(u8::from(b != 0)))
                .collect()),
            _ => Ok(self.to_i64()?.into_iter().map(|v| v as f64).collect()),
        }
    }
}

/// Reads the `.npy` file at `path`: the header first, then exactly the data it declares (a
/// stream such as `/dev/zero` is refused at its magic string, and nothing beyond the
/// declared size is read but one byte to see that the file ends there).
pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut prefix = [0u8; 12];
    let got = read_up_to(&mut file, &mut prefix[..10])?;
    let version = check_prefix(&prefix[..got])?;
    let start = if version == 1 { 10 } else { 12 };
    if start == 12 && read_up_to(&mut file, &mut prefix[10..12])? < 2 {
        return Err(NpyError::BadHeader("truncated header length"));
    }
    let header_len = header_len(&prefix[..start], version);
    let mut header = Vec::new();
    (&mut file)
        .take(header_len as u64)
        .read_to_end(&mut header)?;
    if header.len() < header_len {
        return Err(NpyError::BadHeader("header runs past the end of the file"));
    }
    let head = parse_header(&header)?;
    let expected = head.bytes();
    let mut data = Vec::new();
    (&mut file).take(expected).read_to_end(&mut data)?;
    if data.len() as u64 != expected {
        return Err(NpyError::DataLength {
            expected,
            got: data.len() as u64,
        });
    }
    if read_up_to(&mut file, &mut [0u8; 1])? > 0 {
        return Err(NpyError::TrailingData { expected });
    }
    Ok(head.array(data))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The format version, from the first 10 bytes.
fn check_prefix(bytes: &[u8]) -> Result<u8, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(NpyError::BadMagic);
    }
    match bytes[6] {
        v @ 1..=3 => Ok(v),
        _ => Err(NpyError::BadHeader("unknown format version")),
    }
}

/// The header's length from the prefix (10 bytes for version 1, 12 after).
fn header_len(prefix: &[u8], version: u8) -> usize {
    if version == 1 {
        u16::from_le_bytes([prefix[8], prefix[9]]) as usize
    } else {
        u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize
    }
}

/// A parsed header: what the data section must be.
struct Header {
    shape: Vec<usize>,
    dtype: Dtype,
    big_endian: bool,
    count: usize,
}

impl Header {
    fn bytes(&self) -> u64 {
        (self.count as u64).saturating_mul(self.dtype.size() as u64)
    }

    fn array(self, mut data: Vec<u8>) -> NpyArray {
        if self.big_endian {
            for e in data.chunks_exact_mut(self.dtype.size()) {
                e.reverse();
            }
        }
        NpyArray {
            shape: self.shape,
            dtype: self.dtype,
            data,
        }
    }
}

/// Parses `.npy` bytes.
pub fn parse(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    let version = check_prefix(bytes.get(..10).unwrap_or(bytes))?;
    let start = if version == 1 { 10usize } else { 12 };
    if bytes.len() < start {
        return Err(NpyError::BadHeader("truncated header length"));
    }
    let end = start
        .checked_add(header_len(&bytes[..start], version))
        .filter(|&e| e <= bytes.len())
        .ok_or(NpyError::BadHeader("header runs past the end of the file"))?;
    let head = parse_header(&bytes[start..end])?;
    let expected = head.bytes();
    let data = &bytes[end..];
    if data.len() as u64 != expected {
        return Err(NpyError::DataLength {
            expected,
            got: data.len() as u64,
        });
    }
    Ok(head.array(data.to_vec()))
}

fn parse_header(bytes: &[u8]) -> Result<Header, NpyError> {
    let header = std::str::from_utf8(bytes).map_err(|_| NpyError::BadHeader("not text"))?;
    let descr = field(header, "descr")?;
    let descr = quoted(descr).ok_or(NpyError::BadHeader("descr is not a string"))?;
    let (dtype, big_endian) = parse_descr(descr)?;
    let fortran = field(header, "fortran_order")?;
    if fortran.starts_with("True") {
        return Err(NpyError::FortranOrder);
    } else if !fortran.starts_with("False") {
        return Err(NpyError::BadHeader("fortran_order is not True or False"));
    }
    let shape = parse_shape(field(header, "shape")?)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or(NpyError::BadHeader("shape overflows"))?;
    Ok(Header {
        shape,
        dtype,
        big_endian,
        count,
    })
}

/// The text after `'key':` in the header dict, trimmed.
fn field<'h>(header: &'h str, key: &'static str) -> Result<&'h str, NpyError> {
    let pat = format!("'{key}'");
    let at = header.find(&pat).ok_or(NpyError::BadHeader(
        "missing a key (descr, fortran_order or shape)",
    ))?;
    let rest = header[at + pat.len()..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or(NpyError::BadHeader("expected ':' after a key"))?;
    Ok(rest.trim_start())
}

fn quoted(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &s[1..];
    rest.find(q).map(|e| &rest[..e])
}

fn parse_descr(d: &str) -> Result<(Dtype, bool), NpyError> {
    let unsupported = || NpyError::UnsupportedDtype(d.to_string());
    let mut chars = d.chars();
    let order = chars.next().ok_or_else(unsupported)?;
    let big = match order {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return Err(unsupported()),
    };
    let kind = chars.next().ok_or_else(unsupported)?;
    let size: u8 = chars.as_str().parse().map_err(|_| unsupported())?;
    let dtype = match (kind, size) {
        ('b', 1) => Dtype::Bool,
        ('i', 1 | 2 | 4 | 8) => Dtype::Int(size),
        ('u', 1 | 2 | 4 | 8) => Dtype::UInt(size),
        ('f', 2) => Dtype::F16,
        ('f', 4) => Dtype::F32,
        ('f', 8) => Dtype::F64,
        _ => return Err(unsupported()),
    };
    Ok((dtype, big && size > 1))
}

fn parse_shape(s: &str) -> Result<Vec<usize>, NpyError> {
    let inner = s
        .strip_prefix('(')
        .and_then(|r| r.find(')').map(|e| &r[..e]))
        .ok_or(NpyError::BadHeader("shape is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| NpyError::BadHeader("shape entry is not a non-negative integer"))
        })
        .collect()
}

/// Encodes a little-endian f32 array of `shape` as `.npy` (format 1.0).
pub fn to_bytes_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    encode("<f4", shape, data.iter().flat_map(|v| v.to_le_bytes()))
}

/// Encodes a little-endian f16 array of `shape` as `.npy` (format 1.0).
pub fn to_bytes_f16(shape: &[usize], data: &[f16]) -> Vec<u8> {
    encode("<f2", shape, data.iter().flat_map(|v| v.to_le_bytes()))
}

/// Encodes a little-endian i64 array of `shape` as `.npy` (format 1.0).
pub fn to_bytes_i64(shape: &[usize], data: &[i64]) -> Vec<u8> {
    encode("<i8", shape, data.iter().flat_map(|v| v.to_le_bytes()))
}

fn encode(descr: &str, shape: &[usize], data: impl Iterator<Item = u8>) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::new();
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_ints_and_big_endian() {
        let b = with_header(
            "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }",
            &[0, 0, 0, 7, 0xff, 0xff, 0xff, 0xfe],
        );
        assert_eq!(parse(&b).unwrap().to_i64().unwrap(), vec![7, -2]);
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(parse(b"hello"), Err(NpyError::BadMagic)));
        let f = with_header(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
            &[0; 4],
        );
        assert!(matches!(parse(&f), Err(NpyError::FortranOrder)));
        let short = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &[0; 4],
        );
        assert!(matches!(parse(&short), Err(NpyError::DataLength { .. })));
        let c = with_header(
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        );
        assert!(matches!(parse(&c), Err(NpyError::UnsupportedDtype(_))));
        let huge = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }",
            &[],
        );
        assert!(parse(&huge).is_err());
    }

    #[test]
    fn round_trips_f32() {
        let b = to_bytes_f32(&[3], &[1.5, -2.0, 0.25]);
        assert_eq!((b.len() - 12) % 4, 0);
        let a = parse(&b).unwrap();
        assert_eq!(a.shape, vec![3]);
        assert_eq!(a.to_f32().unwrap(), vec![1.5, -2.0, 0.25]);
    }
}

//! A bounded reader for the integer npy files of the reference layout.
//!
//! The header is parsed here rather than by `ndarray-npy`, which allocates the declared shape
//! before reading any data (a 100-byte file can declare 2^62 elements). Here the header is
//! capped at [`MAX_HEADER`] bytes and the declared shape must account for exactly the bytes
//! the file holds before anything is allocated.

use std::io::Read;
use std::path::Path;

use super::DatasetError;

/// Largest header accepted; numpy writes 128 bytes or a little more.
pub const MAX_HEADER: usize = 64 << 10;

/// An integer element type (`descr`): width in bytes, signedness, byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IntType {
    width: usize,
    signed: bool,
    big_endian: bool,
}

/// An npy array held as the file's raw bytes, C order or Fortran order.
#[derive(Debug)]
pub(crate) struct Npy {
    /// Declared shape, outermost first.
    pub shape: Vec<usize>,
    dtype: IntType,
    fortran_order: bool,
    data: Vec<u8>,
}

/// Reads the npy file at `path`, which must hold an integer array of `rank` axes.
pub(crate) fn read_file(path: &Path, rank: usize) -> Result<Npy, DatasetError> {
    let io = |source| DatasetError::Io { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    read(std::io::BufReader::new(file), len, rank)
        .map_err(|message| DatasetError::Npy { path: path.display().to_string(), message })
}

/// Reads an npy array of `rank` axes from `reader`, which holds `len` bytes in all.
pub(crate) fn read(mut reader: impl Read, len: u64, rank: usize) -> Result<Npy, String> {
    let mut start = [0u8; 8];
    reader.read_exact(&mut start).map_err(|_| "shorter than the npy preamble".to_string())?;
    if &start[..6] != b"\x93NUMPY" {
        return Err("no npy magic (\\x93NUMPY) at the start".into());
    }
    let header_len = match start[6] {
        1 => {
            let mut b = [0u8; 2];
            reader.read_exact(&mut b).map_err(|_| "truncated header length".to_string())?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            reader.read_exact(&mut b).map_err(|_| "truncated header length".to_string())?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(format!("unsupported npy version {v}.{}", start[7])),
    };
    if header_len > MAX_HEADER {
        return Err(format!("header of {header_len} bytes is over the limit of {MAX_HEADER}"));
    }
    let preamble = if start[6] == 1 { 10 } else { 12 };
    let data_len = len
        .checked_sub((preamble + header_len) as u64)
        .ok_or_else(|| format!("the file ({len} bytes) ends inside its {header_len}-byte header"))?;
    let mut header = vec![0u8; header_len];
    reader.read_exact(&mut header).map_err(|_| "truncated header".to_string())?;
    let header = String::from_utf8_lossy(&header);
    let (dtype, fortran_order, shape) = parse_header(&header)?;
    if shape.len() != rank {
        return Err(format!("expected a {rank}-D integer array, found shape {shape:?}"));
    }
    let needed = shape
        .iter()
        .try_fold(dtype.width, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large to address"))?;
    if needed as u64 != data_len {
        return Err(format!(
            "shape {shape:?} of {}-byte elements needs {needed} bytes of data, the file holds {data_len}",
            dtype.width
        ));
    }
    let mut data = vec![0u8; needed];
    reader.read_exact(&mut data).map_err(|e| format!("reading the data: {e}"))?;
    Ok(Npy { shape, dtype, fortran_order, data })
}

impl Npy {
    /// Every element in C (row-major) order through `convert`; on a value it refuses, the
    /// row-major index and the value.
    pub fn convert<T>(&self, convert: impl Fn(i128) -> Option<T>) -> Result<Vec<T>, (usize, i128)> {
        let n = self.data.len() / self.dtype.width;
        // Fortran order stores axis 0 fastest: element (i, j) of a [rows, cols] array is at j * rows + i.
        let rows = if self.fortran_order && self.shape.len() == 2 { self.shape[0] } else { 1 };
        let cols = n / rows.max(1);
        (0..n)
            .map(|k| {
                let at = if rows > 1 { (k % cols) * rows + k / cols } else { k };
                let v = self.element(at);
                convert(v).ok_or((k, v))
            })
            .collect()
    }

    /// Element `at` in storage order.
    fn element(&self, at: usize) -> i128 {
        let IntType { width, signed, big_endian } = self.dtype;
        let bytes = &self.data[at * width..(at + 1) * width];
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(bytes);
        if big_endian {
            le[..width].reverse();
        }
        let raw = u64::from_le_bytes(le);
        if signed {
            // Sign-extend from `width` bytes.
            let shift = 64 - 8 * width as u32;
            (((raw << shift) as i64) >> shift) as i128
        } else {
            raw as i128
        }
    }
}

/// Parses the header dict: `{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(text: &str) -> Result<(IntType, bool, Vec<usize>), String> {
    let mut p = Parser { s: text.trim_end_matches(['\n', ' ', '\0']).as_bytes(), at: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    while !p.eat(b'}') {
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" => descr = Some(int_type(&p.string()?)?),
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.shape()?),
            other => return Err(format!("header has an unknown key {other:?}")),
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    match (descr, fortran, shape) {
        (Some(d), Some(f), Some(s)) => Ok((d, f, s)),
        _ => Err("header lacks one of 'descr', 'fortran_order', 'shape'".into()),
    }
}

/// The integer types numpy names `|u1`, `<i4`, `>i8`, ... (`b1` booleans read as 0/1).
fn int_type(descr: &str) -> Result<IntType, String> {
    let (big_endian, rest) = match descr.as_bytes().first() {
        Some(b'>') => (true, &descr[1..]),
        Some(b'<' | b'|' | b'=') => (false, &descr[1..]),
        _ => (false, descr),
    };
    let signed = match rest.as_bytes().first() {
        Some(b'i') => true,
        Some(b'u' | b'b') => false,
        _ => return Err(format!("dtype {descr:?} is not an integer type (expected uint8, int32 or int64)")),
    };
    let width = match &rest[1..] {
        "1" => 1,
        "2" => 2,
        "4" => 4,
        "8" => 8,
        _ => return Err(format!("dtype {descr:?} has an unsupported width")),
    };
    Ok(IntType { width, signed, big_endian })
}

/// A cursor over the header's Python literal.
struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        let found = self.s.get(self.at) == Some(&c);
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(format!("malformed header: expected '{}' at byte {}", c as char, self.at)) }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let quote = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("malformed header: expected a string at byte {}", self.at)),
        };
        let begin = self.at + 1;
        let len = self.s[begin..].iter().position(|&b| b == quote).ok_or("malformed header: unterminated string")?;
        self.at = begin + len + 1;
        Ok(String::from_utf8_lossy(&self.s[begin..begin + len]).into_owned())
    }

    fn word(&mut self) -> &[u8] {
        self.skip_space();
        let begin = self.at;
        while self.s.get(self.at).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-') {
            self.at += 1;
        }
        &self.s[begin..self.at]
    }

    fn boolean(&mut self) -> Result<bool, String> {
        match self.word() {
            b"True" => Ok(true),
            b"False" => Ok(false),
            w => Err(format!("fortran_order must be True or False, found {:?}", String::from_utf8_lossy(w))),
        }
    }

    /// A tuple of non-negative integers (Python 2's `3L` accepted).
    fn shape(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        while !self.eat(b')') {
            let word = String::from_utf8_lossy(self.word()).into_owned();
            let digits = word.strip_suffix('L').unwrap_or(&word);
            if digits.starts_with('-') {
                return Err(format!("shape has a negative dimension {digits}"));
            }
            let d = digits.parse::<usize>().map_err(|_| format!("shape has a dimension {word:?} that is not a size"))?;
            dims.push(d);
            if dims.len() > 32 {
                return Err("shape has more than 32 axes".into());
            }
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An npy v1 file with this header dict body and data.
    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n", if fortran { "True" } else { "False" });
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((dict.len() as u16).to_le_bytes());
        out.extend(dict.as_bytes());
        out.extend(data);
        out
    }

    fn read_bytes(bytes: &[u8], rank: usize) -> Result<Npy, String> {
        read(bytes, bytes.len() as u64, rank)
    }

    fn err(bytes: &[u8], rank: usize) -> String {
        read_bytes(bytes, rank).unwrap_err()
    }

    #[test]
    fn reads_integer_types_in_either_order() {
        let a = read_bytes(&npy("|u1", false, "(2, 3)", &[1, 2, 3, 4, 5, 6]), 2).unwrap();
        assert_eq!(a.shape, [2, 3]);
        assert_eq!(a.convert(|v| u8::try_from(v).ok()).unwrap(), [1, 2, 3, 4, 5, 6]);
        // The same [2, 3] array stored column by column.
        let f = read_bytes(&npy("|u1", true, "(2, 3)", &[1, 4, 2, 5, 3, 6]), 2).unwrap();
        assert_eq!(f.convert(|v| u8::try_from(v).ok()).unwrap(), [1, 2, 3, 4, 5, 6]);
        let data: Vec<u8> = [-1i32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let i = read_bytes(&npy("<i4", false, "(2,)", &data), 1).unwrap();
        assert_eq!(i.convert(|v| i32::try_from(v).ok()).unwrap(), [-1, 7]);
        let data: Vec<u8> = [-2i64, 300].iter().flat_map(|v| v.to_be_bytes()).collect();
        let b = read_bytes(&npy(">i8", false, "(2L,)", &data), 1).unwrap();
        assert_eq!(b.convert(|v| u8::try_from(v).ok()), Err((0, -2)));
    }

    #[test]
    fn declared_sizes_must_match_the_bytes_present() {
        // A 100-byte file declaring 2^62 elements, and one whose dimensions overflow.
        let e = err(&npy("|u1", false, "(4611686018427387904,)", &[0; 10]), 1);
        assert!(e.contains("needs 4611686018427387904 bytes of data, the file holds 10"), "{e}");
        let e = err(&npy("<i8", false, "(4294967296, 4294967296)", &[]), 2);
        assert!(e.contains("too large to address"), "{e}");
        let e = err(&npy("<i4", false, "(3,)", &[0; 8]), 1);
        assert!(e.contains("needs 12 bytes of data, the file holds 8"), "{e}");
        let e = err(&npy("<i4", false, "(1,)", &[0; 8]), 1);
        assert!(e.contains("needs 4 bytes of data, the file holds 8"), "{e}");
        let e = err(&npy("|u1", false, "(-1, 4)", &[]), 2);
        assert!(e.contains("negative dimension -1"), "{e}");
        let e = err(&npy("|u1", false, "(99999999999999999999999,)", &[]), 1);
        assert!(e.contains("not a size"), "{e}");
    }

    #[test]
    fn rejects_other_ranks_types_and_broken_headers() {
        let e = err(&npy("|u1", false, "()", &[7]), 2);
        assert!(e.contains("expected a 2-D integer array, found shape []"), "{e}");
        let e = err(&npy("<f4", false, "(1,)", &[0; 4]), 1);
        assert!(e.contains("not an integer type"), "{e}");
        let e = err(&npy("<i3", false, "(1,)", &[0; 3]), 1);
        assert!(e.contains("unsupported width"), "{e}");
        // A header that claims more than the limit, and one that claims more than the file.
        let mut big = b"\x93NUMPY\x02\x00".to_vec();
        big.extend(u32::MAX.to_le_bytes());
        assert!(err(&big, 1).contains("over the limit"), "{}", err(&big, 1));
        let full = npy("|u1", false, "(1,)", &[1]);
        for cut in [3, 9, 20, full.len() - 1] {
            assert!(read_bytes(&full[..cut], 1).is_err(), "cut at {cut}");
        }
        let e = err(&npy("|u1", false, "(1,)", &[1])[..].iter().map(|&b| if b == b'(' { b'[' } else { b }).collect::<Vec<_>>(), 1);
        assert!(e.contains("malformed header"), "{e}");
        let e = err(b"\x93NUMPY\x01\x00\x10\x00{'descr': '|u1'}", 1);
        assert!(e.contains("lacks one of"), "{e}");
        assert!(err(b"\x93NUMPY\x07\x00", 1).contains("version 7"));
        assert!(err(b"PK\x03\x04 not npy", 1).contains("magic"));
    }
}

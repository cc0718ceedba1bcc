//! Reading and writing the reference layout on disk (npy read by [`super::npy`], written
//! through `ndarray-npy`).

use std::fs;
use std::io::{self, BufReader, Write};
use std::path::Path;

use ndarray::{Array1, Array2};
use ndarray_npy::WriteNpyExt;
use serde::Serialize;

use super::{DatasetError, DatasetMetadata, SplitData, npy};
use crate::atomic;

const INPUTS: &str = "all__inputs.npy";
const LABELS: &str = "all__labels.npy";
const PUZZLE_IDENTIFIERS: &str = "all__puzzle_identifiers.npy";
const PUZZLE_INDICES: &str = "all__puzzle_indices.npy";
const GROUP_INDICES: &str = "all__group_indices.npy";
const METADATA: &str = "dataset.json";
const IDENTIFIERS: &str = "identifiers.json";

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.display().to_string(), source }
}

fn open(path: &Path) -> Result<BufReader<fs::File>, DatasetError> {
    Ok(BufReader::new(fs::File::open(path).map_err(io_err(path))?))
}

fn npy_err(path: &Path, message: impl ToString) -> DatasetError {
    DatasetError::Npy { path: path.display().to_string(), message: message.to_string() }
}

/// Reads a 2-D token array stored as any integer type (uint8, int32 and int64 are the dtypes
/// people save grids in), checking that every value fits a token id.
pub fn read_token_grids(path: &Path) -> Result<Array2<u8>, DatasetError> {
    let a = npy::read_file(path, 2)?;
    let (rows, cols) = (a.shape[0], a.shape[1]);
    let tokens = a.convert(|v| u8::try_from(v).ok()).map_err(|(k, v)| {
        npy_err(path, format!("value {v} at [{}, {}] is not a token id", k / cols.max(1), k % cols.max(1)))
    })?;
    Array2::from_shape_vec((rows, cols), tokens).map_err(|e| npy_err(path, e))
}

/// Reads a 1-D int32 array (other integer types accepted and range-checked).
pub fn read_index_array(path: &Path) -> Result<Vec<i32>, DatasetError> {
    npy::read_file(path, 1)?
        .convert(|v| i32::try_from(v).ok())
        .map_err(|(k, v)| npy_err(path, format!("value {v} at [{k}] does not fit int32")))
}

/// Largest `dataset.json` read (the reference writes a few hundred bytes).
const MAX_METADATA_BYTES: u64 = 1 << 20;

/// Reads a split folder's `dataset.json`.
pub fn read_metadata(dir: &Path) -> Result<DatasetMetadata, DatasetError> {
    use std::io::Read;
    let meta_path = dir.join(METADATA);
    let json_err = |message: String| DatasetError::Json { path: meta_path.display().to_string(), message };
    let mut text = Vec::new();
    open(&meta_path)?.take(MAX_METADATA_BYTES + 1).read_to_end(&mut text).map_err(io_err(&meta_path))?;
    if text.len() as u64 > MAX_METADATA_BYTES {
        return Err(json_err(format!("larger than {MAX_METADATA_BYTES} bytes")));
    }
    serde_json::from_slice(&text).map_err(|e| json_err(e.to_string()))
}

/// Reads one split folder (`.../train`), checking shapes and indices.
pub fn read_split(dir: &Path) -> Result<SplitData, DatasetError> {
    let meta = read_metadata(dir)?;
    let inputs = read_token_grids(&dir.join(INPUTS))?;
    let labels = read_token_grids(&dir.join(LABELS))?;
    let what = dir.display().to_string();
    if inputs.dim() != labels.dim() {
        return Err(DatasetError::invalid(
            &what,
            format!("{INPUTS} is {:?} but {LABELS} is {:?}", inputs.dim(), labels.dim()),
        ));
    }
    if inputs.ncols() != meta.seq_len {
        return Err(DatasetError::invalid(
            &what,
            format!("{INPUTS} has {} tokens per example but {METADATA} says seq_len {}", inputs.ncols(), meta.seq_len),
        ));
    }
    let split = SplitData {
        seq_len: meta.seq_len,
        inputs: inputs.into_iter().collect(),
        labels: labels.into_iter().collect(),
        puzzle_identifiers: read_index_array(&dir.join(PUZZLE_IDENTIFIERS))?,
        puzzle_indices: read_index_array(&dir.join(PUZZLE_INDICES))?,
        group_indices: read_index_array(&dir.join(GROUP_INDICES))?,
    };
    split.validate(&what)?;
    Ok(split)
}

/// Reads every split folder of a dataset directory (those holding a `dataset.json`),
/// sorted by name.
pub fn read_dataset_dir(dir: &Path) -> Result<Vec<(String, SplitData)>, DatasetError> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(METADATA).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(DatasetError::invalid(
            dir.display().to_string(),
            format!("no split folders (folders holding {METADATA}) found"),
        ));
    }
    names.into_iter().map(|n| Ok((n.clone(), read_split(&dir.join(&n))?))).collect()
}

/// Writes one split's files into an existing folder (each file atomically).
pub fn write_split(dir: &Path, split: &SplitData) -> Result<(), DatasetError> {
    split.validate(&dir.display().to_string())?;
    let n = split.len();
    let grids = |tokens: &[u8]| Array2::from_shape_vec((n, split.seq_len), tokens.to_vec()).expect("validated shape");
    write_npy(&dir.join(INPUTS), &grids(&split.inputs))?;
    write_npy(&dir.join(LABELS), &grids(&split.labels))?;
    write_npy(&dir.join(PUZZLE_IDENTIFIERS), &Array1::from(split.puzzle_identifiers.clone()))?;
    write_npy(&dir.join(PUZZLE_INDICES), &Array1::from(split.puzzle_indices.clone()))?;
    write_npy(&dir.join(GROUP_INDICES), &Array1::from(split.group_indices.clone()))?;
    write_json(&dir.join(METADATA), &split.metadata())
}

/// Writes a whole dataset directory atomically: `out/<name>/...` for each split plus
/// `out/identifiers.json`. Refuses an existing non-empty `out`; on any error nothing is left.
pub fn write_dataset(out: &Path, splits: &[(&str, &SplitData)]) -> Result<(), DatasetError> {
    atomic::write_dir(out, |tmp| {
        for (name, split) in splits {
            let dir = tmp.join(name);
            fs::create_dir(&dir).map_err(io_err(&dir))?;
            write_split(&dir, split)?;
        }
        write_json(&tmp.join(IDENTIFIERS), &["<blank>"])
    })
    .map_err(|e: DatasetError| match e {
        // Name the real destination, not the temporary folder.
        DatasetError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
            DatasetError::Io { path: out.display().to_string(), source }
        }
        other => other,
    })
}

impl From<io::Error> for DatasetError {
    fn from(source: io::Error) -> Self {
        DatasetError::Io { path: String::new(), source }
    }
}

fn write_npy<T: WriteNpyExt>(path: &Path, array: &T) -> Result<(), DatasetError> {
    atomic::write_file_with(path, |w| array.write_npy(w).map_err(io::Error::other)).map_err(io_err(path))
}

/// Writes JSON the way Python's `json.dump` does (`", "` and `": "` separators), so our
/// files are byte-identical to the reference builder's.
fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), DatasetError> {
    let mut bytes = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut bytes, PythonFormatter);
    value.serialize(&mut ser).map_err(|e| DatasetError::Json { path: path.display().to_string(), message: e.to_string() })?;
    atomic::write_file(path, &bytes).map_err(io_err(path))
}

/// serde_json formatter with Python's default separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maze::{Grid, label};
    use std::path::PathBuf;

    /// The real benchmark, shipped read-only beside the project.
    fn benchmark_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/maze-30x30-hard-1k")
    }

    #[test]
    fn reads_the_real_benchmark_and_its_labels_follow_the_rule() {
        let splits = read_dataset_dir(&benchmark_dir()).expect("the benchmark in ../shared/data");
        assert_eq!(splits.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["test", "train"]);
        for (name, split) in &splits {
            assert_eq!(split.len(), 1000, "{name}");
            assert_eq!(split.seq_len, 900);
            // The label rule (lex-min shortest path, priority down, left, right, up) on every maze.
            assert_eq!(split.count_rule_labels().unwrap(), 1000, "{name}");
        }
    }

    #[test]
    fn writing_the_benchmark_back_gives_identical_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("copy");
        let (train, test) = (read_split(&benchmark_dir().join("train")).unwrap(), read_split(&benchmark_dir().join("test")).unwrap());
        write_dataset(&out, &[("train", &train), ("test", &test)]).unwrap();
        for split in ["train", "test"] {
            for f in [INPUTS, LABELS, PUZZLE_IDENTIFIERS, PUZZLE_INDICES, GROUP_INDICES] {
                let ours = fs::read(out.join(split).join(f)).unwrap();
                let theirs = fs::read(benchmark_dir().join(split).join(f)).unwrap();
                // numpy writes `'shape': (N, 900), }` where ndarray-npy writes `(N, 900)}`; both
                // are v1.0 headers padded to 128 bytes, so the data starts at the same offset.
                assert_eq!(ours.len(), theirs.len(), "{split}/{f}");
                assert_eq!(&ours[..8], &theirs[..8], "{split}/{f}: npy version");
                assert!(ours[128..] == theirs[128..], "{split}/{f}: data differs from the reference");
                let header = |b: &[u8]| String::from_utf8_lossy(&b[10..128]).replace(", }", "}").replace(' ', "");
                assert_eq!(header(&ours), header(&theirs), "{split}/{f}: dtype or shape");
            }
            // Same JSON as the reference, plus TRM's total_puzzles (this copy was built by HRM's builder).
            let ours = fs::read_to_string(out.join(split).join(METADATA)).unwrap();
            let theirs = fs::read_to_string(benchmark_dir().join(split).join(METADATA)).unwrap();
            assert_eq!(ours.replace("\"total_puzzles\": 1000, ", ""), theirs);
        }
        assert_eq!(fs::read(out.join(IDENTIFIERS)).unwrap(), fs::read(benchmark_dir().join(IDENTIFIERS)).unwrap());
        assert_eq!(read_split(&out.join("test")).unwrap(), test);
    }

    #[test]
    fn round_trips_small_sets_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let maze = Grid::parse_lines("S  \n # \n  G\n").unwrap();
        let split = SplitData::from_examples(9, vec![(maze.tokens(), label(&maze).unwrap().tokens())]);
        let out = tmp.path().join("d");
        write_dataset(&out, &[("train", &split)]).unwrap();
        assert_eq!(read_split(&out.join("train")).unwrap(), split);
        let err = write_dataset(&out, &[("train", &split)]).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }

    #[test]
    fn accepts_int32_grids_and_rejects_bad_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("g.npy");
        let wide = Array2::from_shape_vec((1, 4), vec![3i32, 2, 2, 4]).unwrap();
        wide.write_npy(fs::File::create(&p).unwrap()).unwrap();
        assert_eq!(read_token_grids(&p).unwrap().into_raw_vec_and_offset().0, vec![3u8, 2, 2, 4]);

        let bad = Array2::from_shape_vec((1, 2), vec![3i32, 300]).unwrap();
        bad.write_npy(fs::File::create(&p).unwrap()).unwrap();
        assert!(read_token_grids(&p).unwrap_err().to_string().contains("value 300 at [0, 1]"));

        fs::write(&p, b"\x93NUMPY garbage").unwrap();
        assert!(matches!(read_token_grids(&p), Err(DatasetError::Npy { .. })));
        let full = fs::read(benchmark_dir().join("test").join(INPUTS)).unwrap();
        fs::write(&p, &full[..5000]).unwrap();
        assert!(matches!(read_token_grids(&p), Err(DatasetError::Npy { .. })), "a truncated file is an error");
        assert!(matches!(read_token_grids(&tmp.path().join("missing.npy")), Err(DatasetError::Io { .. })));
    }

    #[test]
    fn read_split_rejects_inconsistent_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("d");
        let maze = Grid::parse_lines("S \n G\n").unwrap();
        let split = SplitData::from_examples(4, vec![(maze.tokens(), label(&maze).unwrap().tokens())]);
        write_dataset(&out, &[("test", &split)]).unwrap();
        let dir = out.join("test");
        let labels = Array2::from_shape_vec((2, 4), vec![2u8; 8]).unwrap();
        labels.write_npy(fs::File::create(dir.join(LABELS)).unwrap()).unwrap();
        let err = read_split(&dir).unwrap_err().to_string();
        assert!(err.contains("all__inputs.npy is (1, 4) but all__labels.npy is (2, 4)"), "{err}");
        fs::write(dir.join(METADATA), "{not json").unwrap();
        assert!(matches!(read_split(&dir), Err(DatasetError::Json { .. })));
    }
}

//! Datasets in the reference's layout (HRM's `build_maze_dataset.py`, the same in TRM).
//!
//! A dataset directory holds one folder per split (`train`, `test`) and `identifiers.json`.
//! Each split folder holds `all__inputs.npy` and `all__labels.npy` (uint8 `[N, seq_len]`),
//! `all__puzzle_identifiers.npy`, `all__puzzle_indices.npy`, `all__group_indices.npy`
//! (int32) and `dataset.json`. An example belongs to a puzzle (`puzzle_indices`) and a
//! puzzle to a group (`group_indices`); without augmentation every maze is its own puzzle
//! and its own group, with `--aug` the 8 dihedral views of a maze form one group.

mod augment;
mod check;
#[cfg(feature = "native")]
mod csv;
#[cfg(feature = "native")]
mod files;
#[cfg(feature = "native")]
pub(crate) mod npy;

pub use augment::{AUGMENT_CAVEAT, AUGMENT_VIEWS, augment_dihedral};
pub use check::{ExampleAt, ExampleCheck, ExampleError, check_example, check_split};
#[cfg(feature = "native")]
pub use self::csv::{CSV_HEADER, CsvError, CsvImport, RowProblem, read_csv, read_csv_from, write_csv, write_csv_to};
#[cfg(feature = "native")]
pub use files::{read_dataset_dir, read_index_array, read_metadata, read_split, read_token_grids, write_dataset, write_split};

use serde::{Deserialize, Serialize};

use crate::maze::{self, Grid, MazeError, VOCAB_SIZE};

/// Errors reading, checking or writing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid npy file of the expected kind: {message}")]
    Npy { path: String, message: String },
    #[error("{path}: invalid JSON: {message}")]
    Json { path: String, message: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("example {index}: {source}")]
    Maze { index: usize, source: MazeError },
}

impl DatasetError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> DatasetError {
        DatasetError::Invalid { what: what.into(), message: message.into() }
    }
}

/// `dataset.json`, field for field as the reference writes it (pydantic `PuzzleDatasetMetadata`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetMetadata {
    pub pad_id: i64,
    pub ignore_label_id: Option<i64>,
    pub blank_identifier_id: i64,
    pub vocab_size: usize,
    pub seq_len: usize,
    pub num_puzzle_identifiers: usize,
    pub total_groups: usize,
    pub mean_puzzle_examples: f64,
    /// Added by TRM; HRM's files lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_puzzles: Option<usize>,
    pub sets: Vec<String>,
}

/// One split (`train` or `test`) of a dataset, held in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitData {
    /// Tokens per example (`rows * cols`).
    pub seq_len: usize,
    /// `[N, seq_len]` input tokens, row-major.
    pub inputs: Vec<u8>,
    /// `[N, seq_len]` label tokens.
    pub labels: Vec<u8>,
    /// One identifier per puzzle (all 0 for mazes: the only identifier is `<blank>`).
    pub puzzle_identifiers: Vec<i32>,
    /// Puzzle p owns examples `puzzle_indices[p]..puzzle_indices[p+1]`.
    pub puzzle_indices: Vec<i32>,
    /// Group g owns puzzles `group_indices[g]..group_indices[g+1]`.
    pub group_indices: Vec<i32>,
}

impl SplitData {
    /// A split without augmentation: every (input, label) pair is its own puzzle and group,
    /// with identifier 0, as the reference builder writes it.
    ///
    /// # Panics
    /// If an example's length differs from `seq_len`; examples come from code that builds
    /// them at that length.
    pub fn from_examples(seq_len: usize, examples: Vec<(Vec<u8>, Vec<u8>)>) -> SplitData {
        Self::from_groups(seq_len, examples.into_iter().map(|e| vec![e]).collect())
    }

    /// A split whose groups each hold one or more puzzles of one example each (the layout
    /// `--aug` produces: a maze and its dihedral views form a group).
    ///
    /// # Panics
    /// If an example's length differs from `seq_len`.
    pub fn from_groups(seq_len: usize, groups: Vec<Vec<(Vec<u8>, Vec<u8>)>>) -> SplitData {
        let mut split = SplitData {
            seq_len,
            inputs: Vec::new(),
            labels: Vec::new(),
            puzzle_identifiers: Vec::new(),
            puzzle_indices: vec![0],
            group_indices: vec![0],
        };
        for group in groups {
            for (input, label) in group {
                assert_eq!(input.len(), seq_len, "input length");
                assert_eq!(label.len(), seq_len, "label length");
                split.inputs.extend_from_slice(&input);
                split.labels.extend_from_slice(&label);
                split.puzzle_identifiers.push(0);
                split.puzzle_indices.push(split.puzzle_identifiers.len() as i32);
            }
            split.group_indices.push(split.puzzle_identifiers.len() as i32);
        }
        split
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.inputs.len() / self.seq_len.max(1)
    }

    /// True when the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Input tokens of example `i`.
    pub fn input(&self, i: usize) -> &[u8] {
        &self.inputs[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// Label tokens of example `i`.
    pub fn label(&self, i: usize) -> &[u8] {
        &self.labels[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// Example `i` as grids (puzzle, label). Mazes are square, as in the reference.
    pub fn grids(&self, i: usize) -> Result<(Grid, Grid), DatasetError> {
        let wrap = |source| DatasetError::Maze { index: i, source };
        let input = Grid::from_square_tokens(self.input(i)).map_err(wrap)?;
        let label = Grid::from_square_tokens(self.label(i)).map_err(wrap)?;
        Ok((input, label))
    }

    /// Number of groups.
    pub fn total_groups(&self) -> usize {
        self.group_indices.len().saturating_sub(1)
    }

    /// `dataset.json` for this split, as the reference builder (with TRM's `total_puzzles`) writes it.
    pub fn metadata(&self) -> DatasetMetadata {
        let puzzles = self.puzzle_identifiers.len();
        DatasetMetadata {
            pad_id: 0,
            ignore_label_id: Some(0),
            blank_identifier_id: 0,
            vocab_size: VOCAB_SIZE,
            seq_len: self.seq_len,
            num_puzzle_identifiers: 1,
            total_groups: self.total_groups(),
            mean_puzzle_examples: if puzzles == 0 { 0.0 } else { self.len() as f64 / puzzles as f64 },
            total_puzzles: Some(self.total_groups()),
            sets: vec!["all".into()],
        }
    }

    /// Checks shapes, index arrays and token ranges; `what` names the split in errors.
    pub fn validate(&self, what: &str) -> Result<(), DatasetError> {
        let bad = |m: String| Err(DatasetError::invalid(what, m));
        if self.seq_len == 0 {
            return bad("seq_len is 0".into());
        }
        if self.inputs.len() % self.seq_len != 0 || self.labels.len() != self.inputs.len() {
            return bad(format!(
                "inputs ({} tokens) and labels ({} tokens) must both be [N, {}]",
                self.inputs.len(),
                self.labels.len(),
                self.seq_len
            ));
        }
        let n = self.len() as i64;
        let puzzles = self.puzzle_identifiers.len() as i64;
        check_offsets(&self.puzzle_indices, n, "puzzle_indices", "examples").or_else(|m| bad(m))?;
        if self.puzzle_indices.len() as i64 != puzzles + 1 {
            return bad(format!(
                "puzzle_indices has {} entries but there are {} puzzle identifiers (expected identifiers + 1)",
                self.puzzle_indices.len(),
                puzzles
            ));
        }
        check_offsets(&self.group_indices, puzzles, "group_indices", "puzzles").or_else(|m| bad(m))?;
        for (name, tokens) in [("inputs", &self.inputs), ("labels", &self.labels)] {
            if let Some(pos) = tokens.iter().position(|&t| t as usize >= VOCAB_SIZE) {
                return bad(format!(
                    "{name}: token {} at example {} position {} is outside the vocabulary 0..{VOCAB_SIZE}",
                    tokens[pos],
                    pos / self.seq_len,
                    pos % self.seq_len
                ));
            }
        }
        Ok(())
    }

    /// Checks that every example is a valid maze whose label is the benchmark's
    /// (lexicographically smallest shortest path); returns how many labels follow the rule.
    pub fn count_rule_labels(&self) -> Result<usize, DatasetError> {
        let mut ok = 0;
        for i in 0..self.len() {
            let (input, label) = self.grids(i)?;
            if maze::label(&input).map_err(|source| DatasetError::Maze { index: i, source })? == label {
                ok += 1;
            }
        }
        Ok(ok)
    }
}

/// Checks an offsets array: starts at 0, never decreases, ends at `total`.
fn check_offsets(offsets: &[i32], total: i64, name: &str, unit: &str) -> Result<(), String> {
    match (offsets.first(), offsets.last()) {
        (Some(0), Some(&last)) if last as i64 == total => {}
        _ => {
            return Err(format!(
                "{name} must run from 0 to the number of {unit} ({total}), found {:?}..{:?}",
                offsets.first(),
                offsets.last()
            ));
        }
    }
    if let Some(w) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(format!("{name} decreases at entry {}", w + 1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> SplitData {
        let maze = Grid::parse_lines("S \n G\n").unwrap();
        let label = maze::label(&maze).unwrap();
        SplitData::from_examples(4, vec![(maze.tokens(), label.tokens()), (maze.tokens(), maze.tokens())])
    }

    #[test]
    fn builds_reference_indices() {
        let s = tiny();
        assert_eq!(s.len(), 2);
        assert_eq!(s.puzzle_indices, [0, 1, 2]);
        assert_eq!(s.group_indices, [0, 1, 2]);
        assert_eq!(s.puzzle_identifiers, [0, 0]);
        s.validate("tiny").unwrap();
        assert_eq!(s.count_rule_labels().unwrap(), 1);
        let m = s.metadata();
        assert_eq!((m.total_groups, m.total_puzzles, m.seq_len), (2, Some(2), 4));

        let grouped = SplitData::from_groups(4, vec![vec![(s.input(0).to_vec(), s.label(0).to_vec()); 8]]);
        assert_eq!(grouped.group_indices, [0, 8]);
        assert_eq!(grouped.puzzle_indices, (0..=8).collect::<Vec<_>>());
        grouped.validate("grouped").unwrap();
    }

    #[test]
    fn validate_names_the_problem() {
        let mut s = tiny();
        s.labels.pop();
        assert!(s.validate("t").unwrap_err().to_string().contains("must both be [N, 4]"));
        let mut s = tiny();
        s.inputs[5] = 9;
        assert!(s.validate("t").unwrap_err().to_string().contains("token 9 at example 1 position 1"));
        let mut s = tiny();
        s.group_indices = vec![0, 3];
        assert!(s.validate("t").unwrap_err().to_string().contains("group_indices must run from 0"));
        let mut s = tiny();
        s.puzzle_indices = vec![0, 2, 1, 2];
        s.puzzle_identifiers = vec![0, 0, 0];
        s.group_indices = vec![0, 3];
        assert!(s.validate("t").unwrap_err().to_string().contains("decreases at entry 2"));
    }
}

//! Mazes for the model commands (`predict`, `eval`): read from an npy file, a dataset split
//! folder or a text file of mazes, with their labels and puzzle identifiers where they exist.

use std::path::Path;

use anyhow::{Context, bail};
use trm_shared::maze::Grid;

/// Mazes to run the model on, with labels when the source has them.
pub struct Inputs {
    /// Row-major `[n, seq_len]` tokens.
    pub tokens: Vec<u8>,
    /// Labels `[n, seq_len]`, from a dataset split.
    pub labels: Option<Vec<u8>>,
    /// Puzzle identifiers `[n]`.
    pub puzzle_identifiers: Vec<i32>,
    /// Cells per maze.
    pub seq_len: usize,
    /// Grid shape (rows, cols), `rows * cols == seq_len`.
    pub shape: (usize, usize),
}

impl Inputs {
    /// Number of mazes.
    pub fn len(&self) -> usize {
        self.puzzle_identifiers.len()
    }

    /// Keeps only the first `n` mazes.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.tokens.truncate(n * self.seq_len);
        if let Some(l) = self.labels.as_mut() {
            l.truncate(n * self.seq_len);
        }
        self.puzzle_identifiers.truncate(n);
    }

    /// Row `i` of `tokens` (inputs, labels or answers, all `[n, seq_len]`) as a grid.
    pub fn grid_of(&self, tokens: &[u8], i: usize) -> Result<Grid, trm_shared::maze::MazeError> {
        self.grid_row(&tokens[i * self.seq_len..(i + 1) * self.seq_len])
    }

    /// One row of `seq_len` tokens as a grid of this input's shape.
    pub fn grid_row(&self, row: &[u8]) -> Result<Grid, trm_shared::maze::MazeError> {
        Grid::from_tokens(self.shape.0, self.shape.1, row)
    }
}

/// Reads `src`: a dataset split directory (`all__inputs.npy` ...), an npy of token grids
/// `[N, seq_len]` (uint8/int32/int64), or a text file of mazes separated by blank lines.
pub fn read_inputs(src: &Path) -> anyhow::Result<Inputs> {
    if src.is_dir() {
        let split = trm_shared::dataset::read_split(src)
            .with_context(|| format!("reading the dataset split {}", src.display()))?;
        return Ok(Inputs {
            tokens: split.inputs,
            labels: Some(split.labels),
            puzzle_identifiers: split.puzzle_identifiers,
            seq_len: split.seq_len,
            shape: square(split.seq_len, src)?,
        });
    }
    let is_npy = src.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        let grids = trm_shared::dataset::read_token_grids(src)
            .with_context(|| format!("reading token grids from {}", src.display()))?;
        let (n, seq_len) = grids.dim();
        if n == 0 || seq_len == 0 {
            bail!("{} holds no mazes (shape [{n}, {seq_len}])", src.display());
        }
        return Ok(Inputs {
            tokens: grids.iter().copied().collect(),
            labels: None,
            puzzle_identifiers: vec![0; n],
            seq_len,
            shape: square(seq_len, src)?,
        });
    }
    let text = std::fs::read_to_string(src).with_context(|| format!("reading {}", src.display()))?;
    let mut tokens = Vec::new();
    let mut shape: Option<(usize, usize)> = None;
    let mut n = 0;
    for (k, block) in split_blocks(&text).into_iter().enumerate() {
        let grid = Grid::parse_any(&block).with_context(|| format!("{}: maze {k}", src.display()))?;
        let puzzle = grid.without_path();
        puzzle.validate_puzzle().with_context(|| format!("{}: maze {k}", src.display()))?;
        let this = (puzzle.rows(), puzzle.cols());
        match shape {
            None => shape = Some(this),
            Some(s) if s != this => {
                bail!("{}: maze {k} is {}x{}, the first is {}x{}", src.display(), this.0, this.1, s.0, s.1)
            }
            _ => {}
        }
        tokens.extend(puzzle.tokens());
        n += 1;
    }
    let Some(shape) = shape else { bail!("{}: no maze found", src.display()) };
    Ok(Inputs { tokens, labels: None, puzzle_identifiers: vec![0; n], seq_len: shape.0 * shape.1, shape })
}

/// The side of a square grid of `len` cells (npy files do not record the grid's shape).
fn square(len: usize, src: &Path) -> anyhow::Result<(usize, usize)> {
    let side = trm_shared::maze::square_side(len)
        .with_context(|| format!("{}: rows of {len} cells are not square grids", src.display()))?;
    Ok((side, side))
}

/// Splits text into mazes at empty lines (an all-open row is spaces, never empty).
fn split_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// Reads a 1-D int32 (or other integer) npy of puzzle identifiers.
pub fn read_puzzle_identifiers(path: &Path, n: usize) -> anyhow::Result<Vec<i32>> {
    let ids = trm_shared::dataset::read_index_array(path).context("reading the puzzle identifiers")?;
    if ids.len() != n {
        bail!("{}: {} puzzle identifiers for {n} mazes", path.display(), ids.len());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_mazes_split_on_blank_lines_only() {
        let text = "#S #\n    \n# G#\n\n\n#S  \n#  G\n#   \n";
        let blocks = split_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], "#S #\n    \n# G#\n");
    }

    #[test]
    fn reads_a_text_file_of_mazes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.txt");
        std::fs::write(&p, "S  \n## \nG  \n\nS# \n   \n #G\n").unwrap();
        let inputs = read_inputs(&p).unwrap();
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs.seq_len, 9);
        assert_eq!(&inputs.tokens[0..3], &[3, 2, 2]);
        std::fs::write(&p, "S  \nG  \n\nS# \n   \n #G\n").unwrap();
        assert!(read_inputs(&p).is_err());
        std::fs::write(&p, "\n\n").unwrap();
        assert!(read_inputs(&p).is_err());
    }
}

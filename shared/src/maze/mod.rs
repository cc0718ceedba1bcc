//! The maze domain: grids and their text forms, the benchmark's shortest-path label rule,
//! a checker for predicted answers, and the eight dihedral transforms.

mod grid;
mod path;
mod transform;
pub mod wave;
mod window;

pub use grid::{Cell, DEFAULT_SIZE, Grid, MAX_CELLS, PAD, VOCAB_SIZE, square_side};
pub use path::{AnswerCheck, Solution, check_answer, distances_from, label, shortest_path};
pub use transform::{DIHEDRAL_INVERSE, Dihedral, dihedral_transform};
pub use wave::Wave;
pub use window::{Frame, Window, WindowError};

/// Everything that can be wrong with a maze given as text, tokens or cells.
/// Positions are zero-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MazeError {
    #[error("empty maze")]
    Empty,
    #[error("unknown character {ch:?} at row {row} col {col} (allowed: '#', ' ', 'S', 'G', 'o')")]
    UnknownChar { row: usize, col: usize, ch: char },
    #[error("unknown token {token} at row {row} col {col} (allowed: 1..=5)")]
    UnknownToken { row: usize, col: usize, token: u8 },
    #[error("wrong length: expected {expected} cells, found {found}")]
    WrongLength { expected: usize, found: usize },
    #[error("a row-major maze must have a square number of cells, found {len}")]
    NotSquare { len: usize },
    #[error("row {row} has {found} cells, expected {expected} like the first row")]
    RaggedRow { row: usize, expected: usize, found: usize },
    #[error("no start 'S'")]
    NoStart,
    #[error("no goal 'G'")]
    NoGoal,
    #[error("{count} starts 'S', expected exactly one")]
    MultipleStarts { count: usize },
    #[error("{count} goals 'G', expected exactly one")]
    MultipleGoals { count: usize },
    #[error("path cell 'o' at row {row} col {col} in a puzzle (only answers have path cells)")]
    PathInPuzzle { row: usize, col: usize },
    #[error("no path from 'S' to 'G'")]
    Unsolvable,
    #[error("answer is {found_rows}x{found_cols}, the maze is {rows}x{cols}")]
    ShapeMismatch { rows: usize, cols: usize, found_rows: usize, found_cols: usize },
}

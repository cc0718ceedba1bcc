//! Checks that a (puzzle, answer) pair is a well-formed Maze-Hard example, whatever file it
//! came from (the CSV release or the npy layout).
//!
//! The reference builder takes the answer as given and only asserts the character set; we
//! keep its answers as given too, but refuse pairs that cannot be a maze and its solution,
//! so a corrupt file fails loudly at import instead of silently training on garbage.

use std::fmt;

use super::SplitData;
use crate::maze::{self, Cell, Grid, MazeError};

/// What is wrong with an example (a puzzle and its answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExampleError {
    /// The puzzle does not parse, or is not a puzzle (no S, two G, path cells...).
    #[error("question: {0}")]
    Question(MazeError),
    /// The answer does not parse.
    #[error("answer: {0}")]
    Answer(MazeError),
    /// Puzzle and answer differ in shape.
    #[error("answer is {found_rows}x{found_cols} but the question is {rows}x{cols}")]
    SizeMismatch { rows: usize, cols: usize, found_rows: usize, found_cols: usize },
    /// The answer changes a cell other than turning an open cell into `o`.
    #[error(
        "answer is not consistent with the question at row {row} col {col}: question has {question:?}, answer has {answer:?} (only open cells may become 'o')"
    )]
    Inconsistent { row: usize, col: usize, question: char, answer: char },
    /// No path from S to G exists.
    #[error("unsolvable maze: no path from 'S' to 'G'")]
    Unsolvable,
    /// The `o` cells do not draw one simple S-to-G path.
    #[error("answer's 'o' cells do not form one path from 'S' to 'G'")]
    NotAPath,
    /// The answer draws a path, but not a shortest one.
    #[error("answer's path has {found} moves but the shortest path has {shortest}")]
    NotShortest { found: usize, shortest: usize },
}

/// A checked example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExampleCheck {
    /// Moves of the answer's (shortest) path.
    pub moves: usize,
    /// Whether the answer is exactly the benchmark's lex-min label ([`maze::label`]).
    pub follows_rule: bool,
}

/// Checks that `answer` is `question` with the inner cells of one shortest S-to-G path
/// turned into `o`. The answer need not be the lex-min path: augmented labels are not.
pub fn check_example(question: &Grid, answer: &Grid) -> Result<ExampleCheck, ExampleError> {
    question.validate_puzzle().map_err(ExampleError::Question)?;
    if (answer.rows(), answer.cols()) != (question.rows(), question.cols()) {
        return Err(ExampleError::SizeMismatch {
            rows: question.rows(),
            cols: question.cols(),
            found_rows: answer.rows(),
            found_cols: answer.cols(),
        });
    }
    if let Some(i) = (0..question.len()).find(|&i| {
        let (q, a) = (question.at(i), answer.at(i));
        q != a && !(q == Cell::Open && a == Cell::Path)
    }) {
        return Err(ExampleError::Inconsistent {
            row: i / question.cols(),
            col: i % question.cols(),
            question: question.at(i).to_char(),
            answer: answer.at(i).to_char(),
        });
    }
    let check = maze::check_answer(question, answer).map_err(|e| match e {
        MazeError::Unsolvable => ExampleError::Unsolvable,
        other => ExampleError::Question(other),
    })?;
    match check.path_moves {
        None => Err(ExampleError::NotAPath),
        Some(found) if !check.shortest => Err(ExampleError::NotShortest { found, shortest: check.optimal_moves }),
        Some(moves) => Ok(ExampleCheck { moves, follows_rule: check.exact }),
    }
}

/// An [`ExampleError`] at a given example of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleAt {
    /// Zero-based example index.
    pub index: usize,
    /// What is wrong with it.
    pub error: ExampleError,
}

impl fmt::Display for ExampleAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "example {}: {}", self.index, self.error)
    }
}

impl std::error::Error for ExampleAt {}

/// Checks every example of a split with [`check_example`]; returns how many labels follow
/// the benchmark rule, or the first bad example.
pub fn check_split(split: &SplitData) -> Result<usize, ExampleAt> {
    let mut follows = 0;
    for index in 0..split.len() {
        let at = |error| ExampleAt { index, error };
        let question = Grid::from_square_tokens(split.input(index)).map_err(|e| at(ExampleError::Question(e)))?;
        let answer = Grid::from_square_tokens(split.label(index)).map_err(|e| at(ExampleError::Answer(e)))?;
        follows += usize::from(check_example(&question, &answer).map_err(at)?.follows_rule);
    }
    Ok(follows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Grid {
        Grid::parse_lines(s).unwrap()
    }

    #[test]
    fn accepts_rule_and_other_shortest_labels() {
        let q = g("S  \n   \n  G\n");
        let rule = maze::label(&q).unwrap();
        assert_eq!(check_example(&q, &rule), Ok(ExampleCheck { moves: 4, follows_rule: true }));
        assert_eq!(check_example(&q, &g("Soo\n  o\n  G\n")), Ok(ExampleCheck { moves: 4, follows_rule: false }));
    }

    #[test]
    fn names_each_problem() {
        let q = g("S  \n   \n  G\n");
        assert_eq!(check_example(&g("S  \n   \n   \n"), &q), Err(ExampleError::Question(MazeError::NoGoal)));
        assert!(matches!(
            check_example(&q, &g("S \n G\n")),
            Err(ExampleError::SizeMismatch { rows: 3, found_rows: 2, .. })
        ));
        assert_eq!(
            check_example(&q, &g("S# \n   \n  G\n")),
            Err(ExampleError::Inconsistent { row: 0, col: 1, question: ' ', answer: '#' })
        );
        assert_eq!(check_example(&g("S# \n#  \n  G\n"), &g("S# \n#oo\n  G\n")), Err(ExampleError::Unsolvable));
        assert_eq!(check_example(&q, &g("S  \n o \n  G\n")), Err(ExampleError::NotAPath));
        let q = g("S G\n   \n   \n");
        assert_eq!(check_example(&q, &g("S G\nooo\n   \n")), Err(ExampleError::NotShortest { found: 4, shortest: 2 }));
        let msg = check_example(&g("S  \n   \n  G\n"), &g("S G\n   \n  G\n")).unwrap_err().to_string();
        assert!(msg.contains("row 0 col 2") && msg.contains("only open cells"), "{msg}");
    }

    #[test]
    fn checks_a_split_and_points_at_the_bad_example() {
        let q = g("S  \n   \n  G\n");
        let good = (q.tokens(), maze::label(&q).unwrap().tokens());
        let other = (q.tokens(), g("Soo\n  o\n  G\n").tokens());
        let split = SplitData::from_examples(9, vec![good.clone(), other.clone()]);
        assert_eq!(check_split(&split), Ok(1));
        let bad = SplitData::from_examples(9, vec![good, other, (q.tokens(), q.tokens())]);
        let err = check_split(&bad).unwrap_err();
        assert_eq!(err.index, 2);
        assert_eq!(err.to_string(), "example 2: answer's 'o' cells do not form one path from 'S' to 'G'");
    }
}

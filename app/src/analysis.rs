//! What the page says about a maze and about an answer: solvability, the optimal length
//! against the benchmark's difficulty threshold, and the verdict on a predicted answer.

use trm_shared::generate::{BENCHMARK_MIN_MOVES, default_min_moves};
use trm_shared::maze::{Cell, Grid, MazeError, check_answer, label, shortest_path};

/// Facts about the maze in the editor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MazeFacts {
    /// Why the maze is not a puzzle (no start, two goals, ...), if it is not.
    pub problem: Option<String>,
    /// The benchmark's shortest path (cells from S to G), when there is one.
    pub optimal_path: Option<Vec<usize>>,
    /// The difficulty threshold for this size: 109 moves at 30x30 (the benchmark's), the
    /// generator's default elsewhere.
    pub threshold: u32,
}

impl MazeFacts {
    /// Moves of the shortest path, when the maze is solvable.
    pub fn optimal_moves(&self) -> Option<usize> {
        self.optimal_path.as_ref().map(|p| p.len() - 1)
    }

    /// One line for the page.
    pub fn summary(&self) -> String {
        if let Some(problem) = &self.problem {
            return format!("not a puzzle: {problem}");
        }
        match self.optimal_moves() {
            None => format!("unsolvable: no path from S to G (hard threshold {} moves)", self.threshold),
            Some(m) => {
                let t = self.threshold;
                let hard = if m as u32 >= t { format!("hard: at least the {t}-move threshold") } else { format!("below the {t}-move threshold") };
                format!("solvable: shortest path {m} moves ({hard})")
            }
        }
    }
}

/// Analyses a maze (cheap: one BFS).
pub fn facts(grid: &Grid) -> MazeFacts {
    let threshold = if (grid.rows(), grid.cols()) == (30, 30) {
        BENCHMARK_MIN_MOVES
    } else {
        default_min_moves(grid.rows(), grid.cols())
    };
    let problem = grid.validate_puzzle().err().map(|e| e.to_string());
    let optimal_path = if problem.is_none() {
        shortest_path(grid).ok().flatten().map(|s| s.cells)
    } else {
        None
    };
    MazeFacts { problem, optimal_path, threshold }
}

/// The answer after one ACT step, as tokens (0 = padding, which no maze cell is).
#[derive(Clone, Debug, PartialEq)]
pub struct StepTokens {
    /// The step, from 1.
    pub step: usize,
    /// Row-major answer tokens.
    pub tokens: Vec<u8>,
    /// The halting logit after this step (`> 0`: the model would stop here).
    pub q_halt: f32,
}

impl StepTokens {
    /// Reads a server answer row (`?` for a cell that is no maze cell).
    pub fn from_row_major(step: usize, grid: &str, q_halt: f32) -> StepTokens {
        let tokens = grid.chars().map(|c| Cell::from_char(c).map_or(0, Cell::token)).collect();
        StepTokens { step, tokens, q_halt }
    }

    /// Row-major text, `?` for padding (the server's form).
    pub fn to_row_major(&self) -> String {
        self.tokens.iter().map(|&t| Cell::from_token(t).map_or('?', Cell::to_char)).collect()
    }
}

/// The verdict on an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Equal to the benchmark's label, cell for cell.
    Exact,
    /// A valid shortest path, not the label's (another optimal path).
    Shortest,
    /// A valid path, longer than the optimum.
    Longer,
    /// Not one simple path from S to G through open cells.
    Invalid,
}

/// An answer scored against the maze.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scored {
    /// The verdict.
    pub verdict: Verdict,
    /// Moves of the answer's path, when valid.
    pub path_moves: Option<usize>,
    /// Moves of a shortest path.
    pub optimal_moves: usize,
    /// Cells that differ from the label (row-major indices).
    pub wrong_cells: Vec<usize>,
}

impl Scored {
    /// One line for the page.
    pub fn summary(&self) -> String {
        let wrong = self.wrong_cells.len();
        match (self.verdict, self.path_moves) {
            (Verdict::Exact, _) => format!("exact: the benchmark's path, {} moves", self.optimal_moves),
            (Verdict::Shortest, Some(m)) => format!("valid and shortest ({m} moves), {wrong} cells differ from the label"),
            (Verdict::Longer, Some(m)) => format!("valid but longer: {m} moves, optimum {}", self.optimal_moves),
            _ => format!("invalid: {wrong} wrong cells (marked), optimum {} moves", self.optimal_moves),
        }
    }
}

/// What the page shows about an answer: the verdict, its line, and the cells to mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// The verdict ([`Verdict::Invalid`] when the answer cannot be scored at all).
    pub verdict: Verdict,
    /// One line for the page.
    pub line: String,
    /// Cells that differ from the label (none when the answer cannot be scored).
    pub wrong_cells: Vec<usize>,
}

/// Scores `tokens` against `maze` for the page: an answer that cannot be scored (the maze
/// is no puzzle, the answer has another length) is invalid, with the reason as its line.
pub fn judge(maze: &Grid, tokens: &[u8]) -> Judgement {
    match score(maze, tokens) {
        Ok(s) => Judgement { verdict: s.verdict, line: s.summary(), wrong_cells: s.wrong_cells },
        Err(e) => Judgement { verdict: Verdict::Invalid, line: e.to_string(), wrong_cells: Vec::new() },
    }
}

/// Scores `tokens` (row-major, padding allowed) against the puzzle `maze`.
pub fn score(maze: &Grid, tokens: &[u8]) -> Result<Scored, MazeError> {
    let expected = label(maze)?;
    if tokens.len() != maze.len() {
        return Err(MazeError::WrongLength { expected: maze.len(), found: tokens.len() });
    }
    let optimal_moves = expected.cells().iter().filter(|&&c| c == Cell::Path).count() + 1;
    let wrong_cells: Vec<usize> = (0..maze.len()).filter(|&i| tokens[i] != expected.at(i).token()).collect();
    // An answer with padding cells is no grid, hence invalid.
    let check = Grid::from_tokens(maze.rows(), maze.cols(), tokens).ok().map(|g| check_answer(maze, &g)).transpose()?;
    let path_moves = check.as_ref().and_then(|c| c.path_moves);
    let verdict = match &check {
        _ if wrong_cells.is_empty() => Verdict::Exact,
        Some(c) if c.shortest => Verdict::Shortest,
        Some(c) if c.valid => Verdict::Longer,
        _ => Verdict::Invalid,
    };
    Ok(Scored { verdict, path_moves, optimal_moves, wrong_cells })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(text: &str) -> Grid {
        Grid::parse_lines(text).unwrap()
    }

    fn tokens(text: &str) -> Vec<u8> {
        text.chars().filter(|&c| c != '\n').map(|c| Cell::from_char(c).map_or(0, Cell::token)).collect()
    }

    #[test]
    fn facts_report_solvability_length_and_threshold() {
        let f = facts(&grid("S# \n # \n  G\n"));
        assert_eq!(f.optimal_moves(), Some(4));
        assert_eq!(f.optimal_path, Some(vec![0, 3, 6, 7, 8]));
        assert!(f.summary().starts_with("solvable: shortest path 4 moves"), "{}", f.summary());
        let f = facts(&grid("S#\n#G\n"));
        assert_eq!(f.optimal_moves(), None);
        assert!(f.summary().starts_with("unsolvable"));
        let f = facts(&grid("S \n  \n"));
        assert_eq!(f.problem.as_deref(), Some("no goal 'G'"));
        assert!(f.summary().contains("not a puzzle"));
        let big = crate::editor::blank(30, 30).unwrap();
        let f = facts(&big);
        assert_eq!(f.threshold, 109);
        assert_eq!(f.optimal_moves(), Some(58));
        assert!(f.summary().contains("below the 109-move threshold"), "{}", f.summary());
    }

    #[test]
    fn verdicts_cover_exact_other_shortest_longer_and_invalid() {
        let maze = grid("S  \n   \n  G\n");
        // The label goes down first (priority down, left, right, up).
        let exact = score(&maze, &tokens("S  \no  \nooG")).unwrap();
        assert_eq!(exact.verdict, Verdict::Exact);
        let other = score(&maze, &tokens("Soo\n  o\n  G")).unwrap();
        assert_eq!((other.verdict, other.path_moves, other.wrong_cells.len()), (Verdict::Shortest, Some(4), 6));
        let maze = grid("S   \n    \n   G\n");
        let zigzag = score(&maze, &tokens("So  \n oo \n  oG")).unwrap();
        assert_eq!((zigzag.verdict, zigzag.path_moves), (Verdict::Shortest, Some(5)));
        let maze = grid("S   G\n     \n     \n");
        let around = score(&maze, &tokens("S   G\no   o\nooooo")).unwrap();
        assert_eq!((around.verdict, around.path_moves, around.optimal_moves), (Verdict::Longer, Some(8), 4));
        assert!(around.summary().starts_with("valid but longer: 8 moves"));
        let broken = score(&maze, &tokens("So  G\n     \n     ")).unwrap();
        assert_eq!(broken.verdict, Verdict::Invalid);
        assert!(broken.summary().starts_with("invalid"));
    }

    #[test]
    fn padding_is_invalid_and_round_trips_as_question_marks() {
        let maze = grid("S \n G\n");
        let step = StepTokens::from_row_major(1, "S?oG", 0.5);
        assert_eq!(step.tokens, vec![3, 0, 5, 4]);
        assert_eq!(step.to_row_major(), "S?oG");
        let s = score(&maze, &step.tokens).unwrap();
        assert_eq!((s.verdict, s.wrong_cells.clone()), (Verdict::Invalid, vec![1]));
        assert!(score(&maze, &[3, 2]).is_err());
    }

    #[test]
    fn judgements_carry_the_verdict_line_and_marks_or_the_reason() {
        let maze = grid("S \n G\n");
        let j = judge(&maze, &tokens("S?oG"));
        assert_eq!((j.verdict, j.wrong_cells.clone()), (Verdict::Invalid, vec![1]));
        assert!(j.line.starts_with("invalid: 1 wrong cells"), "{}", j.line);
        let j = judge(&maze, &[3, 2]);
        assert_eq!((j.verdict, j.wrong_cells.len()), (Verdict::Invalid, 0));
        assert_eq!(j.line, score(&maze, &[3, 2]).unwrap_err().to_string());
    }
}

//! Summary statistics of a maze set, to compare a generated set with the benchmark
//! (`docs/maze-hard.md` §2: walls mean 334.5 sd 24.1; path 109..153 moves, mean 113.8,
//! median 112, 16% at 109; every label follows the lex-min rule).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::maze::{self, Grid, MazeError};

/// Mean, population standard deviation, minimum, maximum and median of some numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Smallest value.
    pub min: u32,
    /// Largest value.
    pub max: u32,
    /// Arithmetic mean.
    pub mean: f64,
    /// Population standard deviation (divides by n).
    pub sd: f64,
    /// The middle value (the mean of the two middle values for an even count).
    pub median: f64,
}

impl Summary {
    /// `None` for no values.
    pub fn of(values: &[u32]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            f64::from(sorted[mid])
        } else {
            (f64::from(sorted[mid - 1]) + f64::from(sorted[mid])) / 2.0
        };
        Some(Summary { min: sorted[0], max: sorted[sorted.len() - 1], mean, sd: var.sqrt(), median })
    }
}

/// Statistics of a set of (puzzle, label) pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MazeStats {
    /// Number of pairs.
    pub count: usize,
    /// Walls per puzzle.
    pub walls: Option<Summary>,
    /// Moves of the shortest S-to-G path of each solvable puzzle (computed by BFS, not read
    /// from the label, so a wrong label cannot skew it).
    pub moves: Option<Summary>,
    /// Share of solvable puzzles whose shortest path has exactly `moves.min` moves.
    pub share_at_min_moves: f64,
    /// Puzzles that are malformed (not exactly one S and one G, or path cells) or unsolvable.
    pub invalid: usize,
    /// Share of all pairs whose label equals [`maze::label`] of the puzzle.
    pub share_label_rule: f64,
}

impl MazeStats {
    /// Computes the statistics of (puzzle, label) pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a Grid, &'a Grid)>) -> MazeStats {
        let mut walls = Vec::new();
        let mut moves = Vec::new();
        let mut invalid = 0;
        let mut rule = 0usize;
        let mut count = 0;
        for (puzzle, label) in pairs {
            count += 1;
            walls.push(puzzle.wall_count() as u32);
            match maze::label(puzzle) {
                Ok(expected) => {
                    moves.push(expected.cells().iter().filter(|&&c| c == maze::Cell::Path).count() as u32 + 1);
                    if &expected == label {
                        rule += 1;
                    }
                }
                Err(_) => invalid += 1,
            }
        }
        let moves_summary = Summary::of(&moves);
        let at_min = moves_summary.map_or(0, |s| moves.iter().filter(|&&m| m == s.min).count());
        MazeStats {
            count,
            walls: Summary::of(&walls),
            moves: moves_summary,
            share_at_min_moves: share(at_min, moves.len()),
            invalid,
            share_label_rule: share(rule, count),
        }
    }

    /// Computes the statistics of row-major token arrays (reference ids 1..=5), `rows * cols`
    /// tokens per maze, as stored in `all__inputs.npy` / `all__labels.npy`.
    pub fn from_tokens(rows: usize, cols: usize, inputs: &[u8], labels: &[u8]) -> Result<MazeStats, MazeError> {
        let len = rows * cols;
        if len == 0 {
            return Err(MazeError::Empty);
        }
        if inputs.len() != labels.len() || inputs.len() % len != 0 {
            return Err(MazeError::WrongLength { expected: inputs.len().div_ceil(len) * len, found: labels.len() });
        }
        let grids = inputs
            .chunks(len)
            .zip(labels.chunks(len))
            .map(|(i, l)| Ok((Grid::from_tokens(rows, cols, i)?, Grid::from_tokens(rows, cols, l)?)))
            .collect::<Result<Vec<_>, MazeError>>()?;
        Ok(MazeStats::from_pairs(grids.iter().map(|(p, l)| (p, l))))
    }
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

impl fmt::Display for MazeStats {
    /// A small table, one statistic per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mazes            {}", self.count)?;
        match &self.walls {
            Some(w) => writeln!(f, "walls            mean {:.1}  sd {:.1}  min {}  max {}", w.mean, w.sd, w.min, w.max)?,
            None => writeln!(f, "walls            -")?,
        }
        match &self.moves {
            Some(m) => {
                writeln!(
                    f,
                    "path moves       min {}  mean {:.1}  median {}  max {}",
                    m.min, m.mean, m.median, m.max
                )?;
                writeln!(f, "at minimum       {:.1}% ({} moves)", 100.0 * self.share_at_min_moves, m.min)?;
            }
            None => writeln!(f, "path moves       -")?,
        }
        writeln!(f, "invalid/unsolved {}", self.invalid)?;
        write!(f, "label rule       {:.1}% follow lex-min down/left/right/up", 100.0 * self.share_label_rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_numbers() {
        let s = Summary::of(&[4, 1, 3, 2]).unwrap();
        assert_eq!((s.min, s.max), (1, 4));
        assert_eq!(s.mean, 2.5);
        assert_eq!(s.median, 2.5);
        assert!((s.sd - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(Summary::of(&[7, 1, 5]).unwrap().median, 5.0);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn stats_of_small_set() {
        let g = |s: &str| Grid::parse_lines(s).unwrap();
        let a = g("S# \n#  \n  G\n"); // S walled in: unsolvable
        let b = g("S  \n   \n  G\n");
        let b_label = maze::label(&b).unwrap();
        let b_wrong = g("Soo\n  o\n  G\n");
        let c = g("SG \n   \n   \n");
        let pairs = vec![(b.clone(), b_label.clone()), (b.clone(), b_wrong), (c.clone(), c.clone()), (a.clone(), a)];
        let stats = MazeStats::from_pairs(pairs.iter().map(|(p, l)| (p, l)));
        assert_eq!(stats.count, 4);
        let w = stats.walls.unwrap();
        assert_eq!((w.min, w.max), (0, 2));
        let m = stats.moves.unwrap();
        // b: 4 moves (twice), c: 1 move; the maze `a` has S walled in, so it is invalid.
        assert_eq!((m.min, m.max, m.median), (1, 4, 4.0));
        assert_eq!(stats.invalid, 1);
        assert!((stats.share_at_min_moves - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(stats.share_label_rule, 0.5);
        let text = stats.to_string();
        assert!(text.contains("mazes            4") && text.contains("50.0% follow"), "{text}");

        let tokens: Vec<u8> = b.tokens();
        let labels: Vec<u8> = b_label.tokens();
        let from_tokens = MazeStats::from_tokens(3, 3, &tokens, &labels).unwrap();
        assert_eq!(from_tokens.share_label_rule, 1.0);
        assert!(MazeStats::from_tokens(3, 3, &tokens[..8], &labels[..8]).is_err());
    }
}

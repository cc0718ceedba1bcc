//! The benchmark's label rule as a local process in time, one synchronous update of every
//! cell per tick (`docs/size-extrapolation.md`):
//!
//! 1. **The wave.** At tick 0 only G is reached; at tick `t` the open cells `t` moves from G
//!    are. When a cell is reached, the neighbours reached just before it are exactly the
//!    neighbours one move closer to G; the first of them in the order down, left, right,
//!    up is the cell's *choice*.
//! 2. **The trace.** S joins the answer the tick the wave reaches it; every later tick, the
//!    cell its choice points at joins too, until G does, at tick `2·dist(S, G)`.
//!
//! Each update looks only at a cell and its four neighbours, so a network that learns it runs
//! any size given enough updates. The states after each tick are the size-general model's
//! auxiliary training targets ([`Wave::state_at`]); the traced path equals
//! [`super::shortest_path`] (a test checks it).

use std::collections::VecDeque;

use super::path::UNREACHABLE;
use super::{Cell, Grid, MazeError};

/// Directions in the label's priority; `NONE` means no choice (not reached yet, G, walls).
pub mod dir {
    /// No direction.
    pub const NONE: u8 = 0;
    /// One row down (+cols).
    pub const DOWN: u8 = 1;
    /// One column left (-1).
    pub const LEFT: u8 = 2;
    /// One column right (+1).
    pub const RIGHT: u8 = 3;
    /// One row up (-cols).
    pub const UP: u8 = 4;
    /// Classes of a choice, `NONE` included.
    pub const COUNT: usize = 5;
}

/// The whole process for one maze, as the tick at which each cell changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    rows: usize,
    cols: usize,
    tokens: Vec<u8>,
    /// Moves from G (the tick the wave reaches the cell); [`UNREACHABLE`] for walls and cells
    /// cut off from G.
    pub dist: Vec<u32>,
    /// The cell's choice ([`dir`]) once reached.
    pub choice: Vec<u8>,
    /// Tick at which the trace reaches the cell (S first, at `dist(S)`); `u32::MAX` off the path.
    pub traced: Vec<u32>,
    /// Tick at which the answer is complete (G traced): `2·dist(S)`; `None` when S and G
    /// are not connected (the answer is then the maze itself, from tick 0).
    pub done_at: Option<u32>,
}

/// The neighbour of `i` that `choice` ([`dir`]) points at; `None` for [`dir::NONE`] or off the grid.
pub fn pointed(i: usize, choice: u8, rows: usize, cols: usize) -> Option<usize> {
    let k = usize::from(choice).checked_sub(1)?;
    neighbours(i, rows, cols).get(k)?.1
}

/// The four neighbours of `i` in the label's priority, with their direction code.
fn neighbours(i: usize, rows: usize, cols: usize) -> [(u8, Option<usize>); 4] {
    let (r, c) = (i / cols, i % cols);
    [
        (dir::DOWN, (r + 1 < rows).then(|| i + cols)),
        (dir::LEFT, (c > 0).then(|| i - 1)),
        (dir::RIGHT, (c + 1 < cols).then(|| i + 1)),
        (dir::UP, (r > 0).then(|| i - cols)),
    ]
}

impl Wave {
    /// Runs the process on a puzzle (one S, one G, no path cells).
    pub fn new(maze: &Grid) -> Result<Wave, MazeError> {
        let (start, goal) = maze.validate_puzzle()?;
        let (rows, cols, n) = (maze.rows(), maze.cols(), maze.len());
        let mut dist = vec![UNREACHABLE; n];
        let mut queue = VecDeque::with_capacity(n);
        dist[goal] = 0;
        queue.push_back(goal);
        while let Some(i) = queue.pop_front() {
            for (_, nb) in neighbours(i, rows, cols) {
                if let Some(nb) = nb
                    && dist[nb] == UNREACHABLE
                    && maze.at(nb).is_passable()
                {
                    dist[nb] = dist[i] + 1;
                    queue.push_back(nb);
                }
            }
        }
        let choice: Vec<u8> = (0..n)
            .map(|i| {
                if dist[i] == UNREACHABLE || dist[i] == 0 {
                    return dir::NONE;
                }
                neighbours(i, rows, cols)
                    .into_iter()
                    .find(|(_, nb)| nb.is_some_and(|nb| dist[nb] != UNREACHABLE && dist[nb] + 1 == dist[i]))
                    .map_or(dir::NONE, |(d, _)| d)
            })
            .collect();
        let mut traced = vec![u32::MAX; n];
        let mut done_at = None;
        if dist[start] != UNREACHABLE {
            let mut at = start;
            let mut tick = dist[start];
            loop {
                traced[at] = tick;
                if at == goal {
                    done_at = Some(tick);
                    break;
                }
                let d = choice[at];
                at = pointed(at, d, rows, cols).expect("a choice points inside the grid");
                tick += 1;
            }
        }
        Ok(Wave { rows, cols, tokens: maze.tokens(), dist, choice, traced, done_at })
    }

    /// Rows of the maze.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the maze.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The state of cell `i` after `tick` updates: (reached, choice, answer token).
    pub fn state_at(&self, i: usize, tick: u32) -> (bool, u8, u8) {
        let reached = self.dist[i] <= tick;
        let choice = if reached { self.choice[i] } else { dir::NONE };
        let token = self.tokens[i];
        let on_path = self.traced[i] <= tick && token == Cell::Open.token();
        (reached, choice, if on_path { Cell::Path.token() } else { token })
    }

    /// The answer after `tick` updates, as tokens (the label once `tick >= done_at`).
    pub fn answer_at(&self, tick: u32) -> Vec<u8> {
        (0..self.tokens.len()).map(|i| self.state_at(i, tick).2).collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::maze::{label, shortest_path};

    fn random_maze(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Grid {
        let mut g = Grid::open(rows, cols);
        let p = rng.random_range(0.2..0.5);
        for i in 0..rows * cols {
            if rng.random_bool(p) {
                g.set(i, Cell::Wall);
            }
        }
        let s = rng.random_range(0..rows * cols);
        let mut t = rng.random_range(0..rows * cols);
        while t == s {
            t = rng.random_range(0..rows * cols);
        }
        g.set(s, Cell::Start);
        g.set(t, Cell::Goal);
        g
    }

    #[test]
    fn the_traced_answer_is_the_benchmark_label() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut solved = 0;
        for k in 0..3000 {
            let (rows, cols) = (rng.random_range(1..20), rng.random_range(2..20));
            let maze = random_maze(&mut rng, rows, cols);
            let wave = Wave::new(&maze).unwrap();
            match shortest_path(&maze).unwrap() {
                Some(sol) => {
                    solved += 1;
                    let d = wave.dist[sol.cells[0]];
                    assert_eq!(d as usize, sol.moves(), "maze {k}");
                    assert_eq!(wave.done_at, Some(2 * d), "maze {k}");
                    assert_eq!(wave.answer_at(2 * d), label(&maze).unwrap().tokens(), "maze {k}");
                    // One tick earlier the answer still lacks its last path cell (or is the maze).
                    if d > 1 {
                        assert_ne!(wave.answer_at(2 * d - 2), label(&maze).unwrap().tokens(), "maze {k}");
                    }
                }
                None => {
                    assert_eq!(wave.done_at, None);
                    assert_eq!(wave.answer_at(1000), maze.tokens());
                }
            }
        }
        assert!(solved > 1000, "{solved}");
    }

    #[test]
    fn every_update_is_local() {
        // A cell's state at tick t+1 is a function of its own and its neighbours' at tick t
        // and the maze: check that equal local pictures never lead to different next states.
        use std::collections::HashMap;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut rule: HashMap<Vec<(u8, bool, u8, u8)>, (bool, u8, u8)> = HashMap::new();
        for _ in 0..300 {
            let maze = random_maze(&mut rng, 9, 11);
            let wave = Wave::new(&maze).unwrap();
            let Some(done) = wave.done_at else { continue };
            let tokens = maze.tokens();
            for t in 0..done + 2 {
                for i in 0..maze.len() {
                    let picture = |j: usize| {
                        let (r, c, a) = wave.state_at(j, t);
                        (tokens[j], r, c, a)
                    };
                    let mut key = vec![picture(i)];
                    for (_, nb) in neighbours(i, 9, 11) {
                        key.push(nb.map_or((0, false, 0, 0), picture));
                    }
                    let next = wave.state_at(i, t + 1);
                    assert_eq!(*rule.entry(key).or_insert(next), next);
                }
            }
        }
    }
}

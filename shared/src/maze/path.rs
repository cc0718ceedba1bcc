//! Shortest paths with the benchmark's tie-break, and the checker for predicted answers.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Cell, Grid, MazeError};

/// Distance value of a cell BFS never reached.
pub const UNREACHABLE: u32 = u32::MAX;

/// Neighbours of `index` in the benchmark's move priority: down, left, right, up
/// (row-major deltas +cols, -1, +1, -cols). The order is what makes the label rule.
fn neighbours(index: usize, rows: usize, cols: usize) -> impl Iterator<Item = usize> {
    let (r, c) = (index / cols, index % cols);
    [
        (r + 1 < rows).then(|| index + cols),
        (c > 0).then(|| index - 1),
        (c + 1 < cols).then(|| index + 1),
        (r > 0).then(|| index - cols),
    ]
    .into_iter()
    .flatten()
}

/// A shortest path from start to goal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Solution {
    /// Row-major cell indices from the start to the goal, both included.
    pub cells: Vec<usize>,
}

impl Solution {
    /// Number of moves (cells minus one).
    pub fn moves(&self) -> usize {
        self.cells.len() - 1
    }
}

/// BFS distances (in moves) from `start` over passable cells; [`UNREACHABLE`] elsewhere.
pub fn distances_from(grid: &Grid, start: usize) -> Vec<u32> {
    let mut dist = vec![UNREACHABLE; grid.len()];
    let mut queue = VecDeque::with_capacity(grid.len());
    dist[start] = 0;
    queue.push_back(start);
    while let Some(i) = queue.pop_front() {
        for n in neighbours(i, grid.rows(), grid.cols()) {
            if dist[n] == UNREACHABLE && grid.at(n).is_passable() {
                dist[n] = dist[i] + 1;
                queue.push_back(n);
            }
        }
    }
    dist
}

/// The benchmark's shortest path: among all shortest S-to-G move sequences, the
/// lexicographically smallest with priority down < left < right < up.
///
/// Built as BFS from S that enqueues neighbours in that order and keeps the first
/// parent found, then follows parents back from G; `maze-hard.md` shows both
/// constructions agree. Returns `Ok(None)` when G cannot be reached.
pub fn shortest_path(maze: &Grid) -> Result<Option<Solution>, MazeError> {
    let (start, goal) = maze.endpoints()?;
    let mut parent = vec![usize::MAX; maze.len()];
    let mut queue = VecDeque::with_capacity(maze.len());
    parent[start] = start;
    queue.push_back(start);
    'search: while let Some(i) = queue.pop_front() {
        for n in neighbours(i, maze.rows(), maze.cols()) {
            if parent[n] == usize::MAX && maze.at(n).is_passable() {
                parent[n] = i;
                if n == goal {
                    break 'search;
                }
                queue.push_back(n);
            }
        }
    }
    if parent[goal] == usize::MAX {
        return Ok(None);
    }
    let mut cells = vec![goal];
    while *cells.last().expect("path starts non-empty") != start {
        let last = *cells.last().expect("path starts non-empty");
        cells.push(parent[last]);
    }
    cells.reverse();
    Ok(Some(Solution { cells }))
}

/// The benchmark's label for a puzzle: the puzzle with the inner cells of its
/// [`shortest_path`] marked `o`.
pub fn label(maze: &Grid) -> Result<Grid, MazeError> {
    maze.validate_puzzle()?;
    let solution = shortest_path(maze)?.ok_or(MazeError::Unsolvable)?;
    let mut answer = maze.clone();
    for &i in &solution.cells[1..solution.cells.len() - 1] {
        answer.set(i, Cell::Path);
    }
    Ok(answer)
}

/// How a predicted answer compares with the maze and its label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerCheck {
    /// Every cell equals the benchmark's label (the reference's `exact_accuracy`).
    pub exact: bool,
    /// The answer keeps the maze's walls, S and G, marks only open cells, and its marked
    /// cells with S and G form one simple 4-connected path from S to G.
    pub valid: bool,
    /// Valid and as short as the BFS optimum (any optimal path counts).
    pub shortest: bool,
    /// Moves of the answer's path, when it is valid.
    pub path_moves: Option<usize>,
    /// Moves of a shortest path.
    pub optimal_moves: usize,
    /// Row-major indices where the answer differs from the label.
    pub wrong_cells: Vec<usize>,
}

/// Checks `answer` against `maze` (a puzzle). The label is computed from the maze.
pub fn check_answer(maze: &Grid, answer: &Grid) -> Result<AnswerCheck, MazeError> {
    if (answer.rows(), answer.cols()) != (maze.rows(), maze.cols()) {
        return Err(MazeError::ShapeMismatch {
            rows: maze.rows(),
            cols: maze.cols(),
            found_rows: answer.rows(),
            found_cols: answer.cols(),
        });
    }
    let expected = label(maze)?;
    let optimal_moves = expected.cells().iter().filter(|&&c| c == Cell::Path).count() + 1;
    let wrong_cells: Vec<usize> = (0..maze.len()).filter(|&i| answer.at(i) != expected.at(i)).collect();
    let path_moves = valid_path_moves(maze, answer);
    Ok(AnswerCheck {
        exact: wrong_cells.is_empty(),
        valid: path_moves.is_some(),
        shortest: path_moves == Some(optimal_moves),
        path_moves,
        optimal_moves,
        wrong_cells,
    })
}

/// Moves of the path an answer draws, or `None` when it does not draw exactly one simple
/// S-to-G path through the maze's open cells.
fn valid_path_moves(maze: &Grid, answer: &Grid) -> Option<usize> {
    let (start, goal) = maze.endpoints().ok()?;
    let keeps_maze =
        maze.cells().iter().zip(answer.cells()).all(|(&m, &a)| a == m || (m == Cell::Open && a == Cell::Path));
    if !keeps_maze {
        return None;
    }
    let on_path = |i: usize| matches!(answer.at(i), Cell::Path | Cell::Start | Cell::Goal);
    let marked = answer.cells().iter().filter(|&&c| c == Cell::Path).count();
    // Walk from S; every step must have exactly one way on. A path that touches itself
    // is ambiguous when drawn as cells, so it is not valid.
    let (rows, cols) = (answer.rows(), answer.cols());
    let mut previous = usize::MAX;
    let mut current = start;
    let mut visited = 1;
    while current != goal {
        let next: Vec<usize> = neighbours(current, rows, cols).filter(|&n| on_path(n) && n != previous).collect();
        if next.len() != 1 {
            return None;
        }
        previous = current;
        current = next[0];
        visited += 1;
        if visited > marked + 2 {
            return None;
        }
    }
    // The goal must end the path (no marked cell beyond it) and every marked cell must be on it.
    let goal_degree = neighbours(goal, rows, cols).filter(|&n| on_path(n)).count();
    (goal_degree == 1 && visited == marked + 2).then_some(visited - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(s: &str) -> Grid {
        Grid::parse_lines(s).unwrap()
    }

    #[test]
    fn prefers_down_left_right_up() {
        // Two shortest paths of 2 moves: down-right and right-down; down comes first.
        let maze = grid("S \n G\n");
        assert_eq!(label(&maze).unwrap(), grid("S \noG\n"));
        // Around the wall: left-down-down-right and right-down-down-left tie; left wins.
        let maze = grid(" S \n # \n G \n");
        assert_eq!(label(&maze).unwrap(), grid("oS \no# \noG \n"));
    }

    #[test]
    fn unsolvable_and_adjacent() {
        assert_eq!(label(&grid("S#G\n")), Err(MazeError::Unsolvable));
        assert_eq!(shortest_path(&grid("SG\n")).unwrap().unwrap().moves(), 1);
        assert_eq!(label(&grid("SG\n")).unwrap(), grid("SG\n"));
    }

    #[test]
    fn checker_grades_answers() {
        let maze = grid("S  \n   \n  G\n");
        let exact = label(&maze).unwrap();
        let c = check_answer(&maze, &exact).unwrap();
        assert!(c.exact && c.valid && c.shortest);
        assert_eq!((c.path_moves, c.optimal_moves), (Some(4), 4));

        // Another optimal path: valid and shortest, not exact.
        let other = grid("Soo\n  o\n  G\n");
        let c = check_answer(&maze, &other).unwrap();
        assert!(!c.exact && c.valid && c.shortest);
        assert_eq!(c.wrong_cells, vec![1, 2, 3, 5, 6, 7]);

        // A longer detour is valid but not shortest.
        let maze = grid("S G\n   \n   \n");
        let longer = grid("S G\nooo\n   \n");
        let c = check_answer(&maze, &longer).unwrap();
        assert!(c.valid && !c.shortest);
        assert_eq!((c.path_moves, c.optimal_moves), (Some(4), 2));
        let maze = grid("S   \n    \n   G\n");
        let longer = grid("Soo \n  oo\n  oG\n");
        let c = check_answer(&maze, &longer).unwrap();
        assert_eq!(c.path_moves, None, "a path that touches itself is ambiguous");

        // Broken, branched, wall-crossing and extra cells are invalid.
        for bad in ["S  \n o \n  G\n", "So \noo \n  G\n", "Soo\n  o\no G\n", "S  \n   \n  #\n"] {
            let c = check_answer(&grid("S  \n   \n  G\n"), &grid(bad)).unwrap();
            assert!(!c.valid && !c.shortest && !c.exact, "{bad:?}");
        }
        let c = check_answer(&grid("S# \n   \n  G\n"), &grid("So \n o \n  G\n")).unwrap();
        assert!(!c.valid);
    }

    #[test]
    fn checker_rejects_shape_mismatch() {
        let e = check_answer(&grid("SG\n"), &grid("S\nG\n"));
        assert!(matches!(e, Err(MazeError::ShapeMismatch { .. })));
    }

    /// Brute force independent of BFS: iterative deepening over self-avoiding walks, trying
    /// moves in the priority order, so the first walk to reach G is the lex-min shortest one.
    fn brute_force(maze: &Grid) -> Option<Vec<usize>> {
        let (start, goal) = maze.endpoints().unwrap();
        fn walk(maze: &Grid, path: &mut Vec<usize>, goal: usize, depth: usize) -> bool {
            let here = *path.last().unwrap();
            if here == goal {
                return true;
            }
            if depth == 0 {
                return false;
            }
            let (r, c, rows, cols) = (here / maze.cols(), here % maze.cols(), maze.rows(), maze.cols());
            let moves = [(1i64, 0i64), (0, -1), (0, 1), (-1, 0)]; // down, left, right, up
            for (dr, dc) in moves {
                let (nr, nc) = (r as i64 + dr, c as i64 + dc);
                if nr < 0 || nc < 0 || nr >= rows as i64 || nc >= cols as i64 {
                    continue;
                }
                let next = nr as usize * cols + nc as usize;
                if maze.at(next) == Cell::Wall || path.contains(&next) {
                    continue;
                }
                path.push(next);
                if walk(maze, path, goal, depth - 1) {
                    return true;
                }
                path.pop();
            }
            false
        }
        (1..maze.len()).find_map(|depth| {
            let mut path = vec![start];
            walk(maze, &mut path, goal, depth).then_some(path)
        })
    }

    #[test]
    fn brute_force_sees_the_tie_break() {
        let maze = grid(" S \n # \n G \n");
        assert_eq!(brute_force(&maze), Some(vec![1, 0, 3, 6, 7]));
        assert_eq!(shortest_path(&maze).unwrap().unwrap().cells, vec![1, 0, 3, 6, 7]);
    }

    fn small_maze() -> impl proptest::strategy::Strategy<Value = Grid> {
        use proptest::prelude::*;
        (2usize..=5, 2usize..=5)
            .prop_flat_map(|(rows, cols)| {
                let n = rows * cols;
                (Just(rows), Just(cols), proptest::collection::vec(prop::bool::weighted(0.3), n), 0..n, 0..n)
            })
            .prop_filter("distinct endpoints", |(_, _, _, s, g)| s != g)
            .prop_map(|(rows, cols, walls, s, g)| {
                let mut cells: Vec<Cell> = walls.iter().map(|&w| if w { Cell::Wall } else { Cell::Open }).collect();
                cells[s] = Cell::Start;
                cells[g] = Cell::Goal;
                Grid::from_cells(rows, cols, cells).unwrap()
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

        #[test]
        fn bfs_tie_break_equals_brute_force(maze in small_maze()) {
            let bfs = shortest_path(&maze).unwrap().map(|s| s.cells);
            proptest::prop_assert_eq!(bfs, brute_force(&maze), "{:?}", maze);
        }

        #[test]
        fn labels_check_as_exact_and_transforms_keep_lengths(maze in small_maze()) {
            if let Ok(answer) = label(&maze) {
                let check = check_answer(&maze, &answer).unwrap();
                proptest::prop_assert!(check.exact && check.valid && check.shortest);
                for t in 0..8 {
                    // Path lengths are invariant under the dihedral group, tie-breaks are not.
                    let (m, a) = (super::super::dihedral_transform(&maze, t), super::super::dihedral_transform(&answer, t));
                    let c = check_answer(&m, &a).unwrap();
                    proptest::prop_assert!(c.valid && c.shortest, "transform {}", t);
                }
            }
        }
    }
}


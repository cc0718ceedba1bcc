//! Mazes of another size than the model's: the model's frame placed over the maze.
//!
//! A model takes one grid size (its `seq_len`). A maze drawn on a bigger canvas whose open
//! cells all fit inside a model-sized window, walls everywhere else, is the same puzzle as
//! that window: walls outside cannot be crossed, so the shortest paths, the label rule's
//! tie-break (translation invariant) and the checker all agree. A smaller maze is the same
//! puzzle as itself padded with walls. So a 7x7 model solves a small maze drawn anywhere on
//! a 30x30 canvas, at the cost of a 7x7 forward pass, and its answer is pasted back.

use super::{Cell, Grid};

/// Where a model-sized frame sits over a maze: its top-left corner in maze coordinates
/// (negative when the maze is smaller than the frame) and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Maze row of the frame's first row.
    pub top: isize,
    /// Maze column of the frame's first column.
    pub left: isize,
    /// Frame rows (the model's).
    pub rows: usize,
    /// Frame columns (the model's).
    pub cols: usize,
}

/// Why a maze cannot be placed in a model's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("its open cells span {span_rows}x{span_cols}, more than the model's {rows}x{cols}")]
pub struct WindowError {
    /// Rows from the first to the last row holding an open cell, start or goal.
    pub span_rows: usize,
    /// Columns likewise.
    pub span_cols: usize,
    /// The frame's rows.
    pub rows: usize,
    /// The frame's columns.
    pub cols: usize,
}

/// The grid a model sees mazes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Mazes of this size (rows, cols), or mazes whose open cells fit in it (the reference model).
    Size(usize, usize),
    /// Every maze on its own grid (the size-general model).
    AnySize,
}

impl Window {
    /// Where `maze` goes in a model's `frame`: the maze itself for a size-general model,
    /// else the frame around its open cells ([`Window::around_open_cells`]). The server and
    /// the app both place mazes through this.
    pub fn place(maze: &Grid, frame: Frame) -> Result<Window, WindowError> {
        match frame {
            Frame::AnySize => Ok(Window::whole(maze)),
            Frame::Size(rows, cols) => Window::around_open_cells(maze, rows, cols),
        }
    }

    /// The whole maze as its own frame.
    pub fn whole(maze: &Grid) -> Window {
        Window { top: 0, left: 0, rows: maze.rows(), cols: maze.cols() }
    }

    /// What the model sees of `maze`: the maze itself, or its crop.
    pub fn view(&self, maze: &Grid) -> Grid {
        if self.is_identity(maze) { maze.clone() } else { self.crop(maze) }
    }

    /// The `rows`x`cols` frame over `maze` that holds every non-wall cell, as near the
    /// maze's top-left as it can be. A maze of exactly the frame's size gets the identity.
    pub fn around_open_cells(maze: &Grid, rows: usize, cols: usize) -> Result<Window, WindowError> {
        let open = (0..maze.len()).filter(|&i| maze.at(i) != Cell::Wall).map(|i| (i / maze.cols(), i % maze.cols()));
        let (mut r0, mut c0, mut r1, mut c1) = (usize::MAX, usize::MAX, 0, 0);
        for (r, c) in open {
            (r0, c0, r1, c1) = (r0.min(r), c0.min(c), r1.max(r), c1.max(c));
        }
        if r0 == usize::MAX {
            // All walls: any frame is as good; the puzzle check rejects the maze anyway.
            (r0, c0) = (0, 0);
        }
        let (span_rows, span_cols) = ((r1 + 1).saturating_sub(r0), (c1 + 1).saturating_sub(c0));
        if span_rows > rows || span_cols > cols {
            return Err(WindowError { span_rows, span_cols, rows, cols });
        }
        Ok(Window { top: corner(r0, maze.rows(), rows), left: corner(c0, maze.cols(), cols), rows, cols })
    }

    /// Whether the frame is the maze itself (nothing to crop or paste).
    pub fn is_identity(&self, maze: &Grid) -> bool {
        (self.top, self.left, self.rows, self.cols) == (0, 0, maze.rows(), maze.cols())
    }

    /// The frame's part of `maze`, walls where the frame lies outside it.
    pub fn crop(&self, maze: &Grid) -> Grid {
        let cells = (0..self.rows * self.cols).map(|i| self.maze_index(maze, i).map_or(Cell::Wall, |m| maze.at(m))).collect();
        Grid::from_cells(self.rows, self.cols, cells).expect("the frame's cell count is rows x cols")
    }

    /// Tokens of an answer for the whole maze: `maze`'s own tokens outside the frame, the
    /// model's `answer` tokens (the frame's, row-major) inside it.
    pub fn paste(&self, maze: &Grid, answer: &[u8]) -> Vec<u8> {
        let mut tokens = maze.tokens();
        for (i, &t) in answer.iter().enumerate().take(self.rows * self.cols) {
            if let Some(m) = self.maze_index(maze, i) {
                tokens[m] = t;
            }
        }
        tokens
    }

    /// The maze cell under frame cell `i`, if the frame covers the maze there.
    fn maze_index(&self, maze: &Grid, i: usize) -> Option<usize> {
        let r = self.top + (i / self.cols) as isize;
        let c = self.left + (i % self.cols) as isize;
        let inside = (0..maze.rows() as isize).contains(&r) && (0..maze.cols() as isize).contains(&c);
        inside.then(|| r as usize * maze.cols() + c as usize)
    }
}

/// The frame's first row (or column) for open cells starting at `first`: at `first`, moved
/// back so the frame stays on the maze when the maze is at least as big as the frame, and
/// centred when the maze is smaller.
fn corner(first: usize, maze: usize, frame: usize) -> isize {
    if maze >= frame { first.min(maze - frame) as isize } else { -(((frame - maze) / 2) as isize) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maze::{check_answer, label};

    /// A 7x7 puzzle drawn at row 10, column 20 of a 30x30 canvas of walls.
    fn canvas_with(small: &Grid, top: usize, left: usize) -> Grid {
        let mut cells = vec![Cell::Wall; 900];
        for i in 0..small.len() {
            cells[(top + i / small.cols()) * 30 + left + i % small.cols()] = small.at(i);
        }
        Grid::from_cells(30, 30, cells).unwrap()
    }

    fn small() -> Grid {
        Grid::parse_lines("S  #   \n## # # \n   # # \n # ### \n #     \n ######\n     G#\n").unwrap()
    }

    #[test]
    fn a_small_maze_on_a_canvas_is_cropped_to_the_same_puzzle_and_pasted_back() {
        let maze = small();
        let canvas = canvas_with(&maze, 10, 20);
        let window = Window::around_open_cells(&canvas, 7, 7).unwrap();
        assert_eq!((window.top, window.left), (10, 20));
        assert!(!window.is_identity(&canvas));
        assert_eq!(window.crop(&canvas), maze);
        // The cropped label, pasted back, is the canvas's own label: same puzzle.
        let answer = window.paste(&canvas, &label(&maze).unwrap().tokens());
        let canvas_label = label(&canvas).unwrap();
        assert_eq!(answer, canvas_label.tokens());
        let check = check_answer(&canvas, &Grid::from_tokens(30, 30, &answer).unwrap()).unwrap();
        assert!(check.exact && check.shortest);
    }

    #[test]
    fn the_frame_stays_on_the_canvas_near_its_edge() {
        // Open cells in the last 5 rows and columns: the 7x7 frame ends at the canvas edge.
        let maze = Grid::parse_lines("S   \n    \n   G\n").unwrap();
        let canvas = canvas_with(&maze, 27, 26);
        let window = Window::around_open_cells(&canvas, 7, 7).unwrap();
        assert_eq!((window.top, window.left), (23, 23));
        assert_eq!(label(&window.crop(&canvas)).unwrap().tokens().len(), 49);
        assert_eq!(window.paste(&canvas, &window.crop(&canvas).tokens()), canvas.tokens());
    }

    #[test]
    fn a_smaller_maze_is_padded_with_walls() {
        let maze = Grid::parse_lines("S #\n  G\n").unwrap();
        let window = Window::around_open_cells(&maze, 7, 7).unwrap();
        assert_eq!((window.top, window.left), (-2, -2));
        let framed = window.crop(&maze);
        assert_eq!(framed.rows(), 7);
        assert_eq!(framed.wall_count(), 49 - 5);
        let pasted = window.paste(&maze, &label(&framed).unwrap().tokens());
        assert_eq!(pasted, label(&maze).unwrap().tokens());
    }

    #[test]
    fn a_same_size_maze_is_the_identity() {
        let maze = small();
        let window = Window::around_open_cells(&maze, 7, 7).unwrap();
        assert!(window.is_identity(&maze));
        assert_eq!(window.crop(&maze), maze);
    }

    #[test]
    fn a_size_general_model_sees_the_maze_itself_and_a_fixed_one_its_frame() {
        let maze = Grid::parse_lines("S #\n  G\n").unwrap();
        let whole = Window::place(&maze, Frame::AnySize).unwrap();
        assert!(whole.is_identity(&maze));
        assert_eq!(whole.view(&maze), maze);
        assert_eq!(whole.paste(&maze, &label(&maze).unwrap().tokens()), label(&maze).unwrap().tokens());
        let framed = Window::place(&maze, Frame::Size(7, 7)).unwrap();
        assert_eq!(framed, Window::around_open_cells(&maze, 7, 7).unwrap());
        assert_eq!(framed.view(&maze), framed.crop(&maze));
        assert!(Window::place(&Grid::parse_lines("S         G\n").unwrap(), Frame::Size(7, 7)).is_err());
    }

    #[test]
    fn open_cells_wider_than_the_frame_are_refused_with_their_span() {
        let maze = Grid::parse_lines("S         G\n").unwrap();
        let err = Window::around_open_cells(&maze, 7, 7).unwrap_err();
        assert_eq!((err.span_rows, err.span_cols), (1, 11));
        assert_eq!(err.to_string(), "its open cells span 1x11, more than the model's 7x7");
    }
}

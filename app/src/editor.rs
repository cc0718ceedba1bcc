//! The maze being edited: drawing tools, strokes (click or drag), undo and redo.
//!
//! Plain Rust over [`Grid`] so that `cargo test` checks it on the host; the page only maps
//! pointer and key events onto these calls.

use trm_shared::maze::{Cell, Grid, MazeError};

/// How many edits undo remembers; older ones are dropped.
pub const UNDO_DEPTH: usize = 200;
/// Largest side the editor accepts: the generator's and the server's limit.
pub const MAX_SIDE: usize = 64;
/// Smallest side: a start, a goal and something between them.
pub const MIN_SIDE: usize = 2;

/// What a click or a drag does to the cells it touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Draw walls (a stroke that starts on a wall erases instead, like a toggle).
    Wall,
    /// Make cells open.
    Erase,
    /// Move the start here.
    Start,
    /// Move the goal here.
    Goal,
}

impl Tool {
    /// All tools, in toolbar order.
    pub const ALL: [Tool; 4] = [Tool::Wall, Tool::Erase, Tool::Start, Tool::Goal];

    /// Toolbar label.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Wall => "Wall",
            Tool::Erase => "Erase",
            Tool::Start => "Start",
            Tool::Goal => "Goal",
        }
    }
}

/// A maze with its edit history.
#[derive(Clone, Debug, PartialEq)]
pub struct Editor {
    grid: Grid,
    undo: Vec<Grid>,
    redo: Vec<Grid>,
    /// The tool of the stroke in progress (after the wall/erase toggle), if any.
    stroke: Option<Tool>,
    /// Whether the stroke in progress changed a cell (else its snapshot is dropped).
    stroke_changed: bool,
}

/// An empty `rows` x `cols` maze: all open, start top-left, goal bottom-right.
pub fn blank(rows: usize, cols: usize) -> Result<Grid, String> {
    check_size(rows, cols)?;
    let mut grid = Grid::open(rows, cols);
    grid.set(0, Cell::Start);
    grid.set(rows * cols - 1, Cell::Goal);
    Ok(grid)
}

/// Refuses sides the editor cannot hold, with the accepted range.
pub fn check_size(rows: usize, cols: usize) -> Result<(), String> {
    let ok = |s: usize| (MIN_SIDE..=MAX_SIDE).contains(&s);
    if ok(rows) && ok(cols) {
        Ok(())
    } else {
        Err(format!("a maze must be {MIN_SIDE}..={MAX_SIDE} cells on each side, got {rows}x{cols}"))
    }
}

impl Editor {
    /// An editor holding `grid`, with no history.
    pub fn new(grid: Grid) -> Editor {
        Editor { grid, undo: Vec::new(), redo: Vec::new(), stroke: None, stroke_changed: false }
    }

    /// The maze as it is now.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Whether there is an edit to undo.
    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Whether there is an undone edit to redo.
    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    fn remember(&mut self) {
        self.undo.push(self.grid.clone());
        if self.undo.len() > UNDO_DEPTH {
            self.undo.remove(0);
        }
        self.redo.clear();
    }

    /// Starts a stroke on cell `index` with `tool`; the whole stroke is one undo step.
    /// Out-of-range cells are ignored.
    pub fn begin_stroke(&mut self, tool: Tool, index: usize) {
        if index >= self.grid.len() {
            return;
        }
        // Wall on a wall erases for the rest of the stroke: one tool draws and undraws.
        let tool = if tool == Tool::Wall && self.grid.at(index) == Cell::Wall { Tool::Erase } else { tool };
        self.remember();
        self.stroke = Some(tool);
        self.stroke_changed = false;
        self.stroke_to(index);
    }

    /// Extends the stroke in progress to cell `index` (a drag); no-op without a stroke.
    pub fn stroke_to(&mut self, index: usize) {
        let Some(tool) = self.stroke else { return };
        if index >= self.grid.len() {
            return;
        }
        if self.paint(tool, index) {
            self.stroke_changed = true;
        }
    }

    /// Ends the stroke; a stroke that changed nothing leaves no undo step.
    pub fn end_stroke(&mut self) {
        if self.stroke.take().is_some() && !self.stroke_changed {
            self.undo.pop();
        }
    }

    /// Applies `tool` to one cell; returns whether it changed anything.
    fn paint(&mut self, tool: Tool, index: usize) -> bool {
        let before = self.grid.at(index);
        let after = match tool {
            // Walls and erasing leave S and G alone: they move only with their own tools.
            Tool::Wall | Tool::Erase if matches!(before, Cell::Start | Cell::Goal) => return false,
            Tool::Wall => Cell::Wall,
            Tool::Erase => Cell::Open,
            Tool::Start => Cell::Start,
            Tool::Goal => Cell::Goal,
        };
        if before == after {
            return false;
        }
        if matches!(after, Cell::Start | Cell::Goal) {
            // One start and one goal: the old one becomes open.
            for i in 0..self.grid.len() {
                if self.grid.at(i) == after {
                    self.grid.set(i, Cell::Open);
                }
            }
        }
        self.grid.set(index, after);
        true
    }

    /// Replaces the whole maze (load, generate, import, resize, clear) as one undo step.
    /// Path cells (`o`) of an imported answer become open: the editor holds puzzles.
    pub fn replace(&mut self, grid: Grid) {
        let grid = grid.without_path();
        if grid == self.grid {
            return;
        }
        self.remember();
        self.grid = grid;
    }

    /// Removes every wall, keeping start and goal where they are.
    pub fn clear(&mut self) {
        let mut grid = self.grid.clone();
        for i in 0..grid.len() {
            if grid.at(i) == Cell::Wall {
                grid.set(i, Cell::Open);
            }
        }
        self.replace(grid);
    }

    /// A blank maze of another size (one undo step).
    pub fn resize(&mut self, rows: usize, cols: usize) -> Result<(), String> {
        if (rows, cols) != (self.grid.rows(), self.grid.cols()) {
            self.replace(blank(rows, cols)?);
        }
        Ok(())
    }

    /// Goes back one edit; returns whether there was one.
    pub fn undo(&mut self) -> bool {
        self.travel(true)
    }

    /// Redoes the last undone edit; returns whether there was one.
    pub fn redo(&mut self) -> bool {
        self.travel(false)
    }

    /// Moves one maze from the undo history to the redo history (or back).
    fn travel(&mut self, back: bool) -> bool {
        self.end_stroke();
        let (from, to) = if back { (&mut self.undo, &mut self.redo) } else { (&mut self.redo, &mut self.undo) };
        match from.pop() {
            Some(grid) => {
                to.push(std::mem::replace(&mut self.grid, grid));
                true
            }
            None => false,
        }
    }

    /// Whether the maze is a puzzle the model can take (one S, one G, no path cells).
    pub fn puzzle_problem(&self) -> Option<MazeError> {
        self.grid.validate_puzzle().err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor(text: &str) -> Editor {
        Editor::new(Grid::parse_lines(text).unwrap())
    }

    fn text(e: &Editor) -> String {
        e.grid().to_lines()
    }

    #[test]
    fn a_drag_draws_walls_and_is_one_undo_step() {
        let mut e = editor("S  \n   \n  G\n");
        e.begin_stroke(Tool::Wall, 1);
        e.stroke_to(4);
        e.stroke_to(7);
        e.end_stroke();
        assert_eq!(text(&e), "S# \n # \n #G\n");
        assert!(e.undo());
        assert_eq!(text(&e), "S  \n   \n  G\n");
        assert!(!e.can_undo());
        assert!(e.redo());
        assert_eq!(text(&e), "S# \n # \n #G\n");
        assert!(!e.redo());
    }

    #[test]
    fn wall_on_a_wall_erases_and_walls_leave_endpoints_alone() {
        let mut e = editor("S# \n## \n  G\n");
        e.begin_stroke(Tool::Wall, 1);
        e.stroke_to(3);
        e.stroke_to(0);
        e.end_stroke();
        assert_eq!(text(&e), "S  \n # \n  G\n");
        e.begin_stroke(Tool::Erase, 8);
        e.end_stroke();
        assert_eq!(text(&e), "S  \n # \n  G\n");
        // A stroke that changed nothing leaves nothing to undo beyond the first one.
        assert!(e.undo());
        assert!(!e.can_undo());
    }

    #[test]
    fn start_and_goal_move_and_stay_unique() {
        let mut e = editor("S  \n   \n  G\n");
        e.begin_stroke(Tool::Start, 4);
        e.end_stroke();
        e.begin_stroke(Tool::Goal, 0);
        e.end_stroke();
        assert_eq!(text(&e), "G  \n S \n   \n");
        assert!(e.puzzle_problem().is_none());
        e.undo();
        assert_eq!(text(&e), "   \n S \n  G\n");
    }

    #[test]
    fn a_new_edit_drops_the_redo_history() {
        let mut e = editor("S  \n   \n  G\n");
        e.begin_stroke(Tool::Wall, 1);
        e.end_stroke();
        e.undo();
        e.begin_stroke(Tool::Wall, 2);
        e.end_stroke();
        assert!(!e.can_redo());
        assert_eq!(text(&e), "S #\n   \n  G\n");
    }

    #[test]
    fn clear_resize_and_replace_are_undoable() {
        let mut e = editor("S# \n # \n  G\n");
        e.clear();
        assert_eq!(text(&e), "S  \n   \n  G\n");
        e.resize(2, 4).unwrap();
        assert_eq!(text(&e), "S   \n   G\n");
        assert!(e.resize(1, 4).unwrap_err().contains("2..=64"));
        e.replace(Grid::parse_lines("So\n G\n").unwrap());
        assert_eq!(text(&e), "S \n G\n");
        e.undo();
        e.undo();
        assert_eq!(text(&e), "S  \n   \n  G\n");
        e.undo();
        assert_eq!(text(&e), "S# \n # \n  G\n");
    }

    #[test]
    fn undo_depth_is_bounded() {
        let mut e = Editor::new(blank(30, 30).unwrap());
        for i in 0..UNDO_DEPTH + 50 {
            e.begin_stroke(Tool::Wall, 1 + i % 800);
            e.end_stroke();
        }
        let mut n = 0;
        while e.undo() {
            n += 1;
        }
        assert_eq!(n, UNDO_DEPTH);
    }

    #[test]
    fn out_of_range_cells_are_ignored_and_missing_endpoints_reported() {
        let mut e = editor("S \n G\n");
        e.begin_stroke(Tool::Wall, 99);
        e.stroke_to(99);
        e.end_stroke();
        assert!(!e.can_undo());
        e.begin_stroke(Tool::Start, 3);
        e.end_stroke();
        assert_eq!(e.puzzle_problem(), Some(MazeError::NoGoal));
    }
}

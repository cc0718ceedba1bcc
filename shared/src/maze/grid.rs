//! The maze grid, its cells and its two text formats.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::MazeError;

/// Token id of padding. Never appears in a maze; kept so that token ids match the reference.
pub const PAD: u8 = 0;
/// Number of token ids the reference model knows (PAD plus the five cell kinds).
pub const VOCAB_SIZE: usize = 6;
/// The benchmark's side length.
pub const DEFAULT_SIZE: usize = 30;
/// Most cells a maze read from a file may have (256x256), so that a crafted file cannot ask
/// for a huge grid.
pub const MAX_CELLS: usize = 1 << 16;

/// One cell of a maze, with the reference's token id as its discriminant
/// (`CHARSET = "# SGo"`, id = index + 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Cell {
    /// `#`
    Wall = 1,
    /// ` `
    Open = 2,
    /// `S`
    Start = 3,
    /// `G`
    Goal = 4,
    /// `o`: a cell of the answer path (labels and predictions only).
    Path = 5,
}

impl Cell {
    /// All cells in token order.
    pub const ALL: [Cell; 5] = [Cell::Wall, Cell::Open, Cell::Start, Cell::Goal, Cell::Path];

    /// The reference token id (1..=5).
    pub fn token(self) -> u8 {
        self as u8
    }

    /// The benchmark's character for this cell.
    pub fn to_char(self) -> char {
        match self {
            Cell::Wall => '#',
            Cell::Open => ' ',
            Cell::Start => 'S',
            Cell::Goal => 'G',
            Cell::Path => 'o',
        }
    }

    /// Parses a benchmark character.
    pub fn from_char(c: char) -> Option<Cell> {
        match c {
            '#' => Some(Cell::Wall),
            ' ' => Some(Cell::Open),
            'S' => Some(Cell::Start),
            'G' => Some(Cell::Goal),
            'o' => Some(Cell::Path),
            _ => None,
        }
    }

    /// Parses a token id; PAD (0) and ids above 5 are not cells.
    pub fn from_token(t: u8) -> Option<Cell> {
        match t {
            1 => Some(Cell::Wall),
            2 => Some(Cell::Open),
            3 => Some(Cell::Start),
            4 => Some(Cell::Goal),
            5 => Some(Cell::Path),
            _ => None,
        }
    }

    /// Whether a walker may stand on this cell.
    pub fn is_passable(self) -> bool {
        self != Cell::Wall
    }
}

/// A rectangular maze, stored row-major. It may be a puzzle (no `o` cells) or an answer.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grid {
    rows: usize,
    cols: usize,
    cells: Vec<Cell>,
}

impl Grid {
    /// A grid of `rows` x `cols` open cells.
    pub fn open(rows: usize, cols: usize) -> Grid {
        Grid { rows, cols, cells: vec![Cell::Open; rows * cols] }
    }

    /// Builds a grid from row-major cells.
    pub fn from_cells(rows: usize, cols: usize, cells: Vec<Cell>) -> Result<Grid, MazeError> {
        if rows == 0 || cols == 0 {
            return Err(MazeError::Empty);
        }
        if cells.len() != rows * cols {
            return Err(MazeError::WrongLength { expected: rows * cols, found: cells.len() });
        }
        Ok(Grid { rows, cols, cells })
    }

    /// Builds a grid from reference token ids (1..=5), row-major.
    pub fn from_tokens(rows: usize, cols: usize, tokens: &[u8]) -> Result<Grid, MazeError> {
        if tokens.len() != rows * cols {
            return Err(MazeError::WrongLength { expected: rows * cols, found: tokens.len() });
        }
        let cells = tokens
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                Cell::from_token(t).ok_or(MazeError::UnknownToken { row: i / cols, col: i % cols, token: t })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Grid::from_cells(rows, cols, cells)
    }

    /// Builds a square grid from a token sequence whose length is a perfect square
    /// (the reference reshapes with `n = sqrt(len)`).
    pub fn from_square_tokens(tokens: &[u8]) -> Result<Grid, MazeError> {
        let side = square_side(tokens.len())?;
        Grid::from_tokens(side, side, tokens)
    }

    /// Parses the benchmark's row-major string (900 characters for 30x30).
    /// `rows`/`cols` fix the shape; use [`Grid::parse_square`] to infer it.
    pub fn parse_row_major(text: &str, rows: usize, cols: usize) -> Result<Grid, MazeError> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() != rows * cols {
            return Err(MazeError::WrongLength { expected: rows * cols, found: chars.len() });
        }
        let cells = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| Cell::from_char(c).ok_or(MazeError::UnknownChar { row: i / cols, col: i % cols, ch: c }))
            .collect::<Result<Vec<_>, _>>()?;
        Grid::from_cells(rows, cols, cells)
    }

    /// Parses a row-major string whose length is a perfect square, as the reference does.
    pub fn parse_square(text: &str) -> Result<Grid, MazeError> {
        let side = square_side(text.chars().count())?;
        Grid::parse_row_major(text, side, side)
    }

    /// Parses the human form: one row per line, all rows the same width.
    /// Trailing `\r` is ignored, as is a final empty line; nothing else is trimmed,
    /// since a space is an open cell.
    pub fn parse_lines(text: &str) -> Result<Grid, MazeError> {
        let mut lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let Some(first) = lines.first() else {
            return Err(MazeError::Empty);
        };
        let cols = first.chars().count();
        let mut cells = Vec::with_capacity(lines.len() * cols);
        for (r, line) in lines.iter().enumerate() {
            let width = line.chars().count();
            if width != cols {
                return Err(MazeError::RaggedRow { row: r, expected: cols, found: width });
            }
            for (c, ch) in line.chars().enumerate() {
                cells.push(Cell::from_char(ch).ok_or(MazeError::UnknownChar { row: r, col: c, ch })?);
            }
        }
        Grid::from_cells(lines.len(), cols, cells)
    }

    /// Parses either text form: a single line is row-major (square), several lines are rows.
    pub fn parse_any(text: &str) -> Result<Grid, MazeError> {
        let trimmed = text.strip_suffix('\n').unwrap_or(text);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        if trimmed.contains('\n') { Grid::parse_lines(text) } else { Grid::parse_square(trimmed) }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Always false: a grid has at least one cell.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Row-major cells.
    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    /// The cell at a row-major index.
    pub fn at(&self, index: usize) -> Cell {
        self.cells[index]
    }

    /// The cell at (row, col).
    pub fn get(&self, row: usize, col: usize) -> Cell {
        self.cells[row * self.cols + col]
    }

    /// Sets the cell at a row-major index.
    pub fn set(&mut self, index: usize, cell: Cell) {
        self.cells[index] = cell;
    }

    /// Row-major reference token ids.
    pub fn tokens(&self) -> Vec<u8> {
        self.cells.iter().map(|c| c.token()).collect()
    }

    /// The benchmark's row-major string.
    pub fn to_row_major(&self) -> String {
        self.cells.iter().map(|c| c.to_char()).collect()
    }

    /// The human form: one row per line, each ending in `\n`.
    pub fn to_lines(&self) -> String {
        let mut s = String::with_capacity(self.rows * (self.cols + 1));
        for row in self.cells.chunks(self.cols) {
            s.extend(row.iter().map(|c| c.to_char()));
            s.push('\n');
        }
        s
    }

    /// Number of wall cells.
    pub fn wall_count(&self) -> usize {
        self.cells.iter().filter(|&&c| c == Cell::Wall).count()
    }

    /// The same grid with every `o` turned back into an open cell: the puzzle of an answer.
    pub fn without_path(&self) -> Grid {
        let cells = self.cells.iter().map(|&c| if c == Cell::Path { Cell::Open } else { c }).collect();
        Grid { rows: self.rows, cols: self.cols, cells }
    }

    /// Checks that this grid is a puzzle: exactly one start, exactly one goal, no path cells.
    /// Returns the start and goal indices.
    pub fn endpoints(&self) -> Result<(usize, usize), MazeError> {
        let mut starts = Vec::new();
        let mut goals = Vec::new();
        for (i, &c) in self.cells.iter().enumerate() {
            match c {
                Cell::Start => starts.push(i),
                Cell::Goal => goals.push(i),
                _ => {}
            }
        }
        match (starts.len(), goals.len()) {
            (0, _) => Err(MazeError::NoStart),
            (_, 0) => Err(MazeError::NoGoal),
            (1, 1) => Ok((starts[0], goals[0])),
            (1, n) => Err(MazeError::MultipleGoals { count: n }),
            (n, _) => Err(MazeError::MultipleStarts { count: n }),
        }
    }

    /// Like [`Grid::endpoints`], and also rejects `o` cells: what a puzzle given to the model must satisfy.
    pub fn validate_puzzle(&self) -> Result<(usize, usize), MazeError> {
        if let Some(i) = self.cells.iter().position(|&c| c == Cell::Path) {
            return Err(MazeError::PathInPuzzle { row: i / self.cols, col: i % self.cols });
        }
        self.endpoints()
    }
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_lines())
    }
}

impl fmt::Debug for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Grid {}x{}", self.rows, self.cols)?;
        for row in self.cells.chunks(self.cols) {
            let line: String = row.iter().map(|c| c.to_char()).collect();
            writeln!(f, "|{line}|")?;
        }
        Ok(())
    }
}

/// The side of a square grid with `len` cells, or an error naming the length.
pub fn square_side(len: usize) -> Result<usize, MazeError> {
    if len == 0 {
        return Err(MazeError::Empty);
    }
    let side = (len as f64).sqrt().round() as usize;
    // Checked: near usize::MAX the rounded root squared overflows.
    if side.checked_mul(side) != Some(len) {
        return Err(MazeError::NotSquare { len });
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "#S \n  G\n## \n";

    #[test]
    fn parses_lines_and_round_trips() {
        let g = Grid::parse_lines(SMALL).unwrap();
        assert_eq!((g.rows(), g.cols()), (3, 3));
        assert_eq!(g.get(0, 1), Cell::Start);
        assert_eq!(g.get(1, 2), Cell::Goal);
        assert_eq!(g.to_lines(), SMALL);
        assert_eq!(g.to_row_major(), "#S   G## ");
        assert_eq!(Grid::parse_square(&g.to_row_major()).unwrap(), g);
        assert_eq!(Grid::parse_any(SMALL).unwrap(), g);
        assert_eq!(Grid::parse_any("#S   G## \n").unwrap(), g);
        assert_eq!(g.endpoints().unwrap(), (1, 5));
    }

    #[test]
    fn tokens_match_reference_ids() {
        let g = Grid::parse_lines(SMALL).unwrap();
        assert_eq!(g.tokens(), vec![1, 3, 2, 2, 2, 4, 1, 1, 2]);
        assert_eq!(Grid::from_square_tokens(&g.tokens()).unwrap(), g);
        for c in Cell::ALL {
            assert_eq!(Cell::from_token(c.token()), Some(c));
            assert_eq!(Cell::from_char(c.to_char()), Some(c));
        }
        assert_eq!(" #SGo".chars().map(|c| Cell::from_char(c).unwrap().token()).collect::<Vec<_>>(), [2, 1, 3, 4, 5]);
    }

    #[test]
    fn rejects_malformed_text() {
        assert_eq!(Grid::parse_lines("#S\n G\n#x\n"), Err(MazeError::UnknownChar { row: 2, col: 1, ch: 'x' }));
        assert_eq!(Grid::parse_lines("#S \n G\n"), Err(MazeError::RaggedRow { row: 1, expected: 3, found: 2 }));
        assert_eq!(Grid::parse_lines(""), Err(MazeError::Empty));
        assert_eq!(Grid::parse_square("#S G "), Err(MazeError::NotSquare { len: 5 }));
        assert_eq!(Grid::parse_row_major("#S", 2, 2), Err(MazeError::WrongLength { expected: 4, found: 2 }));
        assert_eq!(Grid::from_tokens(1, 2, &[1, 0]), Err(MazeError::UnknownToken { row: 0, col: 1, token: 0 }));
        assert_eq!(Grid::from_tokens(1, 2, &[1, 9]), Err(MazeError::UnknownToken { row: 0, col: 1, token: 9 }));
    }

    #[test]
    fn checks_endpoints() {
        let p = |s: &str| Grid::parse_lines(s).unwrap();
        assert_eq!(p("  \n G\n").endpoints(), Err(MazeError::NoStart));
        assert_eq!(p("S \n  \n").endpoints(), Err(MazeError::NoGoal));
        assert_eq!(p("SG\nG \n").endpoints(), Err(MazeError::MultipleGoals { count: 2 }));
        assert_eq!(p("SS\nG \n").endpoints(), Err(MazeError::MultipleStarts { count: 2 }));
        assert_eq!(p("So\n G\n").validate_puzzle(), Err(MazeError::PathInPuzzle { row: 0, col: 1 }));
        assert_eq!(p("So\n G\n").without_path().validate_puzzle(), Ok((0, 3)));
    }
}

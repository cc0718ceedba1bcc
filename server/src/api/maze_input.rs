//! Turning the mazes of a predict request into grids the model can take, with messages that
//! name the maze and the problem.

use trm_shared::wire::MazeInput;
use trm_shared::maze::{Cell, Grid, MazeError, Window, square_side};

use super::error::ApiError;

/// What a served model takes: the grid it sees mazes on (a size-general model's `AnySize`
/// goes up to the largest canvas).
pub use trm_shared::maze::Frame as Takes;

/// What models taking these take, for error messages; `max_side` is the largest canvas.
pub fn takes(models: &[Takes], max_side: usize) -> String {
    let sizes: Vec<(usize, usize)> = models
        .iter()
        .filter_map(|t| match *t {
            Takes::Size(r, c) => Some((r, c)),
            Takes::AnySize => None,
        })
        .collect();
    let any = sizes.len() < models.len();
    match (any, sizes.as_slice()) {
        (false, [(rows, cols)]) => format!(
            "the model takes {rows}x{cols} mazes ({} cells), or mazes of any size whose open cells fit in {rows}x{cols}",
            rows * cols
        ),
        (false, _) => {
            let sizes: Vec<String> = sizes.iter().map(|(r, c)| format!("{r}x{c}")).collect();
            format!(
                "the served models take {} mazes, or mazes of any size whose open cells fit in one of those",
                sizes.join(" or ")
            )
        }
        (true, []) => format!("the model takes rectangular mazes of any size up to {max_side}x{max_side}"),
        (true, _) => {
            let sizes: Vec<String> = sizes.iter().map(|(r, c)| format!("{r}x{c}")).collect();
            format!("the served models take rectangular mazes of any size up to {max_side}x{max_side} (a size-general model), or {} mazes", sizes.join(" or "))
        }
    }
}

/// Parses maze `index` of a request in any of its forms and checks that it is a puzzle (one
/// start, one goal, no path cells), with a message naming the maze and the problem; a grid
/// that is not square or rectangular also gets `takes`, what the model(s) can take.
pub fn parse_grid(index: usize, input: &MazeInput, takes: &str) -> Result<Grid, ApiError> {
    let maze_error = |e: MazeError| {
        let hint = match e {
            MazeError::Empty | MazeError::WrongLength { .. } | MazeError::NotSquare { .. } | MazeError::RaggedRow { .. } => {
                format!("; {takes}")
            }
            _ => String::new(),
        };
        ApiError::unprocessable(format!("maze {index}: {e}{hint}"))
    };
    let grid = match input {
        MazeInput::Text(text) => Grid::parse_any(text).map_err(maze_error)?,
        MazeInput::Rows(lines) => {
            if let Some(r) = lines.iter().position(|l| l.contains(['\n', '\r'])) {
                return Err(ApiError::unprocessable(format!("maze {index}: row {r} contains a line break")));
            }
            Grid::parse_lines(&lines.join("\n")).map_err(maze_error)?
        }
        MazeInput::Tokens(tokens) => {
            let side = square_side(tokens.len()).map_err(maze_error)?;
            let mut bytes = Vec::with_capacity(tokens.len());
            for (k, &t) in tokens.iter().enumerate() {
                let cell = u8::try_from(t).ok().and_then(Cell::from_token).ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "maze {index}: token {t} at row {} col {} is not a maze cell (1 '#', 2 ' ', 3 'S', 4 'G')",
                        k / side,
                        k % side
                    ))
                })?;
                bytes.push(cell.token());
            }
            Grid::from_tokens(side, side, &bytes).map_err(maze_error)?
        }
    };
    grid.validate_puzzle().map_err(maze_error)?;
    Ok(grid)
}

/// Places a model's `shape` over maze `index`: the identity for a maze of that shape, else
/// the frame around its open cells (see [`Window::place`]), or a message naming the sizes the
/// model can take.
pub fn place(index: usize, grid: &Grid, shape: (usize, usize)) -> Result<Window, ApiError> {
    Window::place(grid, Takes::Size(shape.0, shape.1)).map_err(|e| {
        let takes = takes(&[Takes::Size(shape.0, shape.1)], 0);
        ApiError::unprocessable(format!("maze {index} is {}x{} and {e}; {takes}", grid.rows(), grid.cols()))
    })
}

/// Tokens as the benchmark's row-major string; a token that is no cell (padding) shows as `?`.
pub fn tokens_to_row_major(tokens: &[u8]) -> String {
    tokens.iter().map(|&t| Cell::from_token(t).map_or('?', Cell::to_char)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: (usize, usize) = (3, 3);

    fn parse_maze(index: usize, input: &MazeInput, shape: (usize, usize)) -> Result<(Grid, Window), ApiError> {
        let grid = parse_grid(index, input, &takes(&[Takes::Size(shape.0, shape.1)], 64))?;
        Ok((grid.clone(), place(index, &grid, shape)?))
    }

    fn message(input: MazeInput) -> String {
        parse_maze(2, &input, SHAPE).unwrap_err().message
    }

    #[test]
    fn accepts_the_three_forms() {
        let (text, window) = parse_maze(0, &MazeInput::Text("S  ## G  ".into()), SHAPE).unwrap();
        let (rows, _) = parse_maze(0, &MazeInput::Rows(vec!["S  ".into(), "## ".into(), "G  ".into()]), SHAPE).unwrap();
        let (tokens, _) = parse_maze(0, &MazeInput::Tokens(vec![3, 2, 2, 1, 1, 2, 4, 2, 2]), SHAPE).unwrap();
        assert_eq!(text, rows);
        assert_eq!(text, tokens);
        assert!(window.is_identity(&text));
        assert_eq!(tokens_to_row_major(&[1, 2, 3, 4, 5, 0]), "# SGo?");
        assert!(Window::whole(&text).is_identity(&text));
    }

    #[test]
    fn says_what_the_served_models_take() {
        assert_eq!(takes(&[Takes::AnySize], 64), "the model takes rectangular mazes of any size up to 64x64");
        assert!(takes(&[Takes::Size(7, 7), Takes::Size(30, 30)], 64).starts_with("the served models take 7x7 or 30x30 mazes"));
        assert_eq!(
            takes(&[Takes::AnySize, Takes::Size(30, 30)], 64),
            "the served models take rectangular mazes of any size up to 64x64 (a size-general model), or 30x30 mazes"
        );
    }

    #[test]
    fn places_smaller_mazes_and_small_mazes_on_bigger_canvases_in_the_models_frame() {
        let (small, window) = parse_maze(0, &MazeInput::Text("S  G".into()), SHAPE).unwrap();
        assert_eq!((small.rows(), small.cols()), (2, 2));
        assert_eq!(window.crop(&small).to_row_major(), "S # G####");
        let canvas = ["#####", "#S ##", "## G#", "#####"].map(String::from).to_vec();
        let (big, window) = parse_maze(0, &MazeInput::Rows(canvas), SHAPE).unwrap();
        assert_eq!((big.rows(), big.cols()), (4, 5));
        assert_eq!(window.crop(&big).to_row_major(), "S ## G###");
    }

    #[test]
    fn names_the_maze_and_the_problem() {
        assert!(
            message(MazeInput::Text("S   #   #   #  G".into()))
                .contains("maze 2 is 4x4 and its open cells span 4x4, more than the model's 3x3; the model takes 3x3 mazes")
        );
        assert!(message(MazeInput::Text("S   G".into())).contains("square number of cells"));
        assert!(message(MazeInput::Text("S  x# G  ".into())).contains("unknown character 'x' at row 1 col 0"));
        assert!(message(MazeInput::Text("   ## G  ".into())).contains("no start"));
        assert!(message(MazeInput::Text("S  ## GG ".into())).contains("2 goals"));
        assert!(message(MazeInput::Text("So ## G  ".into())).contains("path cell"));
        assert!(message(MazeInput::Tokens(vec![3, 2, 2, 1, 1, 2, 4, 2, 300])).contains("token 300 at row 2 col 2"));
        assert!(message(MazeInput::Tokens(vec![3, 0, 2, 1, 1, 2, 4, 2, 2])).contains("token 0 at row 0 col 1"));
        assert!(message(MazeInput::Rows(vec!["S  ".into(), "##".into(), "G  ".into()])).contains("row 1 has 2 cells"));
        assert!(message(MazeInput::Rows(vec!["S \n ".into()])).contains("line break"));
    }
}

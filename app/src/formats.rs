//! Mazes in and out as text, and the keyboard shortcuts.
//!
//! Import takes what the command line takes (`trm maze show --file`): rows on lines, or
//! the benchmark's row-major string (900 characters for 30x30), path cells allowed (they
//! are dropped). Export gives both forms.

use trm_shared::maze::{Grid, MazeError};

use crate::editor::{Tool, check_size};

/// Parses pasted or opened text into a puzzle. Surrounding blank lines are ignored; a
/// label's path cells become open.
pub fn import(text: &str) -> Result<Grid, String> {
    // Blank lines around the maze are common in pasted text; a line of spaces is a row of
    // open cells, so only lines that are truly empty are dropped.
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let first = lines.iter().position(|l| !l.is_empty());
    let last = lines.iter().rposition(|l| !l.is_empty());
    let (Some(first), Some(last)) = (first, last) else {
        return Err(MazeError::Empty.to_string());
    };
    let body = lines[first..=last].join("\n");
    let grid = Grid::parse_any(&body).map_err(|e| e.to_string())?;
    check_size(grid.rows(), grid.cols())?;
    Ok(grid.without_path())
}

/// One row per line, newline-terminated (what `import` and `trm maze show --file` read).
pub fn export_lines(grid: &Grid) -> String {
    grid.to_lines()
}

/// The benchmark's row-major string, no newline.
pub fn export_row_major(grid: &Grid) -> String {
    grid.to_row_major()
}

/// What a key press asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pick a drawing tool.
    Tool(Tool),
    /// Undo the last edit.
    Undo,
    /// Redo the last undone edit.
    Redo,
    /// Remove every wall.
    Clear,
    /// Generate a new hard maze.
    Generate,
    /// Solve with the chosen backend.
    Solve,
    /// Stop the solve in progress.
    Cancel,
    /// Show the previous ACT step.
    StepBack,
    /// Show the next ACT step.
    StepForward,
    /// Show or hide the optimal path.
    TogglePath,
}

/// The shortcut for a key (`KeyboardEvent.key`) with Ctrl/Cmd and Shift, if any.
pub fn shortcut(key: &str, ctrl: bool, shift: bool) -> Option<Action> {
    let lower = key.to_ascii_lowercase();
    if ctrl {
        return match lower.as_str() {
            "z" if shift => Some(Action::Redo),
            "z" => Some(Action::Undo),
            "y" => Some(Action::Redo),
            _ => None,
        };
    }
    Some(match lower.as_str() {
        "w" => Action::Tool(Tool::Wall),
        "e" => Action::Tool(Tool::Erase),
        "s" => Action::Tool(Tool::Start),
        "g" => Action::Tool(Tool::Goal),
        "c" => Action::Clear,
        "n" => Action::Generate,
        "enter" => Action::Solve,
        "escape" => Action::Cancel,
        "arrowleft" => Action::StepBack,
        "arrowright" => Action::StepForward,
        "p" => Action::TogglePath,
        _ => return None,
    })
}

/// The help line listing the shortcuts, shown under the toolbar.
pub const SHORTCUTS_HELP: &str =
    "W wall · E erase · S start · G goal · Ctrl+Z undo · Ctrl+Y redo · C clear · N generate · Enter solve · Esc cancel · ←/→ steps · P path";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_lines_and_row_major_and_drops_paths() {
        let g = import("\n\nS#\noG\n\n").unwrap();
        assert_eq!(export_lines(&g), "S#\n G\n");
        let g = import("S o#  # G").unwrap();
        assert_eq!(export_row_major(&g), "S  #  # G");
        assert_eq!(import(&export_lines(&g)).unwrap(), g);
        assert_eq!(import(&export_row_major(&g)).unwrap(), g);
    }

    #[test]
    fn rows_of_spaces_are_kept() {
        let g = import("S  \n   \n  G\n").unwrap();
        assert_eq!((g.rows(), g.cols()), (3, 3));
    }

    #[test]
    fn bad_text_is_a_clear_error() {
        assert!(import("\n \r\n").unwrap_err().contains("got 1x1"));
        assert_eq!(import("").unwrap_err(), "empty maze");
        assert!(import("S#x\n  G\n").unwrap_err().contains("unknown character 'x' at row 0 col 2"));
        assert!(import("S# \n G\n").unwrap_err().contains("row 1 has 2 cells"));
        assert!(import("SG").unwrap_err().contains("square number"));
        assert!(import("S\nG\n").unwrap_err().contains("2..=64"));
    }

    #[test]
    fn shortcuts_map_keys() {
        assert_eq!(shortcut("z", true, false), Some(Action::Undo));
        assert_eq!(shortcut("Z", true, true), Some(Action::Redo));
        assert_eq!(shortcut("y", true, false), Some(Action::Redo));
        assert_eq!(shortcut("W", false, false), Some(Action::Tool(Tool::Wall)));
        assert_eq!(shortcut("Enter", false, false), Some(Action::Solve));
        assert_eq!(shortcut("ArrowRight", false, false), Some(Action::StepForward));
        assert_eq!(shortcut("s", true, false), None);
        assert_eq!(shortcut("q", false, false), None);
    }
}

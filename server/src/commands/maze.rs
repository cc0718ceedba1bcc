//! `trm maze ...`: looking at single mazes.

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use trm_shared::dataset::{ExampleError, check_example, read_split};
use trm_shared::maze::{self, Cell, Grid};

/// Arguments of `trm maze`.
#[derive(Args, Debug)]
pub struct MazeArgs {
    #[command(subcommand)]
    pub command: MazeCommand,
}

/// Subcommands of `trm maze`.
#[derive(Subcommand, Debug)]
pub enum MazeCommand {
    /// Draw a maze and its path: an example of a dataset, or a text file.
    Show(ShowArgs),
}

/// When to use ANSI colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is unset.
    Auto,
    Always,
    Never,
}

/// Arguments of `trm maze show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// A dataset directory (npy layout) or one of its split folders.
    #[arg(required_unless_present = "file")]
    pub dir: Option<PathBuf>,
    /// Split of DIR.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Zero-based example index within the split.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// A text file holding one maze, as rows (one line per row) or as one row-major line.
    /// A puzzle is shown with its benchmark label; an answer (with 'o' cells) as given.
    #[arg(long, conflicts_with = "dir")]
    pub file: Option<PathBuf>,
    /// Colours: auto (on a terminal), always or never.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,
}

/// Runs `trm maze`.
pub fn run(args: MazeArgs) -> anyhow::Result<()> {
    match args.command {
        MazeCommand::Show(args) => show(args),
    }
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    };
    let (title, puzzle, answer, given) = match (&args.file, &args.dir) {
        (Some(file), _) => from_file(file)?,
        (None, Some(dir)) => from_dataset(dir, &args.split, args.index)?,
        (None, None) => bail!("give a dataset directory or --file"),
    };
    println!("{title}");
    print!("{}", render(&answer, color));
    println!("{}", legend(color));
    println!("{}x{}, {} walls", puzzle.rows(), puzzle.cols(), puzzle.wall_count());
    match check_example(&puzzle, &answer) {
        Ok(check) => {
            println!("path: {} moves ({}), a shortest path", check.moves, given);
            if check.follows_rule {
                println!("label rule: yes, this is the lex-min shortest path (down, left, right, up)");
            } else {
                let rule = maze::label(&puzzle).context("computing the benchmark label")?;
                let differ = (0..puzzle.len()).filter(|&i| rule.at(i) != answer.at(i)).count();
                println!(
                    "label rule: no, another shortest path; the lex-min one (down, left, right, up) differs in {differ} cells"
                );
            }
        }
        Err(ExampleError::Unsolvable) => println!("path: none, the maze is unsolvable"),
        Err(e) => println!("path: the {given} is not a shortest path: {e}"),
    }
    Ok(())
}

/// Loads example `index` of `split` in the dataset `dir` (or of the split folder `dir`).
fn from_dataset(dir: &Path, split: &str, index: usize) -> anyhow::Result<(String, Grid, Grid, &'static str)> {
    if !dir.is_dir() {
        bail!("{}: no such directory", dir.display());
    }
    let folder = if dir.join("dataset.json").is_file() { dir.to_path_buf() } else { dir.join(split) };
    if !folder.join("dataset.json").is_file() {
        let mut found: Vec<String> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("dataset.json").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        bail!(
            "{}: no split {split:?} (a folder with dataset.json); found: {}",
            dir.display(),
            if found.is_empty() { "none".to_string() } else { found.join(", ") }
        );
    }
    let data = read_split(&folder).context("reading the dataset")?;
    if index >= data.len() {
        bail!(
            "index {index} is out of range: {} has {} examples (0..={})",
            folder.display(),
            data.len(),
            data.len().saturating_sub(1)
        );
    }
    let (puzzle, label) = data.grids(index).with_context(|| format!("{}", folder.display()))?;
    Ok((format!("{} example {index} of {}", folder.display(), data.len()), puzzle, label, "label"))
}

/// Loads a maze from a text file: a puzzle gets its benchmark label, an answer stays as given.
fn from_file(file: &Path) -> anyhow::Result<(String, Grid, Grid, &'static str)> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let grid = Grid::parse_any(&text).with_context(|| format!("{}", file.display()))?;
    let title = format!("{}", file.display());
    if grid.cells().contains(&Cell::Path) {
        let puzzle = grid.without_path();
        puzzle.validate_puzzle().with_context(|| format!("{}", file.display()))?;
        return Ok((title, puzzle, grid, "answer in the file"));
    }
    let label = maze::label(&grid).with_context(|| format!("{}", file.display()))?;
    Ok((format!("{title} (puzzle only: showing the benchmark label, BFS)"), grid, label, "benchmark label"))
}

const RESET: &str = "\x1b[0m";

/// How one cell is drawn: two characters wide with colours (cells look square), the
/// benchmark's character without.
fn cell_text(cell: Cell, color: bool) -> String {
    if !color {
        return cell.to_char().to_string();
    }
    match cell {
        Cell::Wall => format!("\x1b[48;5;245m  {RESET}"),
        Cell::Open => "  ".into(),
        Cell::Start => format!("\x1b[1;97;42mS {RESET}"),
        Cell::Goal => format!("\x1b[1;97;41mG {RESET}"),
        Cell::Path => format!("\x1b[1;33m(){RESET}"),
    }
}

/// Draws `grid` inside a frame (the frame shows where open border cells end).
fn render(grid: &Grid, color: bool) -> String {
    let width = grid.cols() * if color { 2 } else { 1 };
    let border = format!("+{}+\n", "-".repeat(width));
    let mut out = border.clone();
    for r in 0..grid.rows() {
        out.push('|');
        for c in 0..grid.cols() {
            out.push_str(&cell_text(grid.get(r, c), color));
        }
        out.push_str("|\n");
    }
    out.push_str(&border);
    out
}

fn legend(color: bool) -> String {
    let item = |cell: Cell, name: &str| {
        if color { format!("{} {name}", cell_text(cell, true)) } else { format!("'{}' {name}", cell.to_char()) }
    };
    format!(
        "legend: {}  {}  {}  {}  {}",
        item(Cell::Wall, "wall"),
        item(Cell::Open, "open"),
        item(Cell::Start, "start"),
        item(Cell::Goal, "goal"),
        item(Cell::Path, "path")
    )
}

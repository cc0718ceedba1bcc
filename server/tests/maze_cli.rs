//! `trm maze show`.

use std::fs;
use std::process::{Command, Output};

use trm_shared::dataset::read_split;
use trm_shared::maze::{Grid, label};
mod support;

use support::{assert_error, benchmark, stdout};

fn trm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trm"))
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("NO_COLOR")
        .output()
        .expect("run trm")
}

/// The grid drawn inside the plain-text frame.
fn drawn(text: &str) -> String {
    text.lines().filter(|l| l.starts_with('|')).map(|l| format!("{}\n", &l[1..l.len() - 1])).collect()
}

#[test]
fn shows_a_benchmark_example() {
    let text = stdout(&trm(&["maze", "show", benchmark().to_str().unwrap(), "--split", "test", "--index", "7"]));
    let (_, expected) = read_split(&benchmark().join("test")).unwrap().grids(7).unwrap();
    // Not a terminal: plain characters, the label drawn as is, no escape codes.
    assert_eq!(drawn(&text), expected.to_lines());
    assert!(!text.contains('\x1b'), "{text}");
    let moves = expected.cells().iter().filter(|&&c| c == trm_shared::maze::Cell::Path).count() + 1;
    for part in
        ["example 7 of 1000", "legend: '#' wall", &format!("path: {moves} moves (label)"), "label rule: yes", "30x30"]
    {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    let colored = stdout(&trm(&[
        "maze",
        "show",
        benchmark().join("test").to_str().unwrap(),
        "--index",
        "7",
        "--color",
        "always",
    ]));
    assert!(colored.contains("\x1b[") && colored.contains("label rule: yes"), "{colored}");
}

#[test]
fn shows_a_text_file() {
    let tmp = tempfile::tempdir().unwrap();
    let puzzle = Grid::parse_lines("S  #\n # #\n    \n## G\n").unwrap();
    let file = tmp.path().join("maze.txt");
    fs::write(&file, puzzle.to_lines()).unwrap();
    let text = stdout(&trm(&["maze", "show", "--file", file.to_str().unwrap()]));
    assert_eq!(drawn(&text), label(&puzzle).unwrap().to_lines(), "a puzzle is shown with its BFS label");
    assert!(
        text.contains("puzzle only")
            && text.contains("path: 6 moves (benchmark label)")
            && text.contains("label rule: yes"),
        "{text}"
    );

    // An answer in row-major form with another shortest path: shown as given, off the rule.
    let other = Grid::parse_lines("Soo#\n #o#\n  oo\n## G\n").unwrap();
    fs::write(&file, other.to_row_major()).unwrap();
    let text = stdout(&trm(&["maze", "show", "--file", file.to_str().unwrap()]));
    assert_eq!(drawn(&text), other.to_lines());
    assert!(text.contains("path: 6 moves (answer in the file)") && text.contains("label rule: no"), "{text}");
}

#[test]
fn bad_input_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = benchmark();
    let bench = bench.to_str().unwrap();
    assert_error(&trm(&["maze", "show", bench, "--split", "test", "--index", "1000"]), "index 1000 is out of range");
    assert_error(&trm(&["maze", "show", bench, "--split", "dev"]), "no split \"dev\"");
    assert_error(&trm(&["maze", "show", tmp.path().join("nope").to_str().unwrap()]), "no such directory");
    let file = tmp.path().join("m.txt");
    assert_error(&trm(&["maze", "show", "--file", file.to_str().unwrap()]), "reading");
    fs::write(&file, "S #\n#x \n  G\n").unwrap();
    assert_error(&trm(&["maze", "show", "--file", file.to_str().unwrap()]), "unknown character 'x' at row 1 col 1");
    fs::write(&file, "S# \n#  \n  G\n").unwrap();
    assert_error(&trm(&["maze", "show", "--file", file.to_str().unwrap()]), "no path from 'S' to 'G'");
    fs::write(&file, "S  \n   \n   \n").unwrap();
    assert_error(&trm(&["maze", "show", "--file", file.to_str().unwrap()]), "no goal 'G'");
    let out = trm(&["maze", "show"]);
    assert!(!out.status.success());
}

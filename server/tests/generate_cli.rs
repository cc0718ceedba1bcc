//! Runs the `trm generate` binary end to end.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use trm_shared::dataset::read_split;
use trm_shared::maze;

fn trm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trm")).args(args).output().expect("run trm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const FILES: [&str; 6] = [
    "all__inputs.npy",
    "all__labels.npy",
    "all__puzzle_identifiers.npy",
    "all__puzzle_indices.npy",
    "all__group_indices.npy",
    "dataset.json",
];

#[test]
fn writes_a_valid_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mazes");
    let o = out.to_str().unwrap();
    let run = trm(&["generate", "--size", "8", "--train", "30", "--test", "12", "--min-moves", "16", "--seed", "5", "--out", o]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(stdout.contains("== train") && stdout.contains("== test"), "{stdout}");
    assert!(stdout.contains("mazes/s") && stdout.contains("label rule       100.0%"), "{stdout}");

    assert_eq!(fs::read_to_string(out.join("identifiers.json")).unwrap(), r#"["<blank>"]"#);
    let mut layouts = HashSet::new();
    for (split, count) in [("train", 30), ("test", 12)] {
        for f in FILES {
            assert!(out.join(split).join(f).is_file(), "{split}/{f}");
        }
        let data = read_split(&out.join(split)).unwrap();
        assert_eq!((data.len(), data.seq_len), (count, 64));
        for i in 0..data.len() {
            let (puzzle, label) = data.grids(i).unwrap();
            assert_eq!(label, maze::label(&puzzle).unwrap());
            assert!(maze::shortest_path(&puzzle).unwrap().unwrap().moves() >= 16);
            assert!((20..=32).contains(&puzzle.wall_count()), "{} walls", puzzle.wall_count());
            let walls: Vec<bool> = puzzle.cells().iter().map(|&c| c == maze::Cell::Wall).collect();
            assert!(layouts.insert(walls), "repeated layout in {split} {i}");
        }
    }
    // Nothing else is left next to the output (no temporary folders).
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for split in ["train", "test"] {
        for f in FILES {
            files.push((format!("{split}/{f}"), fs::read(dir.join(split).join(f)).unwrap()));
        }
    }
    files
}

#[test]
fn same_seed_same_bytes_on_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str, threads: &str| {
        let out = tmp.path().join(name);
        let args =
            ["generate", "--size", "8", "--train", "25", "--test", "10", "--seed", seed, "--threads", threads, "--out"];
        let r = trm(&[&args[..], &[out.to_str().unwrap()]].concat());
        assert!(r.status.success(), "{}", text(&r.stderr));
        read_all(&out)
    };
    let one = run("a", "9", "1");
    assert_eq!(one, run("b", "9", "2"));
    assert_ne!(one, run("c", "10", "2"));
}

#[test]
fn bad_arguments_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["--size", "6x8"], "not square"),
        (&["--size", "0"], "size"),
        (&["--size", "4x"], "size"),
        (&["--size", "1"], "at least 1x2"),
        (&["--size", "5", "--min-moves", "100"], "min-moves 100 is impossible"),
        (&["--size", "3", "--train", "500", "--test", "500"], "wall layouts"),
        (&["--train", "0", "--test", "0"], "nothing to generate"),
        (&["--size", "5", "--min-walls", "9", "--max-walls", "8"], "wall range"),
    ];
    for (args, expected) in cases {
        let r = trm(&[&["generate", "--out", o][..], args].concat());
        let stderr = text(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(stderr.trim_end().lines().next().unwrap().starts_with("error"), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} left output behind");
    }
    // An occupied output folder is refused before any work, and left as it was.
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep.txt"), "mine").unwrap();
    let r = trm(&["generate", "--size", "6", "--train", "2", "--test", "1", "--out", o]);
    assert!(!r.status.success());
    assert!(text(&r.stderr).contains("not empty"), "{}", text(&r.stderr));
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
}

//! `trm dataset stats`.

use std::fs;
use std::process::{Command, Output};

use trm_shared::dataset::{SplitData, augment_dihedral, read_split, write_dataset};
mod support;

use support::{assert_error, benchmark, stdout};

fn trm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trm")).args(args).env("RUST_LOG", "off").output().expect("run trm")
}

#[test]
fn stats_of_the_benchmark() {
    let dir = benchmark();
    let text = stdout(&trm(&["dataset", "stats", dir.to_str().unwrap()]));
    for part in [
        "== test ==",
        "== train ==",
        "examples 1000  puzzles 1000  groups 1000  grid 30x30",
        "labels following the rule: 1000 of 1000",
        "walls            mean",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&trm(&["dataset", "stats", "--json", dir.to_str().unwrap()]))).unwrap();
    for split in ["train", "test"] {
        let s = &json["splits"][split];
        assert_eq!(s["examples"], 1000);
        assert_eq!(s["labels_following_rule"], 1000);
        assert_eq!(s["stats"]["invalid"], 0);
        // maze-hard.md §2: shortest paths of 109..153 moves, walls 249..405 over both splits.
        let moves = &s["stats"]["moves"];
        assert!(moves["min"].as_u64().unwrap() >= 109 && moves["max"].as_u64().unwrap() <= 153, "{moves}");
        let walls = &s["stats"]["walls"];
        assert!(walls["min"].as_u64().unwrap() >= 249 && walls["max"].as_u64().unwrap() <= 405, "{walls}");
    }
    assert_eq!(json["splits"]["train"]["stats"]["moves"]["min"], 109);
}

#[test]
fn stats_of_a_split_folder_and_an_augmented_set() {
    let single = stdout(&trm(&["dataset", "stats", benchmark().join("test").to_str().unwrap()]));
    assert!(single.contains("== test ==") && !single.contains("== train =="), "{single}");

    let tmp = tempfile::tempdir().unwrap();
    let real = read_split(&benchmark().join("train")).unwrap();
    let head =
        SplitData::from_examples(900, (0..10).map(|i| (real.input(i).to_vec(), real.label(i).to_vec())).collect());
    let aug = augment_dihedral(&head).unwrap();
    write_dataset(&tmp.path().join("d"), &[("train", &aug)]).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&trm(&["dataset", "stats", "--json", tmp.path().join("d").to_str().unwrap()])))
            .unwrap();
    let s = &json["splits"]["train"];
    assert_eq!((s["examples"].as_u64(), s["puzzles"].as_u64(), s["groups"].as_u64()), (Some(80), Some(80), Some(10)));
    // Transformed labels mostly stop following the rule (maze-hard.md §3).
    let follow = s["labels_following_rule"].as_u64().unwrap();
    assert!((10..40).contains(&follow), "{follow} of 80 follow the rule");
}

#[test]
fn stats_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    assert_error(&trm(&["dataset", "stats", tmp.path().join("nope").to_str().unwrap()]), "no such directory");
    assert_error(&trm(&["dataset", "stats", tmp.path().to_str().unwrap()]), "no split folders");
    let d = tmp.path().join("d");
    let real = read_split(&benchmark().join("test")).unwrap();
    let head = SplitData::from_examples(900, vec![(real.input(0).to_vec(), real.label(0).to_vec())]);
    write_dataset(&d, &[("test", &head)]).unwrap();
    fs::write(d.join("test/all__inputs.npy"), b"not npy").unwrap();
    assert_error(&trm(&["dataset", "stats", d.to_str().unwrap()]), "all__inputs.npy");
}

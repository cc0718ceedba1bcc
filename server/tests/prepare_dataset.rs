//! `trm prepare-dataset`: from npy, from CSV, from a (local) hub, with --aug, and bad input.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use support::{HUB_COMMIT, benchmark, serve_hub, sha256_hex};
use trm_shared::dataset::{SplitData, read_split, write_csv, write_dataset};
use trm_shared::maze::dihedral_transform;

mod support;

const REPO_PATH: &str = "/datasets/sapientinc/maze-30x30-hard-1k/resolve/main";

/// Runs `trm` with a private hub cache and no inherited hub settings.
fn trm(args: &[&str], hf_home: &Path, endpoint: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trm"));
    cmd.args(args).env("RUST_LOG", "off").env("HF_HOME", hf_home);
    for var in ["HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN"] {
        cmd.env_remove(var);
    }
    if let Some(e) = endpoint {
        cmd.env("HF_ENDPOINT", e);
    }
    cmd.output().expect("run trm")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a failure with a one-line `error: ...` message containing each of `parts`.
fn assert_error(out: &Output, parts: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1, "one line: {err:?}");
    for p in parts {
        assert!(err.contains(p), "{p:?} missing from {err:?}");
    }
    err
}

/// Asserts that nothing was written next to `out`: no output, no temporary folder.
fn assert_nothing_left(out: &Path) {
    assert!(!out.exists(), "{} must not exist", out.display());
    let parent = out.parent().unwrap();
    let leftovers: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary output left: {leftovers:?}");
}

/// Asserts that `dir/{split}` holds exactly the benchmark's arrays: same values, same dtypes.
fn assert_equals_benchmark(dir: &Path) {
    for split in ["train", "test"] {
        for file in ["inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"] {
            let name = format!("all__{file}.npy");
            let ours = fs::read(dir.join(split).join(&name)).unwrap();
            let theirs = fs::read(benchmark().join(split).join(&name)).unwrap();
            let header = |b: &[u8]| String::from_utf8_lossy(&b[10..128]).replace(", }", "}").replace(' ', "");
            assert_eq!(header(&ours), header(&theirs), "{split}/{name}: dtype or shape");
            assert!(ours[128..] == theirs[128..], "{split}/{name}: values differ");
        }
        assert_eq!(read_split(&dir.join(split)).unwrap(), read_split(&benchmark().join(split)).unwrap());
    }
    assert_eq!(fs::read_to_string(dir.join("identifiers.json")).unwrap(), "[\"<blank>\"]");
}

/// Writes the benchmark as the CSV release into `dir`.
fn export_csv(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for split in ["train", "test"] {
        let data = read_split(&benchmark().join(split)).unwrap();
        write_csv(&dir.join(format!("{split}.csv")), &data, "maze-30x30-hard-1k").unwrap();
    }
}

/// The first `n` examples of a benchmark split.
fn head(split: &str, n: usize) -> SplitData {
    let data = read_split(&benchmark().join(split)).unwrap();
    SplitData::from_examples(data.seq_len, (0..n).map(|i| (data.input(i).to_vec(), data.label(i).to_vec())).collect())
}

#[test]
fn from_npy_gives_the_benchmark_arrays() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let res = trm(
        &["prepare-dataset", "--from", benchmark().to_str().unwrap(), "--out", out.to_str().unwrap()],
        tmp.path(),
        None,
    );
    assert!(res.status.success(), "{}", stderr(&res));
    let text = String::from_utf8_lossy(&res.stdout);
    assert!(text.contains("train: 1000 mazes (30x30), 1000 labels follow the benchmark rule"), "{text}");
    assert_equals_benchmark(&out);
}

#[test]
fn from_csv_gives_the_benchmark_arrays() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("csv");
    export_csv(&csv);
    let out = tmp.path().join("out");
    let res =
        trm(&["prepare-dataset", "--from", csv.to_str().unwrap(), "--out", out.to_str().unwrap()], tmp.path(), None);
    assert!(res.status.success(), "{}", stderr(&res));
    assert_equals_benchmark(&out);
}

fn release_files() -> Vec<(String, Vec<u8>)> {
    let tmp = tempfile::tempdir().unwrap();
    export_csv(tmp.path());
    ["train.csv", "test.csv"].iter().map(|n| (n.to_string(), fs::read(tmp.path().join(n)).unwrap())).collect()
}

#[test]
fn downloads_through_hf_endpoint_into_the_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let files = release_files();
    let support::LocalHub { endpoint, requests } = serve_hub(REPO_PATH, files.clone(), false);
    let out = tmp.path().join("out");
    let res = trm(&["prepare-dataset", "--out", out.to_str().unwrap()], tmp.path(), Some(&endpoint));
    assert!(res.status.success(), "{}", stderr(&res));
    assert_equals_benchmark(&out);
    assert_eq!(requests.load(Ordering::SeqCst), 4, "resolve and redirect target, for each of 2 files");

    // The standard cache layout under HF_HOME/hub, as huggingface_hub writes it.
    let repo = tmp.path().join("hub/datasets--sapientinc--maze-30x30-hard-1k");
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), HUB_COMMIT);
    for (name, body) in &files {
        let cached = repo.join("snapshots").join(HUB_COMMIT).join(name);
        assert_eq!(&fs::read(&cached).unwrap(), body);
        assert!(repo.join("blobs").join(sha256_hex(body)).is_file());
    }

    // A second run finds the cache and does not go online, even with the hub gone.
    let out2 = tmp.path().join("out2");
    let res = trm(&["prepare-dataset", "--out", out2.to_str().unwrap()], tmp.path(), Some("http://127.0.0.1:9"));
    assert!(res.status.success(), "{}", stderr(&res));
    assert_eq!(requests.load(Ordering::SeqCst), 4);
    assert_equals_benchmark(&out2);
}

#[test]
fn offline_hub_points_to_from() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, note, release.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = tmp.path().join("out");
    let res = trm(
        &["prepare-dataset", "--out", out.to_str().unwrap()],
        tmp.path(),
        Some(&format!("http://127.0.0.1:{port}")),
    );
    assert_error(&res, &["cannot reach the Hugging Face hub at http://127.0.0.1:", "--from DIR", "train.csv"]);
    assert_nothing_left(&out);
    assert!(
        !tmp.path()
            .join("hub/datasets--sapientinc--maze-30x30-hard-1k/blobs")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
}

#[test]
fn hub_errors_are_named_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // Only test.csv exists on this hub.
    let endpoint = serve_hub(REPO_PATH, vec![("test.csv".into(), b"x".to_vec())], false).endpoint;
    let res = trm(&["prepare-dataset", "--out", out.to_str().unwrap()], tmp.path(), Some(&endpoint));
    assert_error(&res, &["downloading train.csv", "not found (HTTP 404)"]);
    assert_nothing_left(&out);

    // Bytes that do not match the etag's SHA-256 are refused and not cached.
    let endpoint = serve_hub(REPO_PATH, release_files(), true).endpoint;
    let res = trm(&["prepare-dataset", "--out", out.to_str().unwrap()], tmp.path(), Some(&endpoint));
    assert_error(&res, &["downloading train.csv", "SHA-256"]);
    assert_nothing_left(&out);
    let snapshots = tmp.path().join("hub/datasets--sapientinc--maze-30x30-hard-1k/snapshots");
    assert!(!snapshots.join(HUB_COMMIT).join("train.csv").exists());
}

#[test]
fn aug_gives_the_reference_layout_and_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (train, test) = (head("train", 20), head("test", 5));
    write_dataset(&src, &[("train", &train), ("test", &test)]).unwrap();
    let out = tmp.path().join("out");
    let res = trm(
        &["prepare-dataset", "--from", src.to_str().unwrap(), "--out", out.to_str().unwrap(), "--aug"],
        tmp.path(),
        None,
    );
    assert!(res.status.success(), "{}", stderr(&res));
    assert!(stderr(&res).contains("augmentation breaks the benchmark's label tie-break rule"), "{}", stderr(&res));
    let aug = read_split(&out.join("train")).unwrap();
    assert_eq!(aug.len(), 160);
    assert_eq!(aug.group_indices, (0..=20).map(|g| g * 8).collect::<Vec<i32>>());
    assert_eq!(aug.puzzle_indices, (0..=160).collect::<Vec<i32>>());
    for m in [0, 7, 19] {
        let (input, label) = train.grids(m).unwrap();
        for t in 0..8u8 {
            let (vi, vl) = aug.grids(m * 8 + t as usize).unwrap();
            assert_eq!((vi, vl), (dihedral_transform(&input, t), dihedral_transform(&label, t)), "maze {m} view {t}");
        }
    }
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("train/dataset.json")).unwrap()).unwrap();
    assert_eq!(meta["total_groups"], 20);
    assert_eq!(meta["mean_puzzle_examples"], 1.0);
    assert_eq!(read_split(&out.join("test")).unwrap(), test, "the test split is never augmented");

    // Augmenting an augmented set is refused.
    let again = tmp.path().join("again");
    let res = trm(
        &["prepare-dataset", "--from", out.to_str().unwrap(), "--out", again.to_str().unwrap(), "--aug"],
        tmp.path(),
        None,
    );
    assert_error(&res, &["already augmented"]);
    assert_nothing_left(&again);
}

/// Writes a small CSV release into `dir` whose test.csv has `bad` as data row 3.
fn csv_with_bad_row(dir: &Path, bad: &str) {
    fs::create_dir_all(dir).unwrap();
    write_csv(&dir.join("train.csv"), &head("train", 4), "x").unwrap();
    write_csv(&dir.join("test.csv"), &head("test", 4), "x").unwrap();
    let text = fs::read_to_string(dir.join("test.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[3] = bad.to_string();
    fs::write(dir.join("test.csv"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn bad_input_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out_s = out.to_str().unwrap();
    let real = read_split(&benchmark().join("test")).unwrap();
    let (q, a) = real.grids(0).unwrap();
    let (q, a) = (q.to_row_major(), a.to_row_major());

    let missing = tmp.path().join("missing");
    assert_error(
        &trm(&["prepare-dataset", "--from", missing.to_str().unwrap(), "--out", out_s], tmp.path(), None),
        &["no such directory"],
    );
    assert_nothing_left(&out);

    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert_error(
        &trm(&["prepare-dataset", "--from", empty.to_str().unwrap(), "--out", out_s], tmp.path(), None),
        &["found neither"],
    );
    assert_nothing_left(&out);

    let cases = [
        (format!("x,{},{},1", q.replacen(' ', "x", 1), a), "question: unknown character 'x'"),
        (format!("x,{},{},1", q, &a[..899]), "answer has 899 characters but the question has 900"),
        (format!("x,{},{},1", q.replace('S', " "), a.replace('S', " ")), "question: no start 'S'"),
        (format!("x,{},{},1", q.replacen(' ', "G", 1), a.replacen(' ', "G", 1)), "2 goals 'G'"),
        (format!("x,{}", q), "expected 4 fields"),
        (format!("x,{},{},1", q, q), "answer's 'o' cells do not form one path"),
        (format!("x,{},{},1", q, a.replacen(' ', "#", 1)), "not consistent with the question"),
    ];
    for (i, (bad, expected)) in cases.iter().enumerate() {
        let src = tmp.path().join(format!("csv{i}"));
        csv_with_bad_row(&src, bad);
        let res = trm(&["prepare-dataset", "--from", src.to_str().unwrap(), "--out", out_s], tmp.path(), None);
        assert_error(&res, &["test.csv row 3 (line 4): ", expected]);
        assert_nothing_left(&out);
    }

    // An unsolvable maze: wall in every neighbour of S (the answer keeps its path cells).
    let cols = 30;
    let s = q.find('S').unwrap();
    let mut walled: Vec<char> = q.chars().collect();
    let mut walled_answer: Vec<char> = a.chars().collect();
    for n in [
        s.checked_sub(cols),
        Some(s + cols).filter(|&n| n < 900),
        (s % cols > 0).then(|| s - 1),
        (s % cols < cols - 1).then(|| s + 1),
    ]
    .into_iter()
    .flatten()
    {
        if walled[n] != 'G' {
            walled[n] = '#';
            walled_answer[n] = '#';
        }
    }
    let bad = format!("x,{},{},1", walled.iter().collect::<String>(), walled_answer.iter().collect::<String>());
    let src = tmp.path().join("unsolvable");
    csv_with_bad_row(&src, &bad);
    let res = trm(&["prepare-dataset", "--from", src.to_str().unwrap(), "--out", out_s], tmp.path(), None);
    assert_error(&res, &["test.csv row 3 (line 4): unsolvable maze"]);
    assert_nothing_left(&out);

    // npy with the wrong shape: labels of a different length.
    let npy = tmp.path().join("npy");
    write_dataset(&npy, &[("train", &head("train", 3)), ("test", &head("test", 2))]).unwrap();
    fs::copy(npy.join("train/all__labels.npy"), npy.join("test/all__labels.npy")).unwrap();
    let res = trm(&["prepare-dataset", "--from", npy.to_str().unwrap(), "--out", out_s], tmp.path(), None);
    assert_error(&res, &["all__inputs.npy is (2, 900) but all__labels.npy is (3, 900)"]);
    assert_nothing_left(&out);

    // An existing non-empty output directory is refused and kept as it was.
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep.txt"), "mine").unwrap();
    let res = trm(&["prepare-dataset", "--from", benchmark().to_str().unwrap(), "--out", out_s], tmp.path(), None);
    assert_error(&res, &["already exists and is not empty"]);
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
}

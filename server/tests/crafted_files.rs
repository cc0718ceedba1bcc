//! Crafted files (issue 13): every command that reads npy, CSV, safetensors, `torch.save` or
//! config files refuses sizes the file cannot back with a one-line error and a clean exit,
//! never a panic, an abort or a huge allocation.

use std::fs;
use std::path::{Path, PathBuf};

use trm_shared::dataset::{SplitData, write_dataset};
use trm_shared::maze::{Grid, label};

mod support;

/// A 6x6 maze, the size of the fixture model.
const MAZE: &str = "S     \n #### \n    # \n ## # \n  #   \n    #G\n";

/// [`MAZE`] as a text file in `dir`, for `--inputs`.
fn maze_file(dir: &Path) -> String {
    let path = dir.join("m.txt");
    fs::write(&path, MAZE).unwrap();
    path.display().to_string()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures/trm").join(name).display().to_string()
}

/// Runs `trm args` and checks a clean failure: an exit code (no signal), no panic, an
/// `error: ` first line naming `part`.
fn fails_cleanly(args: &[&str], part: &str) {
    let out = support::trm().args(args).env("RUST_LOG", "off").output().expect("run trm");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some(), "killed by a signal ({:?}): {args:?}\n{err}", out.status);
    assert!(!out.status.success(), "accepted: {args:?}");
    assert!(!err.contains("panicked"), "panicked: {args:?}\n{err}");
    let first = err.lines().next().unwrap_or("");
    assert!(first.starts_with("error: ") && first.contains(part), "{part:?} missing for {args:?}: {err}");
}

/// An npy v1 file with this `descr` and `shape` (Python literals) and data.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
    [&b"\x93NUMPY\x01\x00"[..], &(dict.len() as u16).to_le_bytes(), dict.as_bytes(), data].concat()
}

/// Crafted npy files, each with the words of the error it must give.
fn bad_npys() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        (npy("|u1", "(4611686018427387904, 1)", &[0; 64]), "needs 4611686018427387904 bytes of data, the file holds 64"),
        (npy("<i8", "(4294967296, 4294967296)", &[]), "too large to address"),
        (npy("|u1", "(-1, 36)", &[]), "negative dimension -1"),
        (npy("|u1", "()", &[3]), "expected a 2-D integer array, found shape []"),
        ([&b"\x93NUMPY\x02\x00"[..], &u32::MAX.to_le_bytes()].concat(), "over the limit"),
        (npy("|u1", "(2, 36)", &[3; 40]), "needs 72 bytes of data, the file holds 40"),
    ]
}

/// A dataset directory with small `train` and `test` splits of [`MAZE`].
fn dataset(dir: &Path) -> PathBuf {
    let g = Grid::parse_lines(MAZE).unwrap();
    let split = SplitData::from_examples(36, vec![(g.tokens(), label(&g).unwrap().tokens())]);
    let out = dir.join("data");
    write_dataset(&out, &[("train", &split), ("test", &split)]).unwrap();
    out
}

/// A zip of `(name, data)` entries, every one marked with compression `method` (0: stored).
fn zip(files: &[(String, Vec<u8>)], method: u16) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in files {
        let (m, size, n) = (method.to_le_bytes(), (data.len() as u32).to_le_bytes(), (name.len() as u16).to_le_bytes());
        let at = (out.len() as u32).to_le_bytes();
        central.extend([&b"PK\x01\x02\x14\x00\x14\x00\x00\x00"[..], &m, &[0; 8], &size, &size, &n, &[0; 12], &at, name.as_bytes()].concat());
        out.extend([&b"PK\x03\x04\x14\x00\x00\x00"[..], &m, &[0; 8], &size, &size, &n, &[0, 0], name.as_bytes(), data].concat());
    }
    let count = (files.len() as u16).to_le_bytes();
    let (cd_len, cd_at) = ((central.len() as u32).to_le_bytes(), (out.len() as u32).to_le_bytes());
    let end = [&b"PK\x05\x06\x00\x00\x00\x00"[..], &count, &count, &cd_len, &cd_at, &[0, 0]].concat();
    [out, central, end].concat()
}

/// A `torch.save` file holding `pickle` as its `data.pkl`, with `extra` entries.
fn torch_file(pickle: Vec<u8>, extra: Vec<(String, Vec<u8>)>, method: u16) -> Vec<u8> {
    zip(&[vec![("archive/data.pkl".to_string(), pickle)], extra].concat(), method)
}

/// The pickle of `{embed_tokens: tensor(size, stride)}` over a storage of 4 floats.
fn tensor_pickle(size: &[i64], stride: &[i64]) -> Vec<u8> {
    let int = |v: i64| [&b"J"[..], &(v as i32).to_le_bytes()].concat();
    let ints = |vs: &[i64]| [&b"("[..], &vs.iter().flat_map(|&v| int(v)).collect::<Vec<u8>>(), b"t"].concat();
    let text = |s: &str| [&b"X"[..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat();
    let head = [&b"\x80\x02}("[..], &text("model.inner.embed_tokens.embedding_weight"), b"ctorch._utils\n_rebuild_tensor_v2\n(("].concat();
    let storage = [text("storage"), b"ctorch\nFloatStorage\n".to_vec(), text("0"), text("cpu"), int(4)].concat();
    [head, storage, b"tQ".to_vec(), int(0), ints(size), ints(stride), b"tRu.".to_vec()].concat()
}

/// Crafted `torch.save` files, each with the words of the error it must give.
fn bad_torch_files() -> Vec<(Vec<u8>, &'static str)> {
    let storage = || vec![("archive/data/0".to_string(), vec![0u8; 16])];
    let tensor = |size: &[i64], stride: &[i64]| torch_file(tensor_pickle(size, stride), storage(), 0);
    // ~1 MB of TUPLE1 around an empty list, and a tuple doubled 60 times through the memo.
    let deep = [&b"\x80\x02]"[..], &vec![0x85; 1 << 20], b"."].concat();
    let memo = [&b"\x80\x02]q\x00"[..], &b"h\x00h\x00\x86q\x00".repeat(60), b"."].concat();
    let many: Vec<(String, Vec<u8>)> = (0..20_000).map(|i| (format!("archive/data/{i}"), Vec::new())).collect();
    let good = tensor(&[2, 2], &[2, 1]);
    vec![
        (tensor(&[1 << 30, 1 << 30], &[0, 0]), "has 1152921504606846976 elements, its storage 4"),
        (tensor(&[-1, 4], &[4, 1]), "a tensor size has a negative entry -1"),
        (tensor(&[4], &[1]), "embed_tokens.embedding_weight must have 2 axes, found shape [4]"),
        (tensor(&[], &[]), "embed_tokens.embedding_weight must have 2 axes, found shape []"),
        (torch_file(deep, Vec::new(), 0), "nest more than 64 deep"),
        (torch_file(memo, Vec::new(), 0), "builds more than"),
        (torch_file(tensor_pickle(&[2, 2], &[2, 1]), many, 0), "20001 entries, over the limit of 4096"),
        (torch_file(tensor_pickle(&[2, 2], &[2, 1]), storage(), 8), "is compressed (method 8)"),
        (good[..good.len() / 2].to_vec(), "no end of central directory"),
    ]
}

/// A safetensors file of F32 tensors `(name, shape, data bytes)`.
fn safetensors(tensors: &[(&str, &str, usize)]) -> Vec<u8> {
    let mut at = 0;
    let entries: Vec<String> = tensors
        .iter()
        .map(|(name, shape, len)| {
            at += len;
            format!("\"{name}\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[{},{at}]}}", at - len)
        })
        .collect();
    let header = format!("{{{}}}", entries.join(","));
    [&(header.len() as u64).to_le_bytes()[..], header.as_bytes(), &vec![0; at]].concat()
}

#[test]
fn predict_refuses_crafted_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = maze_file(tmp.path());
    let config = fixture("attn_all_config.yaml");
    let embed = "model.inner.embed_tokens.embedding_weight";
    let mut files = bad_torch_files();
    files.push((safetensors(&[(embed, "[1099511627776,0]", 0)]), "vocab_size must be at most 65536, found 1099511627776"));
    files.push((safetensors(&[(embed, "[]", 4)]), "must have 2 axes, found shape []"));
    for (k, (bytes, part)) in files.into_iter().enumerate() {
        let ckpt = tmp.path().join(format!("step_{k}"));
        fs::write(&ckpt, bytes).unwrap();
        let args: &[&str] = &["predict", "--checkpoint", ckpt.to_str().unwrap(), "--config", &config, "--inputs", &inputs];
        fails_cleanly(args, part);
    }
}

#[test]
fn predict_refuses_crafted_configs_and_npy_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = maze_file(tmp.path());
    let ckpt = fixture("attn_step_1");
    let configs = [
        ("c.yaml", "hidden_size: 1099511627776\nnum_heads: 2\n", "hidden_size must be at most 4096, found 1099511627776"),
        ("c.yaml", "L_layers: 100000000\n", "L_layers must be at most 64"),
        ("c.yaml", "seq_len: 4294967296\n", "seq_len must be at most 65536"),
        ("c.yaml", "vocab_size: 4294967296\n", "vocab_size must be at most 65536"),
        ("c.yaml", "expansion: 1.0e30\n", "expansion must be in (0, 16]"),
        ("c.toml", "[arch]\nhidden_size = 64\nnum_heads = 2\n[data]\nsize = 4294967296\n", "[data] size 4294967296 is too large"),
        ("c.toml", "[arch]\nmixer = \"local\"\nhidden_size = 1000000\n", "hidden_size must be in 1..=1024"),
    ];
    for (k, (name, text, part)) in configs.into_iter().enumerate() {
        let config = tmp.path().join(format!("{k}{name}"));
        fs::write(&config, text).unwrap();
        let args: &[&str] = &["predict", "--checkpoint", &ckpt, "--config", config.to_str().unwrap(), "--inputs", &inputs];
        fails_cleanly(args, part);
    }
    let config = fixture("attn_all_config.yaml");
    for (k, (bytes, part)) in bad_npys().into_iter().enumerate() {
        let npy_path = tmp.path().join(format!("in_{k}.npy"));
        fs::write(&npy_path, bytes).unwrap();
        let args: &[&str] = &["predict", "--checkpoint", &ckpt, "--config", &config, "--inputs", npy_path.to_str().unwrap()];
        fails_cleanly(args, part);
        // The same file as puzzle identifiers (1-D expected: the rank message may differ).
        let ids = npy_path.to_str().unwrap();
        let args: &[&str] = &["predict", "--checkpoint", &ckpt, "--config", &config, "--inputs", &inputs, "--puzzle-identifiers", ids];
        fails_cleanly(args, "puzzle identifiers");
    }
}

#[test]
fn dataset_commands_refuse_crafted_npy_files() {
    let (ckpt, config) = (fixture("attn_step_1"), fixture("attn_all_config.yaml"));
    for (k, (bytes, part)) in bad_npys().into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let data = dataset(tmp.path());
        fs::write(data.join("train/all__inputs.npy"), &bytes).unwrap();
        fs::write(data.join("test/all__labels.npy"), &bytes).unwrap();
        let d = data.to_str().unwrap();
        fails_cleanly(&["dataset", "stats", d], part);
        fails_cleanly(&["eval", "--checkpoint", &ckpt, "--config", &config, "--data", d], part);
        let out = tmp.path().join(format!("out{k}"));
        fails_cleanly(&["prepare-dataset", "--from", d, "--out", out.to_str().unwrap()], part);
        assert!(!out.exists(), "nothing written for a bad source");
    }
    // An index array with a huge declared length.
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    fs::write(data.join("test/all__group_indices.npy"), npy("<i4", "(1152921504606846976,)", &[0; 8])).unwrap();
    fails_cleanly(&["dataset", "stats", data.to_str().unwrap()], "the file holds 8");
}

#[test]
fn prepare_dataset_refuses_crafted_csv_files() {
    let g = Grid::parse_lines(MAZE).unwrap();
    let good = format!("source,question,answer,rating\nx,{},{},1\n", g.to_row_major(), label(&g).unwrap().to_row_major());
    let cases = [
        (format!("source,question,answer,rating\n{}", "x".repeat(300_000)), "line 2 is longer than"),
        (format!("source,question,answer,rating\nx,{},S,1\n", "S".repeat(70_000)), "question has 70000 characters"),
        ("source,question,answer,rating\nx,\"unterminated".to_string(), "train.csv"),
    ];
    for (text, part) in cases {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("train.csv"), &text).unwrap();
        fs::write(tmp.path().join("test.csv"), &good).unwrap();
        let out = tmp.path().join("out");
        fails_cleanly(&["prepare-dataset", "--from", tmp.path().to_str().unwrap(), "--out", out.to_str().unwrap()], part);
    }
}

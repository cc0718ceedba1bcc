//! Fuzz targets for every parser of untrusted input in this crate, run by proptest on the
//! stable toolchain (cargo-fuzz needs nightly).
//!
//! Each target feeds its parser two kinds of input: arbitrary bytes, and a valid seed file
//! mutated the way fuzzers do (bytes flipped, set to boundary values, ranges cut out,
//! repeated, or spliced in). A target passes when the parser returns, `Ok` or `Err`: a panic,
//! an abort (an allocation the size a header declares) or a stack overflow fails it.
//!
//! `cargo test -p trm-shared fuzz_` runs each briefly (CI does); `scripts/fuzz.sh SECONDS`
//! runs them with fresh seeds until the time is up. proptest keeps every failing input,
//! shrunk, in `proptest-regressions/fuzz.txt`, and replays those first on every later run:
//! an input that ever crashed a parser stays a regression test.

use proptest::prelude::*;

use crate::dataset::{DatasetMetadata, read_csv_from};
use crate::maze::Grid;
use crate::model::checkpoint::{HostTensor, StateDict};
use crate::model::config::TrmConfig;
use crate::model::local::LocalConfig;

/// One fuzzer mutation of a seed: `(kind, position, value, length)`, applied modulo its size.
type Mutation = (u8, usize, u8, usize);

fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(kind, at, value, len) in mutations {
        if out.is_empty() {
            out.push(value);
            continue;
        }
        let at = at % out.len();
        let len = 1 + len % 16.min(out.len() - at);
        match kind % 7 {
            0 => out[at] ^= 1 << (value % 8),
            1 => out[at] = [0, 1, 0x7f, 0x80, 0xff][usize::from(value) % 5],
            2 => out[at] = value,
            3 => drop(out.drain(at..at + len)),
            4 => {
                let part = out[at..at + len].to_vec();
                out.splice(at..at, part);
            }
            5 => out.truncate(at),
            // A little-endian u32/u64 length field set huge or zero.
            _ => {
                let big: [u8; 8] = if value % 2 == 0 { u64::MAX.to_le_bytes() } else { (1u64 << 40).to_le_bytes() };
                for (k, b) in big.iter().enumerate().take(out.len() - at) {
                    out[at + k] = if value % 3 == 0 { 0 } else { *b };
                }
            }
        }
    }
    out
}

/// Inputs for a target: arbitrary bytes, or one of `seeds` mutated.
fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        4 => (0..n, proptest::collection::vec(any::<Mutation>(), 1..8)).prop_map(move |(i, m)| mutate(&seeds[i], &m)),
    ]
}

fn small_state_dict() -> StateDict {
    let mut sd = StateDict::default();
    for (name, shape) in [("a.weight", vec![2usize, 3]), ("b", vec![4]), ("c.scalar", vec![1])] {
        let n = shape.iter().product();
        sd.tensors.insert(name.into(), HostTensor { shape, values: (0..n).map(|i| i as f32 * 0.5).collect(), stored_dtype: "F32".into() });
    }
    sd
}

fn checkpoint_seeds() -> Vec<Vec<u8>> {
    let fixture = |name: &str| std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trm").join(name));
    let mut seeds = vec![
        small_state_dict().to_safetensors_bytes("", &[]).expect("a small state dict serialises"),
        small_state_dict().to_safetensors_bytes("", &["b"]).expect("a small state dict serialises"),
        crate::model::torch::tests::torch_file(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[("w", &[2, 3], &[3, 1]), ("v", &[3], &[2])]),
    ];
    seeds.extend(["attn_step_1", "bf16_step_1"].iter().filter_map(|n| fixture(n).ok()));
    seeds
}

fn npy_seed(rows: usize, cols: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend((0..rows * cols).map(|i| (i % 6) as u8));
    out
}

fn maze_seed() -> String {
    "#####\n#S..#\n#.#.#\n#..G#\n#####\n".into()
}

fn csv_seed() -> Vec<u8> {
    let maze = "#####S..##.#.##..G######";
    let label = "#####S..##.#.##..G######";
    format!("source,question,answer,rating\nx,{maze}#,{label}#,3\nx,{maze}#,{label}#,4\n").into_bytes()
}

const YAML_SEED: &str = "arch:\n  name: recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1\n  hidden_size: 64\n  num_heads: 2\n  expansion: 4\n  L_layers: 2\n  H_cycles: 3\n  L_cycles: 6\n  halt_max_steps: 16\n  puzzle_emb_ndim: ${.hidden_size}\n  pos_encodings: rope\n";

const TOML_SEED: &str = "[arch]\nhidden_size = 64\nnum_heads = 2\nexpansion = 4.0\nL_layers = 2\nH_cycles = 3\nL_cycles = 6\nhalt_max_steps = 16\npuzzle_emb_ndim = 64\n[data]\nsize = 7\n";

const LOCAL_TOML_SEED: &str = "[arch]\nmixer = \"local\"\nhidden_size = 32\nexpansion = 4.0\nL_layers = 2\nH_cycles = 1\nL_cycles = 7\nhalt_max_steps = 256\n";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

proptest! {
    #[test]
    fn fuzz_checkpoints(bytes in inputs(checkpoint_seeds())) {
        let _ = StateDict::from_bytes(&bytes, "fuzz");
    }

    #[test]
    fn fuzz_npy(bytes in inputs(vec![npy_seed(3, 4), npy_seed(1, 900)])) {
        let _ = crate::dataset::npy::read(&bytes[..], bytes.len() as u64, 2);
    }

    #[test]
    fn fuzz_csv(bytes in inputs(vec![csv_seed()])) {
        let _ = read_csv_from(&bytes[..], "fuzz");
    }

    #[test]
    fn fuzz_maze_text(bytes in inputs(vec![maze_seed().into_bytes(), b"S....G".to_vec(), b"#S#\n#G#".to_vec()])) {
        let t = text(&bytes);
        let _ = Grid::parse_any(&t);
        let _ = Grid::parse_square(&t);
        let _ = Grid::parse_lines(&t);
        let _ = Grid::parse_row_major(&t, 5, 5);
    }

    #[test]
    fn fuzz_configs(bytes in inputs(vec![YAML_SEED.into(), TOML_SEED.into(), LOCAL_TOML_SEED.into()])) {
        let t = text(&bytes);
        let _ = TrmConfig::from_yaml_str(&t);
        let _ = TrmConfig::from_toml_str(&t);
        let _ = LocalConfig::from_toml_str(&t);
        let _ = crate::model::load::ModelConfig::parse("config.toml", &t);
        let _ = crate::model::load::ModelConfig::parse("all_config.yaml", &t);
    }

    #[test]
    fn fuzz_dataset_metadata(bytes in inputs(vec![serde_json::to_vec(&crate::dataset::SplitData::from_examples(4, vec![(vec![1, 2, 3, 4], vec![1, 2, 5, 4])]).metadata()).expect("metadata serialises")])) {
        let _ = serde_json::from_slice::<DatasetMetadata>(&bytes);
    }
}

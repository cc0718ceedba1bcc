//! The same model gives the same answers on the CPU backend (Flex) and on wgpu: a small random
//! model and the reference fixture `attn` (loaded through `trm_server::solve::load_model`, as
//! `trm predict` loads it), run through every ACT step on both; and the committed default
//! model, the size-general one, on freshly generated mazes of several sizes (each on its own
//! grid), for as many ACT steps as a 30x30 maze takes. Step 0 must agree to 1e-3 in f32
//! (logits and q_halt), and the argmax answer of every cell must be the same after every step.
//!
//! Needs `--features wgpu`. Without a wgpu adapter (no GPU, no lavapipe) the parity tests
//! print "skipped: no wgpu adapter (...)" and return: burn would panic on a worker thread.

#![cfg(feature = "wgpu")]

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Flex, Wgpu};
use burn::prelude::{Backend, Int, Tensor, TensorData};
use trm_server::solve::{AnyModel, load_model};
use trm_server::backend::wgpu_probe::{default_adapter, describe};
use trm_shared::generate::{GenerateConfig, generate_splits};
use trm_shared::model::{GridShape, LocalTrm, PredictOptions, Predictions, RandomInit, StateDict, Trm, TrmConfig, predict};

mod support;

/// The largest step-0 difference allowed between the backends, logits and q_halt alike.
const STEP0_TOLERANCE: f32 = 1e-3;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// burn's default wgpu device, or `None` (and a "skipped" line) when wgpu finds no adapter.
fn wgpu_device() -> Option<WgpuDevice> {
    match default_adapter() {
        Ok(info) => {
            eprintln!("wgpu adapter: {}", describe(&info));
            Some(WgpuDevice::DefaultDevice)
        }
        Err(e) => {
            println!("skipped: {e}");
            None
        }
    }
}

/// Every ACT step of `model` on `tokens`, logits kept, in one batch.
fn run<B: Backend>(model: &Trm<B>, tokens: &[u8], ids: &[i32], device: &B::Device) -> Predictions {
    let opts = PredictOptions {
        steps: model.config().halt_max_steps,
        batch_size: ids.len(),
        stop_when_all_halt: false,
        keep_logits: true,
    };
    predict(model, tokens, ids, &opts, device, |_| {}).expect("inference")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Asserts the two backends' predictions agree; prints per step (max |Δlogit|, max |Δq_halt|,
/// cells whose answer differs) so drift in later steps shows in the test output.
fn assert_same(case: &str, cpu: &Predictions, gpu: &Predictions) {
    let (cpu_logits, gpu_logits) = (cpu.logits.as_ref().expect("logits"), gpu.logits.as_ref().expect("logits"));
    let steps = cpu.answers.len();
    assert!(steps > 0 && steps == gpu.answers.len(), "{case}: {steps} vs {} steps", gpu.answers.len());
    let per_step: Vec<(f32, f32, usize)> = (0..steps)
        .map(|s| {
            let differing = cpu.answers[s].iter().zip(&gpu.answers[s]).filter(|(a, b)| a != b).count();
            (max_abs_diff(&cpu_logits[s], &gpu_logits[s]), max_abs_diff(&cpu.q_halt[s], &gpu.q_halt[s]), differing)
        })
        .collect();
    eprintln!("{case}: {} rows x {} cells; per step (max|Δlogit|, max|Δq_halt|, differing cells) = {per_step:?}", cpu.n, cpu.seq_len);
    let (dl, dq, _) = per_step[0];
    assert!(dl <= STEP0_TOLERANCE && dq <= STEP0_TOLERANCE, "{case} step 0: max |Δlogit| {dl}, max |Δq_halt| {dq}");
    for (s, (_, _, differing)) in per_step.iter().enumerate() {
        assert_eq!(*differing, 0, "{case} step {s}: {differing} of {} cells answered differently", cpu.n * cpu.seq_len);
    }
}

/// Runs the same inputs through both models, asserts they agree ([`assert_same`]) and returns
/// the CPU's predictions.
fn agree(case: &str, cpu_model: &Trm<Flex>, gpu_model: &Trm<Wgpu>, tokens: &[u8], ids: &[i32], gpu: &WgpuDevice) -> Predictions {
    let cpu = run(cpu_model, tokens, ids, &Default::default());
    let wgpu = run(gpu_model, tokens, ids, gpu);
    assert_same(case, &cpu, &wgpu);
    cpu
}

/// A checkpoint and config loaded on both backends the way `trm predict` loads them.
fn load_both(checkpoint: &Path, config: &Path, seq_len: usize, gpu: &WgpuDevice) -> (AnyModel<Flex>, AnyModel<Wgpu>) {
    let cpu = load_model::<Flex>(checkpoint, config, seq_len, &Default::default()).expect("cpu model");
    let wgpu = load_model::<Wgpu>(checkpoint, config, seq_len, gpu).expect("wgpu model");
    (cpu, wgpu)
}

/// A reference model of [`load_both`].
fn reference<B: Backend>(model: AnyModel<B>) -> Trm<B> {
    match model {
        AnyModel::Reference(m) => m,
        AnyModel::Local(_) => panic!("expected a reference model, got the size-general one"),
    }
}

/// A size-general model of [`load_both`].
fn local<B: Backend>(model: AnyModel<B>) -> LocalTrm<B> {
    match model {
        AnyModel::Local(m) => m,
        AnyModel::Reference(_) => panic!("expected the size-general model, got a reference one"),
    }
}

/// `steps` ACT steps of the size-general model on `n` mazes of `grid` (row-major `tokens`),
/// every step's logits `[n * cells * vocab]`, argmax answers and q_halt, whatever the model's
/// halting says (so that the backends are compared step for step).
fn run_local<B: Backend>(model: &LocalTrm<B>, tokens: &[u8], grid: GridShape, steps: usize, device: &B::Device) -> Predictions {
    let cells = grid.cells();
    let n = tokens.len() / cells;
    let ids: Vec<i32> = tokens.iter().map(|&t| i32::from(t)).collect();
    let x = model.input_embeddings(Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [n, cells]), device), None);
    let mut carry = model.initial_carry(n, cells, None);
    let (mut answers, mut q_halt, mut logits): (Vec<Vec<u8>>, Vec<Vec<f32>>, Vec<Vec<f32>>) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..steps {
        let (next, out) = model.step(carry, &x, grid, None, false);
        carry = next;
        answers.push(out.logits.clone().argmax(2).into_data().convert::<i64>().iter::<i64>().map(|t| t as u8).collect());
        logits.push(out.logits.into_data().convert::<f32>().to_vec::<f32>().expect("logits"));
        q_halt.push(out.q_halt.into_data().convert::<f32>().to_vec::<f32>().expect("q_halt"));
    }
    Predictions {
        n,
        seq_len: cells,
        vocab_size: model.config().vocab_size,
        answers,
        q_halt,
        logits: Some(logits),
        stopped_early_at: vec![None; n],
    }
}

#[test]
fn random_model_agrees() {
    let Some(gpu) = wgpu_device() else { return };
    let cfg = TrmConfig {
        hidden_size: 32,
        num_heads: 2,
        l_layers: 2,
        h_cycles: 2,
        l_cycles: 2,
        halt_max_steps: 4,
        puzzle_emb_ndim: 32,
        puzzle_emb_len: 1,
        seq_len: Some(36),
        vocab_size: Some(6),
        num_puzzle_identifiers: Some(3),
        ..TrmConfig::default()
    };
    let cpu_model = Trm::<Flex>::build(&cfg, &mut RandomInit::new(11), &Default::default()).expect("cpu model");
    let gpu_model = Trm::<Wgpu>::build(&cfg, &mut RandomInit::new(11), &gpu).expect("wgpu model");
    // Tokens 1..=5 in an irregular pattern; one row per puzzle id.
    let tokens: Vec<u8> = (0..3 * 36u32).map(|i| 1 + ((i * 7 + i / 5) % 5) as u8).collect();
    let ids = [0, 1, 2];
    agree("random", &cpu_model, &gpu_model, &tokens, &ids, &gpu);
}

#[test]
fn reference_fixture_agrees() {
    let Some(gpu) = wgpu_device() else { return };
    let dir = repo("shared/tests/fixtures/trm");
    let bytes = std::fs::read(dir.join("attn_outputs.safetensors")).expect("fixture outputs");
    let sd = StateDict::from_safetensors_bytes(&bytes, "attn").expect("fixture outputs").tensors;
    // The reference's own inputs: 3 rows of 36 tokens, puzzle ids 0, 1, 2 (stored as floats).
    let tokens: Vec<u8> = sd["inputs"].values.iter().map(|&v| v as u8).collect();
    let ids: Vec<i32> = sd["puzzle_identifiers"].values.iter().map(|&v| v as i32).collect();
    let (checkpoint, config) = (dir.join("attn_step_1"), dir.join("attn_all_config.yaml"));
    let (cpu_model, gpu_model) = load_both(&checkpoint, &config, 36, &gpu);
    agree("attn fixture", &reference(cpu_model), &reference(gpu_model), &tokens, &ids, &gpu);
}

#[test]
fn default_model_solves_mazes_of_several_sizes_alike() {
    let Some(gpu) = wgpu_device() else { return };
    let dir = repo("public/models/default");
    let (checkpoint, config) = (dir.join("model.safetensors"), dir.join("config.toml"));
    // The size-general model ignores the sequence length it is given.
    let (cpu_model, gpu_model) = load_both(&checkpoint, &config, 0, &gpu);
    let (cpu_model, gpu_model) = (local(cpu_model), local(gpu_model));
    // Fresh mazes of three sizes, each batch on its own grid; 40 ACT steps (320 ticks) cover a
    // 30x30 maze's wave and trace.
    for (rows, cols, count, seed) in [(9, 13, 6, 6161), (30, 30, 3, 6162), (17, 8, 4, 6163)] {
        let gen_cfg = GenerateConfig { rows, cols, min_moves: Some(((rows + cols) / 2) as u32), seed, ..GenerateConfig::default() };
        let mazes = generate_splits(&gen_cfg, &[count], &mut |_| {}).expect("generating mazes").remove(0);
        let tokens: Vec<u8> = mazes.iter().flat_map(|m| m.puzzle.tokens()).collect();
        let grid = GridShape { rows, cols };
        let cpu = run_local(&cpu_model, &tokens, grid, 40, &Default::default());
        let wgpu = run_local(&gpu_model, &tokens, grid, 40, &gpu);
        assert_same(&format!("default model {rows}x{cols}"), &cpu, &wgpu);
        let exact = mazes.iter().enumerate().filter(|(i, m)| cpu.final_answer(*i) == m.label.tokens().as_slice()).count();
        eprintln!("default model {rows}x{cols}: {exact} of {} mazes exact after 40 steps on both backends", mazes.len());
    }
}

/// Runs `trm predict --backend wgpu` with the Vulkan loader pointed at no driver, so wgpu
/// finds no adapter whatever the machine has.
#[cfg(target_os = "linux")]
#[test]
fn no_adapter_is_a_one_line_error_not_a_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let maze = tmp.path().join("maze.txt");
    std::fs::write(&maze, "S      \n ##### \n     # \n#### # \n     # \n ##### \n      G\n").expect("writing a maze");
    let dir = repo("public/models/default");
    let none = Path::new("/nonexistent/vulkan-icd.json");
    let out = Command::new(env!("CARGO_BIN_EXE_trm"))
        .args(["predict", "--backend", "wgpu", "--checkpoint"])
        .arg(dir.join("model.safetensors"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("--inputs")
        .arg(&maze)
        .env("VK_ICD_FILENAMES", none)
        .env("VK_DRIVER_FILES", none)
        .output()
        .expect("running trm");
    support::assert_error(&out, "no wgpu adapter");
}

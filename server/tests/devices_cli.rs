//! `trm train --devices` on the CPU backend, end to end on the real binary: two data-parallel
//! workers (gradients all-reduced by burn-collective) and wrong device lists. Several
//! processes under `mpirun`: tests/mpi/run.sh.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::trm;

/// 5x5 mazes, a 16-wide model, batches of 8 (4 rows per worker), seeded.
const TINY: &str = r#"
global_batch_size = 8
epochs = 10
eval_interval = 10
lr = 1e-3
lr_warmup_steps = 2
seed = 5

[arch]
hidden_size = 16
num_heads = 2
expansion = 2
L_layers = 1
H_cycles = 1
L_cycles = 1
halt_max_steps = 2
puzzle_emb_ndim = 16
puzzle_emb_len = 1
forward_dtype = "float32"

[data]
size = 5
train_count = 24
test_count = 8
"#;

const STEPS: &str = "3";

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(&path, TINY).unwrap();
    path
}

/// The only run directory under `out`.
fn run_dir(out: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// The live weights of a run's latest checkpoint.
fn live_weights(run: &Path) -> Vec<u8> {
    let latest = std::fs::read_to_string(run.join("latest")).unwrap();
    assert_eq!(latest.trim(), format!("step_{STEPS}"), "the run ended elsewhere");
    std::fs::read(run.join("checkpoints").join(latest.trim()).join("live.safetensors")).unwrap()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn check(out: &Output) {
    assert!(out.status.success(), "trm failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn train(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out_dir = dir.join(name);
    let out = trm()
        .args(["train", "--config"])
        .arg(write_config(dir))
        .arg("--out")
        .arg(&out_dir)
        .args(["--max-steps", STEPS])
        .args(extra)
        .output()
        .unwrap();
    check(&out);
    run_dir(&out_dir)
}

#[test]
fn two_cpu_devices_train_to_a_checkpoint_like_one() {
    if cores() < 2 {
        eprintln!("skipped: one core, and --devices allows one CPU worker per core");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let one = train(dir.path(), "one", &[]);
    let two = train(dir.path(), "two", &["--devices", "0,1"]);
    let (a, b) = (live_weights(&one), live_weights(&two));
    assert_eq!(a.len(), b.len());
    // Same global batch, so nearly the same weights after 3 steps (f32 matmuls over 8 rows or
    // 4 round differently). safetensors: a u64 header length, the header, then raw f32 LE.
    let floats = |v: &[u8]| -> Vec<f32> {
        let header = u64::from_le_bytes(v[..8].try_into().unwrap()) as usize;
        v[8 + header..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    };
    assert!(floats(&a).len() > 1000);
    let differ = floats(&a).iter().zip(floats(&b)).filter(|(x, y)| (*x - y).abs() > 1e-4 + 1e-3 * x.abs()).count();
    assert!(differ == 0, "{differ} weights differ between 1 and 2 devices");
}

#[test]
fn wrong_device_lists_are_clear_errors_before_any_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let huge = (cores() + 7).to_string();
    for (devices, part) in [("", "the device list is empty"), ("0,0", "device 0 is listed twice"), ("0,x", "`x` is not a device index")] {
        let out = trm().args(["train", "--config"]).arg(&cfg).arg("--out").arg(dir.path().join("runs")).args(["--devices", devices]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(part), "{part:?} missing from {err}");
    }
    let out = trm().args(["train", "--config"]).arg(&cfg).arg("--out").arg(dir.path().join("runs")).args(["--devices", &format!("0,{huge}")]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("device {huge} does not exist")) && err.contains("the CPU"), "{err}");
    assert!(!dir.path().join("runs").exists(), "a run directory was created");
}

/// Every command that takes `--backend` checks it the same way before any work: a backend
/// that cannot run here (CUDA not built in, or built in without a driver on this machine) is
/// one line naming what to do, never a panic inside burn, and no run directory is made.
#[test]
fn an_unavailable_backend_is_one_line_for_every_command() {
    if cfg!(feature = "cuda") && Path::new("/proc/driver/nvidia").exists() {
        eprintln!("skipped: this machine has an NVIDIA driver, so --backend cuda runs");
        return;
    }
    let expected = if cfg!(feature = "cuda") { "CUDA driver" } else { "built without CUDA" };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/maze-any-size-cpu.toml");
    let maze = dir.path().join("maze.txt");
    std::fs::write(&maze, "S  \n## \nG  \n").unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../public/models/default");
    let (ckpt, model_cfg) = (model.join("model.safetensors"), model.join("config.toml"));
    let runs = dir.path().join("runs");
    let commands: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
        ("predict", vec!["predict".into(), "--checkpoint".into(), ckpt.clone().into(), "--config".into(), model_cfg.clone().into(), "--inputs".into(), maze.clone().into()]),
        ("eval", vec!["eval".into(), "--checkpoint".into(), ckpt.clone().into(), "--config".into(), model_cfg.clone().into(), "--data".into(), dir.path().into()]),
        ("bench", vec!["bench".into(), "--only".into(), "h128".into()]),
        ("train", vec!["train".into(), "--config".into(), cfg.into(), "--out".into(), runs.clone().into()]),
        ("train (size-general)", vec!["train".into(), "--config".into(), local.into(), "--out".into(), runs.clone().into()]),
        ("serve", vec!["serve".into(), "--addr".into(), "127.0.0.1:0".into(), "--state-dir".into(), dir.path().join("state").into()]),
    ];
    for (name, args) in commands {
        let out = trm().args(&args).args(["--backend", "cuda"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} ran");
        assert!(!err.contains("panicked"), "{name} panicked: {err}");
        let last = err.trim_end().lines().last().unwrap_or("");
        assert!(last.starts_with("error: ") && last.contains(expected), "{name}: {expected:?} missing from {err}");
    }
    assert!(!runs.exists(), "a run directory was created");
}

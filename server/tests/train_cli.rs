//! `trm train` and `trm runs` end to end, on the real binary: bad configs, a run killed with
//! SIGKILL at several moments and resumed, a NaN stop, and the learning-curve plot.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{assert_error, trm};
use trm_shared::model::StateDict;

/// 5x5 mazes, a 16-wide model, 40 training mazes in batches of 8: 5 steps per epoch, 400
/// steps in all, an evaluation every 100 and a checkpoint every 20 (the evaluations' land on
/// the same steps; the training lines, every 50 steps, fall between two checkpoints). One ACT
/// step per batch (`halt_max_steps = 1`), so every row halts every step and no ACT carry
/// outlives a step: see `kill_and_resume`.
const TINY: &str = r#"
global_batch_size = 8
epochs = 80
eval_interval = 20
lr = 1e-3
lr_warmup_steps = 10
weight_decay = 0.1
ema = true
ema_rate = 0.9
seed = 3
checkpoint_every_steps = 20

[arch]
hidden_size = 16
num_heads = 2
expansion = 2
L_layers = 1
H_cycles = 1
L_cycles = 1
halt_max_steps = 1
puzzle_emb_ndim = 16
puzzle_emb_len = 1

[data]
size = 5
train_count = 40
test_count = 8
"#;
const TOTAL_STEPS: u64 = 400;
const CHECKPOINT_EVERY: u64 = 20;

/// Writes `TINY` with each `(from, to)` replaced (each `from` must occur) to `dir/name.toml`.
fn config(dir: &Path, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = TINY.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in the tiny config");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `trm` to the end with stderr captured.
fn exec(args: &[&std::ffi::OsStr]) -> Output {
    trm().args(args).output().unwrap()
}

/// The one run directory `trm train --out OUT` made.
fn run_dir(out: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn train_fresh(cfg: &Path, out: &Path) -> Output {
    exec(&["train".as_ref(), "--config".as_ref(), cfg.as_os_str(), "--out".as_ref(), out.as_os_str()])
}

fn no_panic(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked at"), "{err}");
}

#[test]
fn bad_configs_are_rejected_with_the_problem_named() {
    let tmp = tempfile::tempdir().unwrap();
    // (edit, what the message must name)
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("lr = 1e-3", "learning_rate = 1e-3")], "learning_rate"),
        (&[("hidden_size = 16", "hiden_size = 16")], "hiden_size"),
        (&[("test_count = 8", "test_count = 8\nwalls = 3")], "walls"),
        (&[("lr = 1e-3", "lr = \"fast\"")], "lr"),
        (&[("hidden_size = 16", "hidden_size = 15")], "num_heads"),
        (&[("num_heads = 2", "num_heads = 0")], "num_heads"),
        (&[("global_batch_size = 8", "global_batch_size = 0")], "global_batch_size"),
        (&[("global_batch_size = 8", "global_batch_size = 64")], "train_count"),
        (&[("size = 5", "size = 31")], "2..=30"),
        (&[("size = 5", "size = 1")], "2..=30"),
        (&[("puzzle_emb_len = 1", "puzzle_emb_len = 1\nseq_len = 49")], "25 cells"),
        (&[("puzzle_emb_ndim = 16", "puzzle_emb_ndim = 64")], "does not fit"),
        (&[("lr = 1e-3", "lr = -0.5")], "lr must be a positive number"),
        (&[("weight_decay = 0.1", "weight_decay = -1.0")], "weight_decay"),
        (&[("eval_interval = 20", "eval_interval = 30")], "divide"),
        (&[("halt_max_steps = 1", "halt_max_steps = 0")], "halt_max_steps"),
        (&[("[data]\nsize = 5\ntrain_count = 40\ntest_count = 8\n", "")], "missing field `data`"),
    ];
    for (i, (edits, want)) in cases.iter().enumerate() {
        let cfg = config(tmp.path(), &format!("bad{i}"), edits);
        let out_dir = tmp.path().join(format!("runs{i}"));
        let out = train_fresh(&cfg, &out_dir);
        // TOML errors quote the offending line under the message, so not always one line.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "bad{i} accepted");
        assert!(err.starts_with("error: invalid training config: ") || err.starts_with("error: impossible training config: "), "{err}");
        assert!(err.contains(want) && err.contains(&format!("bad{i}.toml")), "{want:?} or the file name missing: {err}");
        no_panic(&out);
        assert!(!out_dir.exists(), "no run directory for a rejected config");
    }

    // Mazes from a dataset directory that do not fit the model: 5x5 data, a 7x7 model.
    let data = tmp.path().join("data5");
    let mut args: Vec<&std::ffi::OsStr> = ["generate", "--size", "5", "--train", "8", "--test", "2", "--seed", "1", "--out"].map(std::ffi::OsStr::new).to_vec();
    args.push(data.as_os_str());
    support::stdout(&exec(&args));
    let dir_line = format!("dir = {:?}\ntrain_count = 40", data.display().to_string());
    let cfg = config(tmp.path(), "mismatch", &[("puzzle_emb_len = 1", "puzzle_emb_len = 1\nseq_len = 49"), ("size = 5\ntrain_count = 40", &dir_line), ("global_batch_size = 8", "global_batch_size = 4")]);
    let out = train_fresh(&cfg, &tmp.path().join("runs-mismatch"));
    no_panic(&out);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seq_len is 49 in the config but 25"), "{err}");
}

/// Every `step_N` left in `run/checkpoints` is whole: its four files, `state.json` saying step
/// N, every tensor readable and finite; hidden `.partial` entries are the only other names.
/// Returns the step a resume starts from: `latest`'s, else the only checkpoint's, else 0.
fn check_checkpoints(run: &Path) -> u64 {
    let ckdir = run.join("checkpoints");
    let mut steps = Vec::new();
    for entry in std::fs::read_dir(&ckdir).into_iter().flatten() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            assert!(name.contains(".partial-"), "stray {name}");
            continue;
        }
        let step: u64 = name.strip_prefix("step_").and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("stray {name}"));
        let dir = ckdir.join(&name);
        let state: Value = serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
        assert_eq!(state["step"], step, "{name}/state.json");
        for f in ["model.safetensors", "live.safetensors", "optim.safetensors"] {
            let sd = StateDict::from_safetensors_bytes(&std::fs::read(dir.join(f)).unwrap(), f).unwrap_or_else(|e| panic!("{name}/{f}: {e}"));
            assert!(!sd.tensors.is_empty(), "{name}/{f}");
            for (t, v) in &sd.tensors {
                assert!(v.values.iter().all(|x| x.is_finite()), "{name}/{f}: {t} not finite");
            }
        }
        steps.push(step);
    }
    match std::fs::read_to_string(run.join("latest")) {
        Ok(latest) => {
            let step: u64 = latest.trim().strip_prefix("step_").and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("latest = {latest:?}"));
            assert!(steps.contains(&step), "latest names {latest}, which is not there ({steps:?})");
            // A kill between renaming a checkpoint into place and moving `latest` leaves one
            // newer directory; never more.
            assert!(steps.iter().filter(|&&s| s > step).count() <= 1, "latest {step}, checkpoints {steps:?}");
            step
        }
        Err(_) => {
            // Killed between renaming the first checkpoint into place and writing `latest`.
            assert!(steps.len() <= 1, "checkpoints {steps:?} but no latest");
            steps.first().copied().unwrap_or(0)
        }
    }
}

/// `|a - b| / |b|` over all the tensors of two safetensors files (same names and shapes).
fn rel_diff(a: &Path, b: &Path) -> f64 {
    let read = |p: &Path| StateDict::from_safetensors_bytes(&std::fs::read(p).unwrap(), &p.display().to_string()).unwrap();
    let (a, b) = (read(a), read(b));
    assert_eq!(a.tensors.keys().collect::<Vec<_>>(), b.tensors.keys().collect::<Vec<_>>());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (name, t) in &a.tensors {
        let u = &b.tensors[name];
        assert_eq!(t.shape, u.shape, "{name}");
        for (x, y) in t.values.iter().zip(&u.values) {
            diff += (*x as f64 - *y as f64).powi(2);
            norm += (*y as f64).powi(2);
        }
    }
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// `(kind, step)` of every metrics line; each line must be whole JSON.
fn metric_lines(run: &Path) -> Vec<(String, u64, Value)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            (v["kind"].as_str().unwrap().to_string(), v["step"].as_u64().unwrap(), v)
        })
        .collect()
}

/// Waits (polling every millisecond) until `ready()`, then SIGKILLs `child`. Panics if the
/// child ends first.
fn kill_when(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("trm ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed at {what}");
}

fn has_partial(dir: &Path) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains(".partial-")))
}

/// The step of the last whole line of `metrics.jsonl` (read while the run appends to it).
fn last_logged_step(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).ok()?;
    let line = text.strip_suffix('\n')?.rsplit('\n').next()?;
    serde_json::from_str::<Value>(line).ok()?["step"].as_u64()
}

fn latest_step(run: &Path) -> Option<u64> {
    std::fs::read_to_string(run.join("latest")).ok()?.trim().strip_prefix("step_")?.parse().ok()
}

/// What `trm train --resume` says when it starts from `step`.
fn resumed_at(step: u64) -> String {
    if step == 0 { "starting it from step 0".into() } else { format!("at step {step}") }
}

fn spawn(args: &[&std::ffi::OsStr], stderr: &Path) -> Child {
    trm().args(args).stdout(Stdio::null()).stderr(std::fs::File::create(stderr).unwrap()).spawn().unwrap()
}

#[test]
fn kill_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "tiny", &[]);
    let out = tmp.path().join("killed");
    let log = |n: usize| tmp.path().join(format!("stderr-{n}.txt"));

    // 1. A fresh run, killed as soon as its first checkpoint directory is there (perhaps
    // before `latest` is written).
    let mut child = spawn(&["train".as_ref(), "--config".as_ref(), cfg.as_os_str(), "--out".as_ref(), out.as_os_str()], &log(0));
    let out2 = out.clone();
    let run_of = move || std::fs::read_dir(&out2).ok()?.next()?.ok().map(|e| e.path());
    kill_when(&mut child, "the first checkpoint", || run_of().is_some_and(|r| r.join(format!("checkpoints/step_{CHECKPOINT_EVERY}")).exists()));
    let run = run_dir(&out);
    let run_os = run.as_os_str().to_owned();
    let resume: [&std::ffi::OsStr; 3] = ["train".as_ref(), "--resume".as_ref(), &run_os];

    // 2-5. Resumed and killed again: while a checkpoint is being written (a `.partial`
    // directory exists), right after a metrics line past the last checkpoint, right after
    // `latest` moves, and at an arbitrary moment. Each waits for progress past the resume.
    let ck = run.join("checkpoints");
    let mut resumed_from = vec![check_checkpoints(&run)];
    let moments = ["a checkpoint write", "a metrics line past the checkpoint", "latest moving", "0.4 s in"];
    for (n, moment) in moments.iter().enumerate() {
        let before = resumed_from[n];
        let started = Instant::now();
        let mut child = spawn(&resume, &log(n + 1));
        let moved = || latest_step(&run).is_some_and(|s| s > before);
        // A write may begin and end between two polls; a later one is caught then.
        kill_when(&mut child, moment, || match n {
            0 => moved() && has_partial(&ck),
            1 => moved() && last_logged_step(&run) > latest_step(&run),
            2 => moved(),
            _ => moved() && started.elapsed() > Duration::from_millis(400),
        });
        resumed_from.push(check_checkpoints(&run));
        eprintln!("killed at {moment}: resumable at step {}, partial writes left: {}", resumed_from[n + 1], has_partial(&ck) || has_partial(&run));
        let err = std::fs::read_to_string(log(n + 1)).unwrap();
        assert!(!err.contains("panicked at"), "{err}");
        assert!(err.contains(&resumed_at(before)), "resumed from the checkpoint before: {err}");
    }
    assert!(resumed_from.windows(2).all(|w| w[0] < w[1]), "each resume got further: {resumed_from:?}");

    // 5. Resumed to the end.
    let done = exec(&resume);
    no_panic(&done);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(err.contains(&resumed_at(resumed_from[4])), "{err}");
    assert!(err.contains(&format!("done: {TOTAL_STEPS} steps")), "{err}");
    assert_eq!(check_checkpoints(&run), TOTAL_STEPS);
    assert!(!has_partial(&ck) && !has_partial(&run), "a resume removes the killed writes' leftovers");

    // The log has each step once, in order, as an uninterrupted run's: lines the killed runs
    // wrote after their checkpoint were dropped on resume.
    let lines = metric_lines(&run);
    let steps_of = |lines: &[(String, u64, Value)], kind: &str| -> Vec<u64> { lines.iter().filter(|l| l.0 == kind).map(|l| l.1).collect() };
    assert_eq!(steps_of(&lines, "train"), (1..=8).map(|i| i * 50).collect::<Vec<u64>>());
    assert_eq!(steps_of(&lines, "eval"), vec![100, 200, 300, 400]);

    // The same config uninterrupted. Data order, RNG, optimizer, EMA and weights are all in
    // the checkpoint, and with one ACT step per batch there is no carry to lose, so the
    // resumed run ends where the uninterrupted one does, up to float rounding: some resumes
    // are bit for bit, others differ in the last bit of a few optimizer moments from the first
    // step on (Flex rounds a tensor loaded from disk and one computed in memory differently),
    // which measured ~2e-7 of the weights' norm after 300 more steps. Losing rows in flight is
    // ~1e-2 (the next test), so the bound below tells the two apart.
    let clean_out = tmp.path().join("clean");
    let clean = train_fresh(&cfg, &clean_out);
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    let clean_run = run_dir(&clean_out);
    for f in ["model.safetensors", "live.safetensors", "optim.safetensors"] {
        let d = rel_diff(&run.join("checkpoints/step_400").join(f), &clean_run.join("checkpoints/step_400").join(f));
        assert!(d < 1e-5, "{f} differs from the uninterrupted run's by {d:e} of its norm");
    }
    let eval_losses = |lines: &[(String, u64, Value)]| -> Vec<(u64, f64)> {
        lines.iter().filter(|l| l.0 == "eval").map(|l| (l.1, l.2["lm_loss"].as_f64().unwrap())).collect()
    };
    for (a, b) in eval_losses(&lines).iter().zip(eval_losses(&metric_lines(&clean_run))) {
        assert!(a.0 == b.0 && (a.1 - b.1).abs() <= 1e-4 * b.1.abs(), "eval loss {a:?} vs uninterrupted {b:?}");
    }

    // The final checkpoint serves `trm eval` with the run's own config.
    let ev = exec(&[
        "eval".as_ref(),
        "--checkpoint".as_ref(),
        run.join("checkpoints/step_400/model.safetensors").as_os_str(),
        "--config".as_ref(),
        run.join("config.toml").as_os_str(),
        "--data".as_ref(),
        run.join("data").as_os_str(),
        "--json".as_ref(),
    ]);
    let report: Value = serde_json::from_str(&support::stdout(&ev)).unwrap();
    assert!(report.to_string().contains("exact"), "{report}");
}

#[test]
fn with_several_act_steps_a_resume_continues_but_restarts_the_rows_in_flight() {
    // With halt_max_steps > 1 rows stay in flight across batches; their carry is not saved,
    // so the run continues from the checkpoint's step but its weights then part from an
    // uninterrupted run's (README, "Resuming training").
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "act3", &[("halt_max_steps = 1", "halt_max_steps = 3"), ("epochs = 80", "epochs = 20")]);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert!(train_fresh(&cfg, &a).status.success());
    let cut = exec(&["train".as_ref(), "--config".as_ref(), cfg.as_os_str(), "--out".as_ref(), b.as_os_str(), "--max-steps".as_ref(), "37".as_ref()]);
    assert!(cut.status.success(), "{}", String::from_utf8_lossy(&cut.stderr));
    let (run_a, run_b) = (run_dir(&a), run_dir(&b));
    assert_eq!(latest_step(&run_b), Some(37));
    let done = exec(&["train".as_ref(), "--resume".as_ref(), run_b.as_os_str()]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(check_checkpoints(&run_b), 100);
    let at = |run: &Path, step: u64| run.join(format!("checkpoints/step_{step}/live.safetensors"));
    assert_eq!(rel_diff(&at(&run_a, 20), &at(&run_b, 20)), 0.0, "identical up to the interruption");
    let d = rel_diff(&at(&run_a, 100), &at(&run_b, 100));
    assert!(d > 1e-4, "the rows in flight at step 37 restarted, yet the weights differ by only {d:e}");
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    // Decoupled weight decay multiplies the weights by 1 - lr * weight_decay = -2 every step,
    // so they double in size until the forward pass overflows (a config a user can type).
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "blowup", &[("lr = 1e-3", "lr = 1.0"), ("weight_decay = 0.1", "weight_decay = 3.0"), ("lr_warmup_steps = 10", "lr_warmup_steps = 1")]);
    let out_dir = tmp.path().join("runs");
    let out = train_fresh(&cfg, &out_dir);
    no_panic(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().last().unwrap_or_default();
    assert!(!out.status.success());
    assert!(line.starts_with("error: the loss became NaN at step ") || line.starts_with("error: the loss became infinite at step "), "{err}");
    let bad_step: u64 = line.split("at step ").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    let run = run_dir(&out_dir);
    let kept = check_checkpoints(&run);
    assert!(kept > 0 && kept < bad_step, "latest is step {kept}, the loss went bad at {bad_step}");
    assert_eq!(kept, (bad_step - 1) / CHECKPOINT_EVERY * CHECKPOINT_EVERY, "no good checkpoint lost");
    assert!(line.contains(&format!("step_{kept}")) && line.contains("is kept"), "{line}");
    assert!(metric_lines(&run).iter().all(|l| l.1 < bad_step), "nothing logged for the bad step");
    // The kept checkpoint loads and runs.
    let ev = exec(&[
        "eval".as_ref(),
        "--checkpoint".as_ref(),
        run.join(format!("checkpoints/step_{kept}/model.safetensors")).as_os_str(),
        "--config".as_ref(),
        run.join("config.toml").as_os_str(),
        "--data".as_ref(),
        run.join("data").as_os_str(),
        "--json".as_ref(),
    ]);
    support::stdout(&ev);
}

#[test]
fn runs_plot_and_show() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "short", &[("epochs = 80", "epochs = 40")]);
    let out_dir = tmp.path().join("runs");
    assert!(train_fresh(&cfg, &out_dir).status.success());
    let run = run_dir(&out_dir);

    let svg_path = tmp.path().join("curves.svg");
    let out = exec(&["runs".as_ref(), "plot".as_ref(), run.as_os_str(), "--out".as_ref(), svg_path.as_os_str()]);
    let said = support::stdout(&out);
    assert!(said.contains("2 evaluations") && said.contains("up to step 200"), "{said}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg"));
    for text in ["training loss", "training accuracy", "evaluation accuracy", "learning rate", "lm_loss", "q_halt_loss", "train exact", "eval exact", "eval token"] {
        assert!(svg.contains(text), "{text} missing from the figure");
    }
    // Train series have 4 points (steps 50..200), the eval series 2: all are drawn as lines.
    assert!(svg.matches("<polyline").count() >= 7, "{} curves", svg.matches("<polyline").count());
    // Default output: RUN/curves.svg.
    support::stdout(&exec(&["runs".as_ref(), "plot".as_ref(), run.as_os_str()]));
    assert!(run.join("curves.svg").exists());

    let shown = support::stdout(&exec(&["runs".as_ref(), "show".as_ref(), run.as_os_str()]));
    assert!(shown.contains("step_200 (latest)") && shown.contains("step_20,"), "{shown}");
    assert_eq!(shown.lines().filter(|l| l.starts_with("eval ")).count(), 2, "{shown}");

    // Refusals: PNG, no metrics, a garbage line.
    let png = tmp.path().join("curves.png");
    assert_error(&exec(&["runs".as_ref(), "plot".as_ref(), run.as_os_str(), "--out".as_ref(), png.as_os_str()]), "only SVG");
    let empty = tmp.path().join("not-a-run");
    std::fs::create_dir(&empty).unwrap();
    assert_error(&exec(&["runs".as_ref(), "plot".as_ref(), empty.as_os_str()]), "metrics.jsonl");
    std::fs::write(empty.join("metrics.jsonl"), "{\"kind\":\"train\",\"step\":1}\n{oops\n").unwrap();
    assert_error(&exec(&["runs".as_ref(), "plot".as_ref(), empty.as_os_str()]), "line 2");
    std::fs::write(empty.join("metrics.jsonl"), "").unwrap();
    assert_error(&exec(&["runs".as_ref(), "plot".as_ref(), empty.as_os_str()]), "no metrics");
}

/// `--matmul bf16` trains on the CPU's bf16 matmuls (where the CPU has AVX-512 BF16; a clear
/// one-line error elsewhere) and is refused for a GPU backend.
#[test]
fn bf16_matmuls_train_on_the_cpu_only() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "bf16", &[("epochs = 80", "epochs = 20")]);
    let out_dir = tmp.path().join("runs");
    let out = exec(&["train".as_ref(), "--config".as_ref(), cfg.as_os_str(), "--out".as_ref(), out_dir.as_os_str(), "--matmul".as_ref(), "bf16".as_ref()]);
    no_panic(&out);
    if !trm_shared::model::cpu::linear::bf16_available() {
        assert_error(&out, "AVX-512 BF16");
        return;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = metric_lines(&run_dir(&out_dir));
    let train: Vec<&Value> = lines.iter().filter(|(kind, _, _)| kind == "train").map(|(_, _, v)| v).collect();
    assert!(!train.is_empty(), "{lines:?}");
    assert!(train.iter().all(|v| v["lm_loss"].as_f64().is_some_and(f64::is_finite)), "{train:?}");

    let gpu = exec(&["train".as_ref(), "--config".as_ref(), cfg.as_os_str(), "--backend".as_ref(), "wgpu".as_ref(), "--matmul".as_ref(), "bf16".as_ref()]);
    assert_error(&gpu, "--backend cpu");
}

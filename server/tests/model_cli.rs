//! The model commands end to end: `trm predict`, `trm eval`, `trm download-weights` (against a
//! local HTTP server standing in for the Hugging Face hub). The model is the small reference
//! checkpoint of `shared/tests/fixtures/trm` (36 cells = 6x6 mazes); see the README there.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{serve_hub, sha256_hex};
use trm_shared::dataset::{SplitData, write_split};
use trm_shared::maze::{Grid, label};
use trm_shared::model::{HostTensor, StateDict};

mod support;

const MODEL_RESOLVE: &str = "/owner/trm-maze/resolve/main";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures/trm").join(name)
}

fn trm(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trm"));
    cmd.args(args);
    for var in ["HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_HOME"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Six 6x6 mazes with their benchmark labels.
fn small_split(dir: &Path) {
    let mazes = [
        "S     \n #### \n    # \n ## # \n  #   \n    #G\n",
        "S  #  \n#  #  \n      \n ###  \n   #  \n   # G\n",
        "G     \n##### \n      \n #####\n      \n    S \n",
        "S#    \n #  # \n #  # \n    # \n ##   \n    G \n",
        "      \n S    \n ###  \n   #  \n   #G \n      \n",
        "S   # \n ##   \n  # # \n  #   \n    # \n #  G \n",
    ];
    let examples = mazes
        .iter()
        .map(|m| {
            let g = Grid::parse_lines(m).unwrap();
            (g.tokens(), label(&g).unwrap().tokens())
        })
        .collect();
    fs::create_dir_all(dir).unwrap();
    write_split(dir, &SplitData::from_examples(36, examples)).unwrap();
}

/// The fixture's reference run (inputs, puzzle ids, logits per step), with its inputs written
/// into `dir` as an int32 npy and its puzzle ids as another.
fn reference_inputs(dir: &Path) -> (BTreeMap<String, HostTensor>, PathBuf, PathBuf) {
    let bytes = fs::read(fixture("attn_outputs.safetensors")).unwrap();
    let reference = StateDict::from_safetensors_bytes(&bytes, "ref").unwrap().tensors;
    let tokens: Vec<i32> = reference["inputs"].values.iter().map(|v| *v as i32).collect();
    let ids: Vec<i32> = reference["puzzle_identifiers"].values.iter().map(|v| *v as i32).collect();
    let (inputs, id_file) = (dir.join("inputs.npy"), dir.join("ids.npy"));
    use ndarray_npy::WriteNpyExt;
    ndarray::Array2::from_shape_vec((3, 36), tokens).unwrap().write_npy(fs::File::create(&inputs).unwrap()).unwrap();
    ndarray::Array1::from_vec(ids).write_npy(fs::File::create(&id_file).unwrap()).unwrap();
    (reference, inputs, id_file)
}

#[test]
fn predict_dumps_the_reference_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, inputs, id_file) = reference_inputs(tmp.path());
    let dump = tmp.path().join("dump");
    let out = trm(
        &[
            "predict",
            "--checkpoint",
            fixture("attn_step_1").to_str().unwrap(),
            "--config",
            fixture("attn_all_config.yaml").to_str().unwrap(),
            "--inputs",
            inputs.to_str().unwrap(),
            "--puzzle-identifiers",
            id_file.to_str().unwrap(),
            "--dump-dir",
            dump.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("maze 2:") && text.contains("3 mazes:"), "{text}");
    use ndarray_npy::ReadNpyExt;
    let logits = ndarray::Array4::<f32>::read_npy(fs::File::open(dump.join("logits.npy")).unwrap()).unwrap();
    let q = ndarray::Array2::<f32>::read_npy(fs::File::open(dump.join("q_halt.npy")).unwrap()).unwrap();
    assert_eq!(logits.dim(), (4, 3, 36, 6));
    assert_eq!(q.dim(), (4, 3));
    let want = &reference["logits"].values;
    let max = logits.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-3, "max |Δlogit| over all steps {max}");
}

#[test]
fn eval_prints_json_scores_per_step() {
    let tmp = tempfile::tempdir().unwrap();
    small_split(&tmp.path().join("test"));
    let out = trm(
        &[
            "eval",
            "--checkpoint",
            fixture("attn_step_1").to_str().unwrap(),
            "--config",
            fixture("attn_all_config.yaml").to_str().unwrap(),
            "--data",
            tmp.path().to_str().unwrap(),
            "--batch-size",
            "4",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], 6);
    for key in ["exact_accuracy", "token_accuracy", "valid_shortest_accuracy"] {
        let x = v[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    }
    // A random model copies little: token accuracy is well below 1, and it is computed.
    assert!(v["token_accuracy"].as_f64().unwrap() < 0.9);
    assert_eq!(v["per_step"].as_array().unwrap().len(), 4);
    assert_eq!(v["steps"], 4);
    assert!(v["mazes_per_second"].as_f64().unwrap() > 0.0);

    // A checkpoint that does not fit the config is one clear error.
    let bad = trm(
        &[
            "eval",
            "--checkpoint",
            fixture("mlpt_step_1").to_str().unwrap(),
            "--config",
            fixture("attn_all_config.yaml").to_str().unwrap(),
            "--data",
            tmp.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!bad.status.success());
    let e = stderr(&bad);
    assert!(e.contains("puzzle_emb.weights") || e.contains("missing tensor"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

/// `--matmul bf16` (where the CPU has AVX-512 BF16; one clear error elsewhere): `trm
/// predict`'s logits stay near the reference's f32 ones, within bf16 rounding, and pick the
/// same tokens; `trm eval` says which precision it ran; a GPU backend refuses it.
#[test]
fn predict_and_eval_take_bf16_matmuls() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, inputs, id_file) = reference_inputs(tmp.path());
    let (checkpoint, config) = (fixture("attn_step_1"), fixture("attn_all_config.yaml"));
    let (checkpoint, config) = (checkpoint.to_str().unwrap(), config.to_str().unwrap());
    let dump = tmp.path().join("dump");
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", "--checkpoint", checkpoint, "--config", config, "--inputs", inputs.to_str().unwrap()];
        args.extend(["--puzzle-identifiers", id_file.to_str().unwrap(), "--dump-dir", dump.to_str().unwrap()]);
        args.extend(extra);
        trm(&args, &[])
    };
    let out = predict(&["--matmul", "bf16"]);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    if !trm_shared::model::cpu::linear::bf16_available() {
        assert!(!out.status.success() && stderr(&out).contains("AVX-512 BF16"), "{}", stderr(&out));
        return;
    }
    assert!(out.status.success(), "{}", stderr(&out));
    use ndarray_npy::ReadNpyExt;
    let logits = ndarray::Array4::<f32>::read_npy(fs::File::open(dump.join("logits.npy")).unwrap()).unwrap();
    let want = &reference["logits"].values;
    let n = want.len() as f32;
    let scale = want.iter().map(|v| v.abs()).sum::<f32>() / n;
    let mean = logits.iter().zip(want).map(|(a, b)| (a - b).abs()).sum::<f32>() / n;
    // Not f32's 1e-3 at most (see `predict_dumps_the_reference_logits`), yet within bf16's
    // rounding carried through the recursion: a few percent of the logits' size on average.
    assert!(mean > 1e-4 && mean < 0.05 * scale, "mean |Δlogit| {mean} against logits of mean size {scale}");
    let argmax = |row: &[f32]| (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
    let got: Vec<f32> = logits.iter().copied().collect();
    let same = got.chunks(6).zip(want.chunks(6)).filter(|(a, b)| argmax(a) == argmax(b)).count();
    assert!(same * 100 >= 95 * (got.len() / 6), "{same} of {} cells pick the reference's token", got.len() / 6);

    let split = tempfile::tempdir().unwrap();
    small_split(&split.path().join("test"));
    for matmul in ["bf16", "f32"] {
        let out = trm(&["eval", "--checkpoint", checkpoint, "--config", config, "--data", split.path().to_str().unwrap(), "--matmul", matmul, "--json"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((v["matmul"].as_str(), v["count"].as_u64()), (Some(matmul), Some(6)));
    }
    let gpu = predict(&["--backend", "wgpu", "--matmul", "bf16"]);
    assert!(!gpu.status.success() && stderr(&gpu).contains("--backend cpu"), "{}", stderr(&gpu));
}

#[test]
fn download_weights_from_a_local_hub() {
    let ckpt = fs::read(fixture("attn_step_1")).unwrap();
    let cfg = fs::read(fixture("attn_all_config.yaml")).unwrap();
    let sha = sha256_hex(&ckpt);
    let files = vec![("step_1".to_string(), ckpt.clone()), ("all_config.yaml".to_string(), cfg)];

    let tmp = tempfile::tempdir().unwrap();
    let endpoint = serve_hub(MODEL_RESOLVE, files.clone(), false).endpoint;
    let out_dir = tmp.path().join("w");
    let home = tmp.path().join("hf");
    let env = [("HF_ENDPOINT", endpoint.as_str()), ("HF_HOME", home.to_str().unwrap())];
    let args = ["download-weights", "--repo", "owner/trm-maze", "--file", "step_1", "--out", out_dir.to_str().unwrap()];
    let out = trm(&[&args[..], &["--sha256", &sha]].concat(), &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(out_dir.join("step_1")).unwrap(), ckpt);
    assert!(out_dir.join("all_config.yaml").is_file());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&sha) && text.contains("15 tensors"), "{text}");

    // A wrong expected checksum is refused.
    let out = trm(&[&args[..], &["--sha256", &"0".repeat(64)]].concat(), &env);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("SHA-256"), "{}", stderr(&out));

    // Bytes that do not match the hub's etag are refused, in a fresh cache.
    let endpoint = serve_hub(MODEL_RESOLVE, files, true).endpoint;
    let home2 = tmp.path().join("hf2");
    let env = [("HF_ENDPOINT", endpoint.as_str()), ("HF_HOME", home2.to_str().unwrap())];
    let out = trm(&args, &env);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("SHA-256"), "{}", stderr(&out));

    // A file the repository does not have.
    let out = trm(&["download-weights", "--repo", "owner/trm-maze", "--file", "nope", "--out", out_dir.to_str().unwrap()], &env);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

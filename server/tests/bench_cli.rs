//! `trm bench` end to end on tiny models (`--tiny`): every case in the plain JSON, and the
//! side-by-side mode against a stand-in "python" that prints fixed reference times, so that
//! no test needs torch. No assertion here is on a time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CASES: [&str; 8] = ["7m", "h128", "train-7m", "train-h128", "local-16", "local-30", "train-local-16", "train-local-30"];

fn trm(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trm"));
    cmd.args(args).env_remove("TRM_REFERENCE_DIR").env_remove("TRM_REFERENCE_PYTHON");
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "trm bench failed: {}", stderr(o));
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// A directory that looks like a checkout of the reference code.
fn fake_reference(dir: &Path) -> PathBuf {
    let root = dir.join("TinyRecursiveModels");
    fs::create_dir_all(root.join("models/recursive_reasoning")).unwrap();
    fs::write(root.join("models/recursive_reasoning/trm.py"), "# stand-in\n").unwrap();
    root
}

/// A "python" that answers the probe and prints reference times 2, 4 and 3 s (median 3 s).
fn fake_python(dir: &Path) -> PathBuf {
    let path = dir.join("python");
    let script = r#"#!/bin/sh
case "$*" in
  *--probe*) echo '{"torch": "0.0-fake", "optimizer": "FakeOpt"}' ;;
  *) echo 'a line that is not the result'
     echo '{"case": "x", "times_s": [2.0, 4.0, 3.0], "peak_rss_kib": 2048, "torch": "0.0-fake", "threads": 2, "optimizer": null}' ;;
esac
"#;
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn plain_json_has_every_case_with_its_memory() {
    let v = json(&trm(&["bench", "--tiny", "--repeats", "1", "--json"]));
    let results = v["results"].as_array().unwrap();
    let names: Vec<&str> = results.iter().map(|r| r["case"].as_str().unwrap()).collect();
    assert_eq!(names, CASES);
    for r in results {
        assert!(r["median_s"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["times_s"].as_array().unwrap().len(), 1);
        assert!(r["reference"].is_null() && r["ratio"].is_null(), "{r}");
        // Each case ran in its own process, which reports its own peak.
        assert!(r["peak_rss_mib"].as_f64().unwrap() > 1.0, "{r}");
        assert_eq!(r["rows_per_s"].is_null(), r["kind"] == "infer", "{r}");
    }
    assert!(v["reference"].is_null());
}

#[test]
fn side_by_side_reads_the_reference_and_prints_the_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, python) = (fake_reference(tmp.path()), fake_python(tmp.path()));
    let (reference, python) = (reference.to_str().unwrap(), python.to_str().unwrap());
    let args = ["bench", "--tiny", "--repeats", "1", "--only", "7m,local-16", "--reference", reference, "--python", python];
    let v = json(&trm(&[&args[..], &["--json"]].concat()));
    assert_eq!(v["reference"]["torch"], "0.0-fake");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let (attn, local) = (&results[0], &results[1]);
    assert_eq!(attn["reference"]["median_s"], 3.0);
    assert_eq!(attn["reference"]["min_s"], 2.0);
    assert_eq!(attn["reference"]["peak_rss_mib"], 2.0);
    let ratio = attn["ratio"].as_f64().unwrap();
    assert!((ratio * 3.0 - attn["median_s"].as_f64().unwrap()).abs() < 1e-12, "{attn}");
    // The reference has no size-general model.
    assert!(local["reference"].is_null() && local["ratio"].is_null(), "{local}");

    // The table: both times and the ratio on the case's line, "-" where there is no reference.
    let out = trm(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PyTorch 0.0-fake"), "{text}");
    let line = text.lines().find(|l| l.starts_with("7m ")).unwrap();
    assert!(line.contains(" 3.000 ") && line.contains(" 2.000 "), "{line}");
    let local_line = text.lines().find(|l| l.starts_with("local-16 ")).unwrap();
    assert!(local_line.contains(" - "), "{local_line}");
    assert!(text.contains("load average"), "{text}");
}

/// With `--rounds`, trm and the reference take turns and each side's steps are pooled; the
/// ratio of each round is kept beside the pooled one.
#[test]
fn rounds_alternate_and_pool_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, python) = (fake_reference(tmp.path()), fake_python(tmp.path()));
    let (reference, python) = (reference.to_str().unwrap(), python.to_str().unwrap());
    let args = ["bench", "--tiny", "--repeats", "1", "--rounds", "2", "--only", "7m", "--reference", reference, "--python", python];
    let v = json(&trm(&[&args[..], &["--json"]].concat()));
    assert_eq!(v["rounds"], 2);
    let r = &v["results"][0];
    // One timed step a round on trm's side, the fake reference's three a round on its side.
    assert_eq!(r["times_s"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["reference"]["times_s"].as_array().unwrap().len(), 6, "{r}");
    assert_eq!(r["reference"]["median_s"], 3.0);
    let rounds: Vec<f64> = r["round_ratios"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(rounds.len(), 2, "{r}");
    let times: Vec<f64> = r["times_s"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    for (ratio, t) in rounds.iter().zip(&times) {
        assert!((ratio * 3.0 - t).abs() < 1e-12, "{r}");
    }

    let out = trm(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 rounds"), "{text}");

    let out = trm(&["bench", "--tiny", "--rounds", "0"]);
    assert!(!out.status.success() && stderr(&out).contains("--rounds"), "{}", stderr(&out));
}

/// A bad reference setup fails at once, before any case runs, with one clear line.
#[test]
fn a_missing_reference_or_python_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = fake_reference(tmp.path());
    let python = fake_python(tmp.path());
    let missing = tmp.path().join("nowhere");
    let (reference, python, missing) = (reference.to_str().unwrap(), python.to_str().unwrap(), missing.to_str().unwrap());
    let empty = tmp.path().to_str().unwrap();
    for (args, expect) in [
        (vec!["--reference", missing, "--python", python], "no such directory"),
        (vec!["--reference", empty, "--python", python], "not a checkout of the reference code"),
        (vec!["--reference", reference, "--python", missing], "cannot run --python"),
        (vec!["--python", python], "needs --reference"),
        (vec!["--only", "7m,nope"], "no case \"nope\""),
    ] {
        let out = trm(&[&["bench", "--tiny", "--repeats", "1"][..], &args].concat());
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(expect), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: no case should have run");
    }
}

/// `--matmul bf16` runs trm's CPU matmuls in bf16 and the reference in its own bf16 recipe
/// (`forward_dtype` bfloat16); f32 (the default) asks the reference for float32. On a CPU
/// without AVX-512 BF16 it is one clear error instead.
#[test]
fn bf16_matmuls_time_the_reference_at_bfloat16() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = fake_reference(tmp.path());
    let python = tmp.path().join("python");
    let log = tmp.path().join("calls.log");
    let script = format!(
        r#"#!/bin/sh
echo "$*" >> {log}
case "$*" in
  *--probe*) echo '{{"torch": "0.0-fake", "optimizer": "FakeOpt"}}' ;;
  *) echo '{{"case": "x", "times_s": [2.0], "peak_rss_kib": 2048, "torch": "0.0-fake", "threads": 2, "optimizer": null}}' ;;
esac
"#,
        log = log.display()
    );
    fs::write(&python, script).unwrap();
    fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).unwrap();
    let (reference, python) = (reference.to_str().unwrap(), python.to_str().unwrap());
    let bf16_cpu = trm_shared::model::cpu::linear::bf16_available();
    for (matmul, dtype) in [("bf16", "bfloat16"), ("f32", "float32")] {
        let _ = fs::remove_file(&log);
        let out = trm(&["bench", "--tiny", "--repeats", "1", "--only", "7m,train-7m", "--matmul", matmul, "--reference", reference, "--python", python, "--json"]);
        if matmul == "bf16" && !bf16_cpu {
            assert!(!out.status.success() && stderr(&out).contains("AVX-512 BF16"), "{}", stderr(&out));
            continue;
        }
        let v = json(&out);
        assert_eq!(v["matmul"], matmul);
        assert_eq!(v["results"].as_array().unwrap().len(), 2, "{v}");
        let calls = fs::read_to_string(&log).unwrap();
        let timed: Vec<&str> = calls.lines().filter(|l| !l.contains("--probe")).collect();
        assert_eq!(timed.len(), 2, "{calls}");
        assert!(timed.iter().all(|l| l.contains(&format!("--dtype {dtype}"))), "{calls}");
    }
    let out = trm(&["bench", "--tiny", "--matmul", "f16"]);
    assert!(!out.status.success() && stderr(&out).contains("expected f32 or bf16"), "{}", stderr(&out));
    let out = trm(&["bench", "--tiny", "--backend", "wgpu", "--matmul", "bf16"]);
    assert!(!out.status.success() && stderr(&out).contains("--backend cpu"), "{}", stderr(&out));
}

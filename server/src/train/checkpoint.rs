//! A run directory and its checkpoints.
//!
//! ```text
//! RUN/config.toml                  the training config
//! RUN/metrics.jsonl                one JSON object per logged step / evaluation
//! RUN/data/{train,test}/           generated mazes (reference npy layout), when generated
//! RUN/checkpoints/step_N/          one directory per checkpoint, renamed into place whole:
//!     model.safetensors            the eval (EMA) model, reference tensor names
//!     live.safetensors             the trained weights, f32
//!     optim.safetensors            AdamATan2 moments, `NAME.exp_avg` / `NAME.exp_avg_sq` for
//!                                  each tensor NAME of live.safetensors, in its layout
//!     state.json                   step, data position, RNG position, optimizer step counts
//! RUN/latest                       name of the newest complete checkpoint (atomic rename)
//! ```
//! A kill at any moment leaves `latest` naming a complete checkpoint (or none yet).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use trm_shared::atomic;
use trm_shared::model::{HostTensor, StateDict};

use super::data::DataPosition;

/// Everything but tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u64,
    /// Next batch of the data order.
    pub position: DataPosition,
    /// Word position of the exploration RNG's stream (as text: a u128).
    pub rng_word_pos: String,
    /// AdamATan2 step count per tensor name (burn's field path in older runs).
    pub optim_time: BTreeMap<String, usize>,
}

/// Name of a checkpoint directory.
pub fn step_dir_name(step: u64) -> String {
    format!("step_{step}")
}

/// The first tensor of `sd` holding a NaN or an infinity, by name.
fn first_non_finite(sd: &StateDict) -> Option<&str> {
    sd.tensors.iter().find(|(_, t)| t.values.iter().any(|v| !v.is_finite())).map(|(name, _)| name.as_str())
}

/// Writes a checkpoint atomically, then points `latest` at it. Refuses (and writes nothing)
/// when any tensor holds a NaN or an infinity: an update can blow the weights up while its
/// step's loss was still finite, and such a checkpoint must not replace the last good one.
pub fn write_checkpoint(
    run: &Path,
    state: &TrainState,
    eval_model: &[u8],
    live: &StateDict,
    optim: &StateDict,
) -> anyhow::Result<PathBuf> {
    let name = step_dir_name(state.step);
    let eval_sd = StateDict::from_safetensors_bytes(eval_model, "the eval model").context("checking the eval model")?;
    for (what, sd) in [("eval (EMA) weights", &eval_sd), ("live weights", live), ("optimizer moments", optim)] {
        if let Some(t) = first_non_finite(sd) {
            bail!(
                "the {what} hold NaN or infinite values after step {} (tensor {t}); not writing checkpoint {name}, the last good one stays in {}",
                state.step,
                run.join("latest").display()
            );
        }
    }
    let dir = run.join("checkpoints").join(&name);
    if dir.exists() {
        // Only a directory `latest` does not name gets here: a resumed run re-reaching a step
        // whose checkpoint was renamed into place just before the kill, ahead of `latest`.
        // (The trainer saves each step at most once, so `latest`'s own is never removed.)
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    atomic::write_dir(&dir, |tmp| -> anyhow::Result<()> {
        atomic::write_file(&tmp.join("model.safetensors"), eval_model)?;
        atomic::write_file(&tmp.join("live.safetensors"), &live.to_safetensors_bytes("", &[])?)?;
        atomic::write_file(&tmp.join("optim.safetensors"), &optim.to_safetensors_bytes("", &[])?)?;
        atomic::write_file(&tmp.join("state.json"), &serde_json::to_vec_pretty(state)?)?;
        Ok(())
    })
    .with_context(|| format!("writing checkpoint {}", dir.display()))?;
    atomic::write_file(&run.join("latest"), step_dir_name(state.step).as_bytes())
        .with_context(|| format!("updating {}", run.join("latest").display()))?;
    Ok(dir)
}

/// Removes the hidden `.NAME.partial-*` entries that a killed write leaves in the run
/// directory and in `checkpoints/` (never read, but a partial checkpoint is megabytes).
/// Only for a run no other process is writing. Returns how many were removed.
pub fn remove_partials(run: &Path) -> anyhow::Result<usize> {
    let mut removed = 0;
    for dir in [run.to_path_buf(), run.join("checkpoints")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with('.') && name.contains(".partial-")) {
                continue;
            }
            let path = entry.path();
            if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }
                .with_context(|| format!("removing the leftover {}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A checkpoint read back.
pub struct LoadedCheckpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Counters and positions.
    pub state: TrainState,
    /// The EMA (eval) model's tensors.
    pub eval_model: StateDict,
    /// The trained weights.
    pub live: StateDict,
    /// Optimizer moments by tensor name.
    pub optim: StateDict,
}

/// The name of the checkpoint to resume from: the one `latest` names, else (a kill between
/// renaming the first checkpoint into place and writing `latest`) the newest `step_N`
/// directory, which is whole since directories are renamed in complete. `None`: no checkpoint.
pub fn latest_name(run: &Path) -> anyhow::Result<Option<String>> {
    let latest = run.join("latest");
    match std::fs::read_to_string(&latest) {
        Ok(name) => {
            let name = name.trim();
            if !name.starts_with("step_") || name.contains('/') {
                bail!("{} names {name:?}, not a checkpoint", latest.display());
            }
            Ok(Some(name.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let newest = std::fs::read_dir(run.join("checkpoints"))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("step_")?.parse::<u64>().ok())
                .max();
            Ok(newest.map(step_dir_name))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", latest.display())),
    }
}

/// Reads the checkpoint to resume from (see [`latest_name`]).
pub fn read_latest(run: &Path) -> anyhow::Result<LoadedCheckpoint> {
    let Some(name) = latest_name(run)? else {
        bail!("{} has no checkpoint to resume from (no {})", run.display(), run.join("latest").display());
    };
    let dir = run.join("checkpoints").join(&name);
    let read = |f: &str| -> anyhow::Result<StateDict> {
        let p = dir.join(f);
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        StateDict::from_safetensors_bytes(&bytes, &p.display().to_string()).with_context(|| format!("reading {}", p.display()))
    };
    let state: TrainState = serde_json::from_slice(
        &std::fs::read(dir.join("state.json")).with_context(|| format!("reading {}/state.json", dir.display()))?,
    )
    .with_context(|| format!("parsing {}/state.json", dir.display()))?;
    Ok(LoadedCheckpoint { eval_model: read("model.safetensors")?, live: read("live.safetensors")?, optim: read("optim.safetensors")?, state, dir })
}

/// A host tensor from values and shape.
pub fn host(shape: Vec<usize>, values: Vec<f32>) -> HostTensor {
    HostTensor { shape, values, stored_dtype: "F32".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> TrainState {
        TrainState { step, position: DataPosition { iteration: 1, batch: 2 }, rng_word_pos: "99".into(), optim_time: BTreeMap::from([("a".into(), 3)]) }
    }

    #[test]
    fn checkpoints_round_trip_and_latest_moves_only_when_complete() {
        let run = tempfile::tempdir().unwrap();
        let mut sd = StateDict::default();
        sd.insert("w", host(vec![2], vec![1.0, -2.0])).unwrap();
        write_checkpoint(run.path(), &state(5), &sd.to_safetensors_bytes("", &[]).unwrap(), &sd, &sd).unwrap();
        let back = read_latest(run.path()).unwrap();
        assert_eq!(back.state, state(5));
        assert_eq!(back.live, sd);
        // A crash mid-write leaves a hidden partial directory; latest still names step 5.
        std::fs::create_dir_all(run.path().join("checkpoints/.step_9.partial-1-2")).unwrap();
        assert_eq!(read_latest(run.path()).unwrap().state.step, 5);
        write_checkpoint(run.path(), &state(9), &sd.to_safetensors_bytes("", &[]).unwrap(), &sd, &sd).unwrap();
        assert_eq!(read_latest(run.path()).unwrap().state.step, 9);
        assert!(run.path().join("checkpoints/step_5/state.json").exists());
    }

    #[test]
    fn non_finite_tensors_are_refused_and_partials_removed() {
        let run = tempfile::tempdir().unwrap();
        let mut good = StateDict::default();
        good.insert("w", host(vec![2], vec![1.0, -2.0])).unwrap();
        write_checkpoint(run.path(), &state(5), &good.to_safetensors_bytes("", &[]).unwrap(), &good, &good).unwrap();
        let mut bad = StateDict::default();
        bad.insert("w", host(vec![2], vec![1.0, f32::NAN])).unwrap();
        for (eval, live) in [(&bad, &good), (&good, &bad)] {
            let e = write_checkpoint(run.path(), &state(9), &eval.to_safetensors_bytes("", &[]).unwrap(), live, &good).unwrap_err().to_string();
            assert!(e.contains("NaN or infinite") && e.contains("step 9") && e.contains("tensor w"), "{e}");
        }
        assert!(!run.path().join("checkpoints/step_9").exists());
        assert_eq!(read_latest(run.path()).unwrap().state.step, 5);

        std::fs::create_dir_all(run.path().join("checkpoints/.step_9.partial-1-2/x")).unwrap();
        std::fs::write(run.path().join(".latest.partial-1-2"), "step_9").unwrap();
        assert_eq!(remove_partials(run.path()).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(run.path().join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["step_5"]);
        assert!(run.path().join("latest").exists());
    }

    #[test]
    fn missing_checkpoint_is_a_clear_error() {
        let run = tempfile::tempdir().unwrap();
        let e = read_latest(run.path()).err().unwrap().to_string();
        assert!(e.contains("no checkpoint"), "{e}");
        assert_eq!(latest_name(run.path()).unwrap(), None);
    }

    #[test]
    fn a_kill_before_latest_was_first_written_keeps_the_checkpoint() {
        let run = tempfile::tempdir().unwrap();
        let mut sd = StateDict::default();
        sd.insert("w", host(vec![1], vec![1.0])).unwrap();
        write_checkpoint(run.path(), &state(10), &sd.to_safetensors_bytes("", &[]).unwrap(), &sd, &sd).unwrap();
        std::fs::remove_file(run.path().join("latest")).unwrap();
        assert_eq!(latest_name(run.path()).unwrap().as_deref(), Some("step_10"));
        assert_eq!(read_latest(run.path()).unwrap().state.step, 10);
    }
}

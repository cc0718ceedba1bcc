//! A run directory and its checkpoints.
//!
//! ```text
//! RUN/config.toml                  the training config
//! RUN/metrics.jsonl                one JSON object per logged step / evaluation
//! RUN/data/{train,test}/           generated mazes (reference npy layout), when generated
//! RUN/checkpoints/step_N/          one directory per checkpoint, renamed into place whole:
//!     model.safetensors            the eval (EMA) model, reference tensor names
//!     live.safetensors             the trained weights, f32
//!     optim.safetensors            AdamATan2 moments by parameter path
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
    /// AdamATan2 step count per parameter path.
    pub optim_time: BTreeMap<String, usize>,
}

/// Name of a checkpoint directory.
pub fn step_dir_name(step: u64) -> String {
    format!("step_{step}")
}

/// Writes a checkpoint atomically, then points `latest` at it.
pub fn write_checkpoint(
    run: &Path,
    state: &TrainState,
    eval_model: &[u8],
    live: &StateDict,
    optim: &StateDict,
) -> anyhow::Result<PathBuf> {
    let dir = run.join("checkpoints").join(step_dir_name(state.step));
    if dir.exists() {
        // A resumed run re-reaching a step it had saved before being killed: same content.
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
    /// Optimizer moments by path.
    pub optim: StateDict,
}

/// Reads the checkpoint `latest` names.
pub fn read_latest(run: &Path) -> anyhow::Result<LoadedCheckpoint> {
    let latest = run.join("latest");
    let name = std::fs::read_to_string(&latest)
        .with_context(|| format!("{} has no checkpoint to resume from (no {})", run.display(), latest.display()))?;
    let name = name.trim();
    if !name.starts_with("step_") || name.contains('/') {
        bail!("{} names {name:?}, not a checkpoint", latest.display());
    }
    let dir = run.join("checkpoints").join(name);
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
    fn missing_checkpoint_is_a_clear_error() {
        let run = tempfile::tempdir().unwrap();
        let e = read_latest(run.path()).err().unwrap().to_string();
        assert!(e.contains("no checkpoint"), "{e}");
    }
}

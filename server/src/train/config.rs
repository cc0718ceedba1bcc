//! The training config: TOML with the reference's names (`config/cfg_pretrain.yaml`), an
//! `[arch]` table (the model, [`TrmConfig`]'s fields) and a `[data]` table (the mazes).
//!
//! Unknown fields anywhere are errors, so that a typo cannot silently fall back to a default.
//! Defaults are the reference's `cfg_pretrain.yaml` values; a missing `[arch]` field takes
//! [`TrmConfig`]'s default (the reference's `config/arch/trm.yaml`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use trm_shared::model::TrmConfig;

/// Largest maze side the model's token layout knows (the benchmark's 30x30).
pub const MAX_MAZE_SIZE: usize = 30;

/// Why a training config was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Not valid TOML, a wrong type, or an unknown field (the message names it).
    #[error("invalid training config: {0}")]
    Parse(String),
    /// Fields that are valid alone but cannot work (sizes, ranges, combinations).
    #[error("impossible training config: {0}")]
    Invalid(String),
}

fn bad<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid(msg.into()))
}

/// Where the mazes come from: a dataset directory in the reference layout, or mazes
/// generated at the start of the run (seeded, so a run is reproducible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A dataset directory with `train/` and `test/` (as `trm prepare-dataset` writes).
    /// When set, the generator fields must be absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Side of the generated square mazes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Shortest accepted path, in moves (default: the generator's for the size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_moves: Option<u32>,
    /// Generated training mazes.
    #[serde(default = "default_train_count")]
    pub train_count: usize,
    /// Generated held-out mazes (the test split, for periodic evaluation).
    #[serde(default = "default_test_count")]
    pub test_count: usize,
    /// Evaluate on at most this many test mazes (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_limit: Option<usize>,
}

fn default_train_count() -> usize {
    20_000
}
fn default_test_count() -> usize {
    500
}

/// Everything a training run needs, with the reference's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Rows per optimizer step, over all devices (reference default 768).
    #[serde(default = "d_global_batch_size")]
    pub global_batch_size: usize,
    /// Passes over the training groups (reference default 100000).
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Epochs between evaluations and checkpoints (reference default 10000); must divide `epochs`.
    #[serde(default = "d_eval_interval")]
    pub eval_interval: usize,
    /// Peak learning rate of AdamATan2 (1e-4).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Final learning rate as a share of the peak (1.0: constant after warmup).
    #[serde(default = "d_one")]
    pub lr_min_ratio: f64,
    /// Steps of linear warmup (2000).
    #[serde(default = "d_warmup")]
    pub lr_warmup_steps: u64,
    /// AdamATan2 β1 (0.9).
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    /// AdamATan2 β2 (0.95).
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    /// Decoupled weight decay of AdamATan2 (0.1).
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// SignSGD learning rate of the puzzle embedding (1e-2).
    #[serde(default = "d_puzzle_lr")]
    pub puzzle_emb_lr: f64,
    /// SignSGD weight decay of the puzzle embedding (0.1).
    #[serde(default = "d_wd")]
    pub puzzle_emb_weight_decay: f64,
    /// Keep an EMA of the weights; evaluation and checkpoints use it (false).
    #[serde(default)]
    pub ema: bool,
    /// EMA rate (0.999).
    #[serde(default = "d_ema_rate")]
    pub ema_rate: f64,
    /// Seed of data order, exploration and initialisation (0).
    #[serde(default)]
    pub seed: u64,
    /// Clip each parameter's gradient norm to this value (burn's per-tensor `GradientClipping::Norm`,
    /// not a global norm); none by default, as the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip_norm: Option<f64>,
    /// Also checkpoint this often, in optimizer steps (besides every evaluation); 0 = only at evals.
    #[serde(default)]
    pub checkpoint_every_steps: u64,
    /// The model. `seq_len`, `vocab_size` and `num_puzzle_identifiers` come from the data.
    #[serde(default, serialize_with = "ser_arch", deserialize_with = "de_arch")]
    pub arch: TrmConfig,
    /// The mazes.
    pub data: DataConfig,
}

fn d_global_batch_size() -> usize {
    768
}
fn d_epochs() -> usize {
    100_000
}
fn d_eval_interval() -> usize {
    10_000
}
fn d_lr() -> f64 {
    1e-4
}
fn d_one() -> f64 {
    1.0
}
fn d_warmup() -> u64 {
    2000
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.95
}
fn d_wd() -> f64 {
    0.1
}
fn d_puzzle_lr() -> f64 {
    1e-2
}
fn d_ema_rate() -> f64 {
    0.999
}

fn ser_arch<S: serde::Serializer>(arch: &TrmConfig, s: S) -> Result<S::Ok, S::Error> {
    arch.serialize(s)
}

/// The arch table goes through [`TrmConfig::from_toml_str`] (its validation and the
/// `${.hidden_size}` form), and unknown keys, which that parser keeps aside, are refused.
fn de_arch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TrmConfig, D::Error> {
    use serde::de::Error;
    let table = toml::Table::deserialize(d)?;
    let text = toml::to_string(&table).map_err(D::Error::custom)?;
    let cfg = TrmConfig::from_toml_str(&text).map_err(|e| D::Error::custom(e.to_string()))?;
    if let Some(k) = cfg.extra.keys().next() {
        return Err(D::Error::custom(format!("unknown field `{k}` in [arch]")));
    }
    Ok(cfg)
}

impl TrainConfig {
    /// About how many bytes one training step holds for its gradient, for a dataset of
    /// `seq_len` tokens per maze: per row and token, the last recursion round's
    /// `(L_cycles + 1) · L_layers` blocks each keep their inputs, attention outputs and the
    /// SwiGLU's inner activations in f32, and the attention (unless `mlp_t`) its
    /// `heads x tokens x tokens` scores. A rough lower bound: it decides whether a job
    /// submitted over HTTP could fit at all, not how fast it runs.
    pub fn step_memory_estimate(&self, seq_len: usize) -> u128 {
        let a = &self.arch;
        let tokens = (seq_len + a.prefix_len()) as u128;
        let blocks = ((a.l_cycles + 1) * a.l_layers) as u128;
        let d = a.hidden_size as u128;
        let inner = (a.expansion * a.hidden_size as f64).ceil().max(0.0) as u128;
        let per_token = blocks * (4 * d + 3 * inner);
        let scores = if a.mlp_t { 0 } else { blocks * a.num_heads as u128 * tokens * tokens };
        4 * self.global_batch_size as u128 * (tokens * per_token + scores)
    }

    /// Parses and checks a config.
    pub fn from_toml_str(text: &str) -> Result<TrainConfig, ConfigError> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and checks a config file.
    pub fn from_file(path: &std::path::Path) -> Result<TrainConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))?;
        TrainConfig::from_toml_str(&text).map_err(|e| match e {
            ConfigError::Parse(m) => ConfigError::Parse(format!("{}: {m}", path.display())),
            ConfigError::Invalid(m) => ConfigError::Invalid(format!("{}: {m}", path.display())),
        })
    }

    /// The config as TOML (what a run directory keeps).
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Parse(format!("cannot write TOML: {e}")))
    }

    /// Optimizer steps of the whole run for `train_groups` groups: the reference's
    /// `epochs · groups / global_batch_size`, rounded down.
    pub fn total_steps(&self, train_groups: usize) -> u64 {
        (self.epochs as u128 * train_groups as u128 / self.global_batch_size.max(1) as u128) as u64
    }

    /// Checks what can be checked without the data.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.global_batch_size == 0 {
            return bad("global_batch_size must be at least 1");
        }
        if self.epochs == 0 || self.eval_interval == 0 {
            return bad("epochs and eval_interval must be at least 1");
        }
        if self.eval_interval > self.epochs || self.epochs % self.eval_interval != 0 {
            return bad(format!(
                "eval_interval ({}) must divide epochs ({}), as the reference requires",
                self.eval_interval, self.epochs
            ));
        }
        for (name, v) in [("lr", self.lr), ("puzzle_emb_lr", self.puzzle_emb_lr)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be a positive number, found {v}"));
            }
        }
        for (name, v) in [("weight_decay", self.weight_decay), ("puzzle_emb_weight_decay", self.puzzle_emb_weight_decay)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be >= 0, found {v}"));
            }
        }
        if !(0.0..=1.0).contains(&self.lr_min_ratio) {
            return bad(format!("lr_min_ratio must be in [0, 1], found {}", self.lr_min_ratio));
        }
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{name} must be in [0, 1), found {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.ema_rate) {
            return bad(format!("ema_rate must be in [0, 1), found {}", self.ema_rate));
        }
        if let Some(c) = self.grad_clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad(format!("grad_clip_norm must be positive, found {c}"));
        }
        self.arch.validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.arch.puzzle_emb_ndim > 0 && self.arch.num_puzzle_identifiers.is_some_and(|n| n == 0) {
            return bad("num_puzzle_identifiers must be at least 1");
        }
        let d = &self.data;
        match (&d.dir, d.size) {
            (Some(_), Some(_)) => return bad("[data]: give either `dir` or a generated `size`, not both"),
            (Some(_), None) if d.min_moves.is_some() => return bad("[data]: `min_moves` applies to generated mazes only"),
            (None, None) => return bad("[data]: give `dir` (a dataset directory) or `size` (generated mazes)"),
            (None, Some(n)) => {
                if !(2..=MAX_MAZE_SIZE).contains(&n) {
                    return bad(format!("[data] size must be in 2..={MAX_MAZE_SIZE}, found {n}"));
                }
                if d.train_count < self.global_batch_size {
                    return bad(format!(
                        "[data] train_count ({}) is smaller than global_batch_size ({}): with the last partial batch dropped no step would run",
                        d.train_count, self.global_batch_size
                    ));
                }
                if d.test_count == 0 {
                    return bad("[data] test_count must be at least 1");
                }
                if let Some(seq) = self.arch.seq_len
                    && seq != n * n
                {
                    return bad(format!("arch.seq_len is {seq} but {n}x{n} mazes have {} cells", n * n));
                }
            }
            (Some(_), None) => {}
        }
        if d.eval_limit == Some(0) {
            return bad("[data] eval_limit must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
global_batch_size = 4
epochs = 10
eval_interval = 5
lr = 1e-3
[arch]
hidden_size = 32
num_heads = 2
puzzle_emb_ndim = 32
puzzle_emb_len = 1
[data]
size = 5
train_count = 16
test_count = 4
"#;

    #[test]
    fn reads_a_config_with_defaults() {
        let c = TrainConfig::from_toml_str(SMALL).unwrap();
        assert_eq!(c.global_batch_size, 4);
        assert_eq!(c.beta2, 0.95);
        assert_eq!(c.lr_min_ratio, 1.0);
        assert_eq!(c.puzzle_emb_lr, 1e-2);
        assert!(!c.ema);
        assert_eq!(c.arch.hidden_size, 32);
        assert_eq!(c.arch.l_cycles, 6, "a missing arch field takes trm.yaml's default");
        assert_eq!(c.data.size, Some(5));
        assert_eq!(c.total_steps(16), 40);
        // Round trip through the run directory's copy.
        let back = TrainConfig::from_toml_str(&c.to_toml_string().unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = TrainConfig::from_toml_str(&SMALL.replace("lr = 1e-3", "learning_rate = 1e-3")).unwrap_err().to_string();
        assert!(e.contains("learning_rate"), "{e}");
        let e = TrainConfig::from_toml_str(&SMALL.replace("hidden_size = 32", "hiden_size = 32")).unwrap_err().to_string();
        assert!(e.contains("hiden_size"), "{e}");
        let e = TrainConfig::from_toml_str(&SMALL.replace("size = 5", "size = 5\nwalls = 3")).unwrap_err().to_string();
        assert!(e.contains("walls"), "{e}");
        let e = TrainConfig::from_toml_str("epochs = \"many\"\n[data]\nsize = 5\n").unwrap_err().to_string();
        assert!(e.contains("epochs") || e.contains("integer"), "{e}");
    }

    #[test]
    fn impossible_sizes_are_rejected_with_reasons() {
        let cases = [
            ("size = 5", "size = 31", "2..=30"),
            ("size = 5", "size = 1", "2..=30"),
            ("global_batch_size = 4", "global_batch_size = 0", "global_batch_size"),
            ("global_batch_size = 4", "global_batch_size = 64", "train_count"),
            ("eval_interval = 5", "eval_interval = 3", "divide"),
            ("hidden_size = 32", "hidden_size = 33", "num_heads"),
            ("hidden_size = 32", "hidden_size = 30", "even head_dim"),
            ("lr = 1e-3", "lr = -1.0", "lr"),
            ("size = 5", "size = 5\ndir = \"x\"", "not both"),
            ("[arch]", "ema_rate = 1.5\n[arch]", "ema_rate"),
            ("puzzle_emb_len = 1", "puzzle_emb_len = 1\nseq_len = 36", "25 cells"),
        ];
        for (from, to, want) in cases {
            let e = TrainConfig::from_toml_str(&SMALL.replace(from, to)).unwrap_err();
            assert!(e.to_string().contains(want), "{to}: {e}");
        }
        // Arch errors surface while parsing (the model's own checks); the rest after.
        let e = TrainConfig::from_toml_str(&SMALL.replace("size = 5", "size = 31")).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid(_)), "{e}");
        let e = TrainConfig::from_toml_str("epochs = 10\n").unwrap_err().to_string();
        assert!(e.contains("data"), "{e}");
    }

    #[test]
    fn presets_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        for name in ["maze-hard.toml", "maze-small-cpu.toml"] {
            let c = TrainConfig::from_file(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(c.ema, "{name}");
        }
        let hard = TrainConfig::from_file(&root.join("maze-hard.toml")).unwrap();
        assert_eq!((hard.arch.hidden_size, hard.arch.l_cycles, hard.arch.h_cycles, hard.arch.l_layers), (512, 4, 3, 2));
        assert_eq!((hard.global_batch_size, hard.epochs, hard.eval_interval), (768, 50_000, 5_000));
        assert_eq!((hard.lr, hard.puzzle_emb_lr, hard.weight_decay, hard.puzzle_emb_weight_decay), (1e-4, 1e-4, 1.0, 1.0));
    }
}

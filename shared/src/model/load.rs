//! Loading a model of either family, the one way every caller does it: from files (`trm
//! predict`, `trm eval`, the server) or from bytes (the web app).
//!
//! The config decides the family: `[arch] mixer = "local"` is the size-general [`LocalTrm`],
//! anything else the reference [`Trm`]. The reference model's fields that a config may leave
//! to the data (`seq_len`, `vocab_size`, `num_puzzle_identifiers`) are resolved here, once,
//! from the weights and from the maze size the caller knows, so model code never has to.

use burn::prelude::Backend;
use serde::{Deserialize, Serialize};

use super::{GridShape, LocalConfig, LocalTrm, ModelError, PredictOptions, Predictions, StateDict, Trm, TrmConfig, predict, predict_local};

/// A model's config, of either family, with every field the model needs resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelConfig {
    /// The reference TRM (attention or MLP-t) for mazes of one size: `side` x `side`.
    Reference { config: TrmConfig, side: usize },
    /// The size-general TRM (local 2D mixer), for mazes of any size.
    Local { config: LocalConfig },
}

/// Where a reference model's maze size comes from when neither its config nor its weights
/// give it (RoPE weights do not record the sequence length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MazeSize {
    /// The inputs' `seq_len` cells; a config or weights that say otherwise are an error.
    Inputs(usize),
    /// A `side` x `side` maze unless the config or the weights say otherwise (serving).
    Default(usize),
}

impl ModelConfig {
    /// Parses a config text of either family; `file_name` tells YAML (the reference's
    /// `all_config.yaml`) from TOML (ours).
    pub fn parse(file_name: &str, text: &str) -> Result<Unresolved, ModelError> {
        let lower = file_name.to_ascii_lowercase();
        let toml = lower.ends_with(".toml");
        let named = |e: ModelError| match e {
            ModelError::Config(msg) => ModelError::Config(format!("{file_name}: {msg}")),
            other => other,
        };
        if toml && LocalConfig::is_local_toml(text) {
            return LocalConfig::from_toml_str(text).map(Unresolved::Local).map_err(named);
        }
        let cfg = if toml {
            TrmConfig::from_toml_str(text)
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            TrmConfig::from_yaml_str(text)
        } else {
            TrmConfig::from_yaml_str(text).or_else(|_| TrmConfig::from_toml_str(text))
        };
        cfg.map(Unresolved::Reference).map_err(named)
    }

    /// The default (reference: exact; size-general: most) number of ACT steps.
    pub fn halt_max_steps(&self) -> usize {
        match self {
            ModelConfig::Reference { config, .. } => config.halt_max_steps,
            ModelConfig::Local { config } => config.halt_max_steps,
        }
    }

    /// The one maze side the model takes, or `None` for the size-general model.
    pub fn side(&self) -> Option<usize> {
        match self {
            ModelConfig::Reference { side, .. } => Some(*side),
            ModelConfig::Local { .. } => None,
        }
    }

    /// One line for logs and the app: the family, what it takes, its size and its steps.
    pub fn describe(&self) -> String {
        match self {
            ModelConfig::Reference { config: c, side: s } => format!(
                "{s}x{s} mazes, {}, hidden {}, {} heads, {} layers, H{}xL{}, {} ACT steps",
                if c.mlp_t { "MLP-t" } else { "attention" },
                c.hidden_size,
                c.num_heads,
                c.l_layers,
                c.h_cycles,
                c.l_cycles,
                c.halt_max_steps
            ),
            ModelConfig::Local { config: c } => format!(
                "any maze size (size-general, local mixer), hidden {}, {} layers, H{}xL{} ({} ticks per ACT step), \
                 halts by itself within {} ACT steps",
                c.hidden_size,
                c.l_layers,
                c.h_cycles,
                c.l_cycles,
                c.ticks_per_step(),
                c.halt_max_steps
            ),
        }
    }
}

/// A config as read from its file, before the weights and the maze size complete it.
#[derive(Clone, Debug, PartialEq)]
pub enum Unresolved {
    /// The reference TRM; some fields may still be unknown.
    Reference(TrmConfig),
    /// The size-general TRM; complete as read.
    Local(LocalConfig),
}

impl Unresolved {
    /// Completes the config from the weights and the maze size.
    pub fn resolve(self, weights: &StateDict, size: MazeSize) -> Result<ModelConfig, ModelError> {
        let mut cfg = match self {
            Unresolved::Local(config) => return Ok(ModelConfig::Local { config }),
            Unresolved::Reference(cfg) => cfg,
        };
        weights.fill_config(&mut cfg)?;
        let seq_len = match (size, cfg.seq_len) {
            (MazeSize::Inputs(seq_len), _) => {
                TrmConfig::fill(&mut cfg.seq_len, "seq_len", seq_len, "the inputs")?;
                seq_len
            }
            (MazeSize::Default(_), Some(seq_len)) => seq_len,
            (MazeSize::Default(side), None) => {
                let seq_len = side.checked_mul(side).ok_or_else(|| ModelError::Config(format!("maze side {side} is too large")))?;
                *cfg.seq_len.insert(seq_len)
            }
        };
        let side = crate::maze::square_side(seq_len)
            .map_err(|_| ModelError::Config(format!("seq_len {seq_len} is not a square maze (the reference layout stores square mazes)")))?;
        Ok(ModelConfig::Reference { config: cfg, side })
    }
}

/// A built model of either family.
#[derive(Clone, Debug)]
pub enum AnyModel<B: Backend> {
    /// The reference TRM (attention or MLP-t), for mazes of its one size.
    Reference(Trm<B>),
    /// The size-general TRM (`[arch] mixer = "local"`), for mazes of any size.
    Local(LocalTrm<B>),
}

impl<B: Backend> AnyModel<B> {
    /// Builds the model `config` describes from `weights`.
    pub fn build(config: &ModelConfig, weights: &StateDict, device: &B::Device) -> Result<AnyModel<B>, ModelError> {
        Ok(match config {
            ModelConfig::Reference { config, .. } => AnyModel::Reference(Trm::from_state_dict(config, weights, device)?),
            ModelConfig::Local { config } => AnyModel::Local(LocalTrm::from_state_dict(config, weights, device)?),
        })
    }

    /// The model's resolved config.
    pub fn config(&self) -> ModelConfig {
        match self {
            AnyModel::Reference(m) => {
                // Built from a resolved config, so the length is square.
                let side = crate::maze::square_side(m.sizes().seq_len).unwrap_or(0);
                ModelConfig::Reference { config: m.config().clone(), side }
            }
            AnyModel::Local(m) => ModelConfig::Local { config: m.config().clone() },
        }
    }

    /// Whether this is the size-general model (it halts on its own and takes any size).
    pub fn is_local(&self) -> bool {
        matches!(self, AnyModel::Local(_))
    }

    /// The default number of ACT steps: exactly this many for the reference model (as its
    /// evaluation runs), at most this many for the size-general one (it halts on its own).
    pub fn halt_max_steps(&self) -> usize {
        match self {
            AnyModel::Reference(m) => m.config().halt_max_steps,
            AnyModel::Local(m) => m.config().halt_max_steps,
        }
    }

    /// Answers of every maze (`tokens`: row-major mazes of `grid`) after each ACT step. The
    /// reference model takes a puzzle identifier per maze; the size-general one ignores them.
    pub fn predict(
        &self,
        tokens: &[u8],
        puzzle_identifiers: &[i32],
        grid: GridShape,
        opts: &PredictOptions,
        device: &B::Device,
        progress: impl FnMut(usize),
    ) -> Result<Predictions, ModelError> {
        match self {
            AnyModel::Reference(m) => predict(m, tokens, puzzle_identifiers, opts, device, progress),
            AnyModel::Local(m) => predict_local(m, tokens, grid, opts, device, progress),
        }
    }
}

/// Reads `config` and `checkpoint` (a reference `step_N` file or safetensors) and builds the
/// model for mazes of `size`.
#[cfg(feature = "native")]
pub fn load_files<B: Backend>(checkpoint: &std::path::Path, config: &std::path::Path, size: MazeSize, device: &B::Device) -> Result<AnyModel<B>, ModelError> {
    let text = std::fs::read_to_string(config).map_err(|e| ModelError::Io { path: config.display().to_string(), message: e.to_string() })?;
    let unresolved = ModelConfig::parse(&config.display().to_string(), &text)?;
    let weights = StateDict::read(checkpoint)?;
    let resolved = unresolved.resolve(&weights, size)?;
    AnyModel::build(&resolved, &weights, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cpu, RandomInit};

    const LOCAL: &str = "[arch]\nmixer = \"local\"\nhidden_size = 8\nexpansion = 2.0\nL_layers = 1\nH_cycles = 1\nL_cycles = 1\nhalt_max_steps = 5\n";
    const REFERENCE: &str = "[arch]\nhidden_size = 16\nnum_heads = 2\nexpansion = 2\nL_layers = 1\nH_cycles = 1\nL_cycles = 1\n\
        halt_max_steps = 2\npos_encodings = \"rope\"\npuzzle_emb_ndim = 16\npuzzle_emb_len = 1\nforward_dtype = \"float32\"\n";

    fn reference_weights(seq_len: usize) -> StateDict {
        let mut cfg = TrmConfig::from_toml_str(REFERENCE).unwrap();
        (cfg.seq_len, cfg.vocab_size, cfg.num_puzzle_identifiers) = (Some(seq_len), Some(6), Some(1));
        let model = Trm::<Cpu>::build(&cfg, &mut RandomInit::new(1), &Default::default()).unwrap();
        StateDict::from_bytes(&model.to_safetensors_bytes().unwrap(), "m.safetensors").unwrap()
    }

    #[test]
    fn the_config_picks_the_family_and_the_data_completes_it() {
        let device = Default::default();
        let local = ModelConfig::parse("config.toml", LOCAL).unwrap();
        let weights = LocalTrm::<Cpu>::build(&LocalConfig::from_toml_str(LOCAL).unwrap(), &mut RandomInit::new(3), &device).unwrap();
        let sd = StateDict::from_bytes(&weights.to_safetensors_bytes().unwrap(), "m.safetensors").unwrap();
        let cfg = local.resolve(&sd, MazeSize::Inputs(49)).unwrap();
        assert_eq!((cfg.side(), cfg.halt_max_steps()), (None, 5));
        let model = AnyModel::<Cpu>::build(&cfg, &sd, &device).unwrap();
        assert!(model.is_local() && model.config() == cfg);

        let sd = reference_weights(25);
        let reference = || ModelConfig::parse("config.toml", REFERENCE).unwrap();
        let cfg = reference().resolve(&sd, MazeSize::Default(30)).unwrap();
        // RoPE weights do not say the size: serving falls back to the default side ...
        assert_eq!(cfg.side(), Some(30));
        // ... and the inputs fix it; the model built from them answers 5x5 mazes.
        let cfg = reference().resolve(&sd, MazeSize::Inputs(25)).unwrap();
        assert_eq!(cfg.side(), Some(5));
        let model = AnyModel::<Cpu>::build(&cfg, &sd, &device).unwrap();
        assert!(!model.is_local() && model.config() == cfg);
        let e = reference().resolve(&sd, MazeSize::Inputs(24)).unwrap_err().to_string();
        assert!(e.contains("square"), "{e}");
        let e = ModelConfig::parse("config.toml", "[arch]\nmixer = \"local\"\nnum_heads = 2\n").unwrap_err().to_string();
        assert!(e.starts_with("config: config.toml: ") && e.contains("num_heads"), "{e}");
    }
}
